//! The one ustar header form the writer emits, and its byte-exact check.
//!
//! Every header in a bundle is a function of (path, size): mode 0644, uid/gid 0, empty
//! owner names, mtime 0, type `0` (regular file), no link name, no prefix. The reader
//! regenerates the expected header and compares every byte, so a header the writer
//! would not have produced is refused naming the field that differs.

pub const BLOCK: usize = 512;

/// Sizes up to this value are written as 11 octal digits; larger ones in GNU base-256.
const OCTAL_SIZE_LIMIT: u64 = 0o77_777_777_777;

/// A header field: name and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub start: usize,
    pub end: usize,
}

pub const FIELDS: [Field; 17] = [
    Field {
        name: "name",
        start: 0,
        end: 100,
    },
    Field {
        name: "mode",
        start: 100,
        end: 108,
    },
    Field {
        name: "uid",
        start: 108,
        end: 116,
    },
    Field {
        name: "gid",
        start: 116,
        end: 124,
    },
    Field {
        name: "size",
        start: 124,
        end: 136,
    },
    Field {
        name: "mtime",
        start: 136,
        end: 148,
    },
    Field {
        name: "checksum",
        start: 148,
        end: 156,
    },
    Field {
        name: "typeflag",
        start: 156,
        end: 157,
    },
    Field {
        name: "linkname",
        start: 157,
        end: 257,
    },
    Field {
        name: "magic",
        start: 257,
        end: 263,
    },
    Field {
        name: "version",
        start: 263,
        end: 265,
    },
    Field {
        name: "uname",
        start: 265,
        end: 297,
    },
    Field {
        name: "gname",
        start: 297,
        end: 329,
    },
    Field {
        name: "devmajor",
        start: 329,
        end: 337,
    },
    Field {
        name: "devminor",
        start: 337,
        end: 345,
    },
    Field {
        name: "prefix",
        start: 345,
        end: 500,
    },
    Field {
        name: "padding",
        start: 500,
        end: 512,
    },
];

const NAME: Field = FIELDS[0];
const SIZE: Field = FIELDS[4];
const CHECKSUM: Field = FIELDS[6];
const TYPEFLAG: usize = 156;

/// Builds the canonical header for a regular file. `path` must fit 100 bytes.
pub fn encode(path: &str, size: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..path.len()].copy_from_slice(path.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    encode_size(size, &mut h[SIZE.start..SIZE.end]);
    h[136..148].copy_from_slice(b"00000000000\0");
    h[TYPEFLAG] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[329..337].copy_from_slice(b"0000000\0");
    h[337..345].copy_from_slice(b"0000000\0");
    let sum = checksum(&h);
    let text = format!("{sum:06o}\0 ");
    h[CHECKSUM.start..CHECKSUM.end].copy_from_slice(text.as_bytes());
    h
}

fn encode_size(size: u64, out: &mut [u8]) {
    if size <= OCTAL_SIZE_LIMIT {
        let text = format!("{size:011o}\0");
        out.copy_from_slice(text.as_bytes());
    } else {
        out.fill(0);
        out[0] = 0x80;
        out[4..12].copy_from_slice(&size.to_be_bytes());
    }
}

/// The sum of the header bytes with the checksum field read as spaces.
fn checksum(h: &[u8; BLOCK]) -> u32 {
    h.iter()
        .enumerate()
        .map(|(i, &b)| {
            if (CHECKSUM.start..CHECKSUM.end).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum()
}

/// What a header says, before it is compared with the canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The name field up to its first NUL, as bytes (it may not be UTF-8).
    pub name: Vec<u8>,
    pub typeflag: u8,
    /// The size, if the size field holds a canonical encoding.
    pub size: Option<u64>,
}

pub fn parse(h: &[u8; BLOCK]) -> Parsed {
    let raw = &h[NAME.start..NAME.end];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Parsed {
        name: raw[..end].to_vec(),
        typeflag: h[TYPEFLAG],
        size: decode_size(&h[SIZE.start..SIZE.end]),
    }
}

fn decode_size(field: &[u8]) -> Option<u64> {
    let size = if field[0] == 0x80 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&field[4..12]);
        u64::from_be_bytes(b)
    } else {
        let text = std::str::from_utf8(&field[..11]).ok()?;
        if !text.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
            return None;
        }
        u64::from_str_radix(text, 8).ok()?
    };
    let mut again = [0u8; 12];
    encode_size(size, &mut again);
    (again == field).then_some(size)
}

/// The first field in which `h` differs from the canonical header for (`path`, `size`).
pub fn first_difference(h: &[u8; BLOCK], path: &str, size: u64) -> Option<(Field, usize)> {
    let expected = encode(path, size);
    let at = h.iter().zip(expected.iter()).position(|(a, b)| a != b)?;
    let field = FIELDS
        .iter()
        .copied()
        .find(|f| (f.start..f.end).contains(&at))
        .unwrap_or(FIELDS[16]);
    Some((field, at))
}

/// Whether the header's own checksum field matches its bytes.
pub fn checksum_matches(h: &[u8; BLOCK]) -> bool {
    let text = format!("{:06o}\0 ", checksum(h));
    &h[CHECKSUM.start..CHECKSUM.end] == text.as_bytes()
}

/// Bytes of zero padding after an entry of `size` bytes.
pub fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_crate_reads_our_headers() {
        let mut data = Vec::new();
        data.extend_from_slice(&encode("blobs/sha256/ab", 5));
        data.extend_from_slice(b"hello");
        data.resize(data.len() + padding(5) as usize, 0);
        data.extend_from_slice(&[0u8; 1024]);
        let mut archive = tar::Archive::new(&data[..]);
        let mut entries = archive.entries().unwrap();
        let e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("blobs/sha256/ab"));
        assert_eq!(e.header().size().unwrap(), 5);
        assert_eq!(e.header().mode().unwrap(), 0o644);
        assert!(entries.next().is_none());
    }

    #[test]
    fn sizes_round_trip_in_both_encodings() {
        for size in [0, 1, 511, OCTAL_SIZE_LIMIT, OCTAL_SIZE_LIMIT + 1, 100 << 30] {
            let h = encode("x", size);
            assert_eq!(parse(&h).size, Some(size), "size {size}");
            assert!(checksum_matches(&h));
            assert_eq!(first_difference(&h, "x", size), None);
        }
    }

    #[test]
    fn every_byte_change_is_a_named_difference() {
        let h = encode("sealift/head.json", 4096);
        for i in 0..BLOCK {
            let mut m = h;
            m[i] ^= 0x01;
            let (field, at) = first_difference(&m, "sealift/head.json", 4096).expect("difference found");
            assert_eq!(at, i);
            assert!((field.start..field.end).contains(&i));
        }
    }
}
