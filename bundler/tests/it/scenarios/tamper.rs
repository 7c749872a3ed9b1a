//! Tampered copies of a real bundle: every change is refused by `verify` with exit 1 and
//! the exact reason (the exhaustive matrix over the reader is `schemas/tests/tamper.rs`;
//! here the real binary reads real files).

use std::path::{Path, PathBuf};

use crate::common::*;

struct Case {
    lab: Lab,
    file: PathBuf,
    bytes: Vec<u8>,
    /// (path, data offset, size) of every entry.
    entries: Vec<(String, usize, usize)>,
}

impl Case {
    fn new() -> Self {
        let lab = Lab::with_versions(&["1.0.0"]);
        let file = lab.sample_bundle("1.0.0", "sample");
        let bytes = fs_err::read(&file).unwrap();
        let entries = entries(&file);
        Self {
            lab,
            file,
            bytes,
            entries,
        }
    }

    fn entry(&self, name: &str) -> (usize, usize) {
        let (_, at, size) = self.entries.iter().find(|(n, _, _)| n == name).unwrap();
        (*at, *size)
    }

    /// Writes a changed copy and verifies it: refused, with `caused by: REASON`.
    #[track_caller]
    fn refused(&self, name: &str, reason: &str, change: impl FnOnce(&mut Vec<u8>)) -> Run {
        let copy = tampered(&self.file, &self.lab.at(&format!("{name}.sealift")), change);
        let r = self.lab.verify(&copy, &[]).refused();
        assert_eq!(r.error_line(), format!("error: {} is refused", copy.display()));
        r.stderr_has(&format!("  caused by: {reason}"))
    }

    fn path(&self) -> &Path {
        &self.file
    }
}

#[test]
fn tampered_copies_are_refused_with_the_exact_reason() {
    let c = Case::new();
    c.lab.verify(c.path(), &[]).ok();

    // A byte of a blob: the digest mismatch names the entry.
    let (blob, at, size) = c.entries.last().unwrap().clone();
    let mut changed = c.bytes[at..at + size].to_vec();
    changed[size / 2] ^= 0x01;
    c.refused(
        "blob",
        &format!(
            "entry {blob} has digest {}, the manifest says sha256:{}",
            sha256(&changed),
            &blob["blobs/sha256/".len()..]
        ),
        |b| b[at + size / 2] ^= 0x01,
    );

    // A byte of a metadata entry.
    let (at, size) = c.entry("sealift/rendered.yaml");
    let mut changed = c.bytes[at..at + size].to_vec();
    changed[100] ^= 0x20;
    c.refused(
        "render",
        &format!(
            "entry sealift/rendered.yaml has digest {}, the manifest says {}",
            sha256(&changed),
            sha256(&c.bytes[at..at + size])
        ),
        |b| b[at + 100] ^= 0x20,
    );

    // The head: its JSON, a signature, its zero reserve.
    let (head, head_size) = c.entry("sealift/head.json");
    c.refused("head-json", "head is not valid JSON of the head form: ", |b| {
        b[head] ^= 0x01
    });
    let text = &c.bytes[head..head + head_size];
    let json_len = text.iter().rposition(|&x| x != 0).unwrap() + 1;
    let release = find(text, b"],\"release\":").unwrap();
    let sig_at = head + release + find(&text[release..], b"\"sig\":\"").unwrap() + 7;
    let keyid = &c.lab.vendor.release.id;
    c.refused(
        "head-signature",
        &format!("release signatures are not trusted\n  caused by: signature by key {keyid} does not verify"),
        |b| b[sig_at] = if b[sig_at] == b'A' { b'B' } else { b'A' },
    );
    c.refused(
        "head-reserve",
        &format!("head padding at byte {} of the head entry is not zero", json_len + 100),
        |b| b[head + json_len + 100] = 1,
    );

    // Headers: a canonical field and the checksum.
    let (chart, _) = c.entry("sealift/chart.tgz");
    let header = chart - 512;
    c.refused(
        "header-mtime",
        // The offset is the first differing byte's.
        &format!(
            "header of sealift/chart.tgz at byte {} is not canonical: field mtime differs",
            header + 139
        ),
        |b| b[header + 136 + 3] ^= 0x01,
    );
    let (render, _) = c.entry("sealift/rendered.yaml");
    c.refused(
        "header-checksum",
        &format!(
            "header of sealift/rendered.yaml at byte {} has a bad checksum",
            render - 512 + 150
        ),
        |b| b[render - 512 + 150] ^= 0x01,
    );
    c.refused(
        "header-name",
        "entry 1 at byte 0 is \"seamift/head.json\", expected \"sealift/head.json\"",
        |b| b[3] ^= 0x01,
    );

    // Truncation, inside the last blob and inside the end blocks.
    let (blob, at, _) = c.entries.last().unwrap().clone();
    let cut = at + 100;
    c.refused(
        "cut-blob",
        &format!("file ends at byte {cut} inside entry {blob}"),
        |b| b.truncate(cut),
    );
    let len = c.bytes.len();
    c.refused(
        "cut-end",
        &format!("file ends at byte {} inside the end-of-archive blocks", len - 10),
        |b| b.truncate(len - 10),
    );

    // Appended bytes, zero or not.
    c.refused(
        "append-zeros",
        &format!("data after the end of the archive at byte {len}"),
        |b| {
            b.extend_from_slice(&[0; 512]);
        },
    );
    c.refused(
        "append-byte",
        &format!("data after the end of the archive at byte {len}"),
        |b| {
            b.push(b'x');
        },
    );

    // The JSON summary carries the stable code.
    let copy = tampered(c.path(), &c.lab.at("coded.sealift"), |b| b.push(0));
    let r = c.lab.verify(&copy, &["--format", "json"]).refused();
    let v: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(v["code"], "trailing_data");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
