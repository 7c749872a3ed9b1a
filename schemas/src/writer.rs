//! Writes the archive: the head, then every entry with its canonical header and padding,
//! then the end-of-archive blocks. The writer never decides content; the bundler does.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::entry::{EntryPath, HEAD_PATH};
use crate::tar_header::{self, BLOCK};

/// Where an entry's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    Bytes(Vec<u8>),
    /// A file holding exactly the entry's bytes (already verified by the caller).
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct EntrySource {
    pub path: EntryPath,
    pub size: u64,
    pub content: Content,
}

const ZEROS: [u8; BLOCK] = [0u8; BLOCK];

/// Writes the bundle to `out`. `progress` is called with the bytes written so far.
pub fn write_archive(
    out: &mut impl Write,
    head_entry: &[u8],
    entries: &[EntrySource],
    mut progress: impl FnMut(u64),
) -> io::Result<u64> {
    let mut written = 0u64;
    written += write_entry(out, HEAD_PATH, head_entry.len() as u64, &mut &head_entry[..])?;
    for e in entries {
        written += match &e.content {
            Content::Bytes(b) => {
                if b.len() as u64 != e.size {
                    return Err(io::Error::other(format!(
                        "entry {} has {} bytes, expected {}",
                        e.path,
                        b.len(),
                        e.size
                    )));
                }
                write_entry(out, e.path.as_str(), e.size, &mut &b[..])?
            }
            Content::File(p) => {
                // A std File (not a wrapper) so that io::copy can hand the copy to the
                // kernel (copy_file_range) when `out` is a file too.
                let file = std::fs::File::open(p)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", p.display())))?;
                write_entry(out, e.path.as_str(), e.size, &mut file.take(e.size))?
            }
        };
        progress(written);
    }
    out.write_all(&ZEROS)?;
    out.write_all(&ZEROS)?;
    Ok(written + 2 * BLOCK as u64)
}

fn write_entry(out: &mut impl Write, path: &str, size: u64, content: &mut impl Read) -> io::Result<u64> {
    out.write_all(&tar_header::encode(path, size))?;
    let copied = io::copy(content, out)?;
    if copied != size {
        return Err(io::Error::other(format!(
            "entry {path}: read {copied} bytes, expected {size}"
        )));
    }
    let pad = tar_header::padding(size) as usize;
    out.write_all(&ZEROS[..pad])?;
    Ok(BLOCK as u64 + size + pad as u64)
}
