//! The sans-IO push parser: bytes in, events out.
//!
//! The same state machine drives the synchronous file verifier and the agent's resumable
//! upload. It verifies the head (root chain, release signatures, manifest, policy) before
//! it interprets any later byte, then checks every header byte against the canonical form,
//! hashes every entry while it streams and checks every padding and end-of-archive byte.
//! Memory is bounded: only the head and the metadata entries are buffered.

use sha2::{Digest as _, Sha256};

use crate::entry::{EntryPath, HEAD_PATH, METADATA_PATHS};
use crate::head::MAX_HEAD_BYTES;
use crate::names::Digest;
use crate::policy::Policy;
use crate::refusal::Refusal;
use crate::tar_header::{self, BLOCK};
use crate::verified::VerifiedHead;

/// Largest metadata entry (chart, render, variables, migrations, OCI index) the reader buffers.
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// What the parser found.
#[derive(Debug)]
pub enum Event {
    /// The head verified: chain, release signatures, manifest and policy.
    HeadVerified(Box<VerifiedHead>),
    /// An entry's content begins at `offset`.
    EntryStarted {
        index: usize,
        path: EntryPath,
        size: u64,
        offset: u64,
    },
    /// An entry's content matched its size and digest. Metadata entries carry their bytes.
    EntryVerified {
        index: usize,
        path: EntryPath,
        digest: Digest,
        content: Option<Vec<u8>>,
    },
    /// The end-of-archive blocks were read; any further byte is refused.
    Finished,
}

/// A point between entries from which parsing can resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Bytes of the archive before the boundary.
    pub offset: u64,
    /// Index into the manifest's entries of the next entry (its length: the end blocks).
    pub next_entry: usize,
}

enum State {
    Header {
        index: usize,
    },
    HeadBody {
        size: u64,
        buf: Vec<u8>,
    },
    Body {
        index: usize,
        remaining: u64,
        hasher: Box<Sha256>,
        buf: Option<Vec<u8>>,
    },
    Padding {
        index: usize,
        remaining: u64,
    },
    End {
        remaining: u64,
    },
    Done,
    Failed,
}

/// Push parser for one bundle.
pub struct BundleReader {
    trusted: keys::TrustedRoots,
    policy: Policy,
    state: State,
    offset: u64,
    head: Option<Box<VerifiedHead>>,
    block: Vec<u8>,
    checkpoint: Option<Checkpoint>,
}

impl BundleReader {
    /// A parser that trusts `trusted` and requires `policy` of the manifest.
    pub fn new(trusted: keys::TrustedRoots, policy: Policy) -> Self {
        Self {
            trusted,
            policy,
            state: State::Header { index: 0 },
            offset: 0,
            head: None,
            block: Vec::with_capacity(BLOCK),
            checkpoint: None,
        }
    }

    /// Resumes at `checkpoint` from the head entry bytes kept from an earlier parse. The
    /// head is verified again.
    pub fn resume(
        trusted: keys::TrustedRoots,
        policy: Policy,
        head_entry: &[u8],
        checkpoint: Checkpoint,
    ) -> Result<Self, Refusal> {
        let head = VerifiedHead::verify(head_entry, &trusted)?;
        policy.check(head.manifest())?;
        let n = head.manifest().entries.len();
        if checkpoint.next_entry > n {
            return Err(Refusal::ManifestInconsistent {
                reason: format!("checkpoint entry {} beyond the {n} entries", checkpoint.next_entry),
            });
        }
        let state = if checkpoint.next_entry == n {
            State::End {
                remaining: 2 * BLOCK as u64,
            }
        } else {
            State::Header {
                index: checkpoint.next_entry + 1,
            }
        };
        Ok(Self {
            trusted,
            policy,
            state,
            offset: checkpoint.offset,
            head: Some(Box::new(head)),
            block: Vec::with_capacity(BLOCK),
            checkpoint: Some(checkpoint),
        })
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The last entry boundary passed after the head, if any.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint
    }

    /// The verified head, once it has been read.
    pub fn head(&self) -> Option<&VerifiedHead> {
        self.head.as_deref()
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Reports the end of input: refused unless the end-of-archive blocks were read.
    pub fn finish(&self) -> Result<(), Refusal> {
        let context = match &self.state {
            State::Done => return Ok(()),
            State::Header { index: 0 } | State::HeadBody { .. } => "the head".to_owned(),
            State::Header { index } | State::Body { index, .. } | State::Padding { index, .. } => {
                format!("entry {}", self.entry_name(*index))
            }
            State::End { .. } => "the end-of-archive blocks".to_owned(),
            State::Failed => "an entry that was already refused".to_owned(),
        };
        Err(Refusal::Truncated {
            offset: self.offset,
            context,
        })
    }

    fn entry_name(&self, index: usize) -> String {
        if index == 0 {
            return HEAD_PATH.to_owned();
        }
        self.head
            .as_ref()
            .and_then(|h| h.manifest().entries.get(index - 1))
            .map_or_else(|| format!("#{index}"), |e| e.path.to_string())
    }

    /// Consumes all of `data`, appending events. After a refusal the parser stays refused.
    pub fn push(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), Refusal> {
        if matches!(self.state, State::Failed) {
            return Err(Refusal::Truncated {
                offset: self.offset,
                context: "a refused bundle".into(),
            });
        }
        let result = self.push_inner(data, events);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn push_inner(&mut self, mut data: &[u8], events: &mut Vec<Event>) -> Result<(), Refusal> {
        while !data.is_empty() {
            let state = std::mem::replace(&mut self.state, State::Failed);
            self.state = match state {
                State::Header { index } => {
                    let take = (BLOCK - self.block.len()).min(data.len());
                    self.block.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.offset += take as u64;
                    if self.block.len() < BLOCK {
                        State::Header { index }
                    } else {
                        let mut h = [0u8; BLOCK];
                        h.copy_from_slice(&self.block);
                        self.block.clear();
                        self.header(index, &h, events)?
                    }
                }
                State::HeadBody { size, mut buf } => {
                    let take = ((size - buf.len() as u64) as usize).min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.offset += take as u64;
                    if (buf.len() as u64) < size {
                        State::HeadBody { size, buf }
                    } else {
                        let head = VerifiedHead::verify(&buf, &self.trusted)?;
                        self.policy.check(head.manifest())?;
                        events.push(Event::HeadVerified(Box::new(head.clone())));
                        self.head = Some(Box::new(head));
                        self.after_body(0, size)
                    }
                }
                State::Body {
                    index,
                    remaining,
                    mut hasher,
                    mut buf,
                } => {
                    let take = remaining.min(data.len() as u64) as usize;
                    hasher.update(&data[..take]);
                    if let Some(b) = buf.as_mut() {
                        b.extend_from_slice(&data[..take]);
                    }
                    data = &data[take..];
                    self.offset += take as u64;
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        State::Body {
                            index,
                            remaining,
                            hasher,
                            buf,
                        }
                    } else {
                        let record = self.record(index)?;
                        let actual = Digest::from_bytes(hasher.finalize().into());
                        if actual != record.digest {
                            return Err(Refusal::DigestMismatch {
                                path: record.path.to_string(),
                                expected: record.digest,
                                actual,
                            });
                        }
                        let size = record.size;
                        events.push(Event::EntryVerified {
                            index,
                            path: record.path,
                            digest: actual,
                            content: buf,
                        });
                        self.after_body(index, size)
                    }
                }
                State::Padding { index, remaining } => {
                    let take = remaining.min(data.len() as u64) as usize;
                    if let Some(bad) = data[..take].iter().position(|&b| b != 0) {
                        return Err(Refusal::NonZeroPadding {
                            path: self.entry_name(index),
                            offset: self.offset + bad as u64,
                        });
                    }
                    data = &data[take..];
                    self.offset += take as u64;
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        State::Padding { index, remaining }
                    } else {
                        self.next_header(index + 1)
                    }
                }
                State::End { remaining } => {
                    let take = remaining.min(data.len() as u64) as usize;
                    if let Some(bad) = data[..take].iter().position(|&b| b != 0) {
                        return Err(Refusal::EndBlock {
                            offset: self.offset + bad as u64,
                        });
                    }
                    data = &data[take..];
                    self.offset += take as u64;
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        State::End { remaining }
                    } else {
                        events.push(Event::Finished);
                        State::Done
                    }
                }
                State::Done => return Err(Refusal::TrailingData { offset: self.offset }),
                State::Failed => {
                    return Err(Refusal::Truncated {
                        offset: self.offset,
                        context: "a refused bundle".into(),
                    });
                }
            };
        }
        Ok(())
    }

    fn record(&self, index: usize) -> Result<crate::manifest::EntryRecord, Refusal> {
        self.head
            .as_ref()
            .and_then(|h| h.manifest().entries.get(index - 1))
            .cloned()
            .ok_or_else(|| Refusal::ManifestInconsistent {
                reason: format!("no manifest entry for archive entry {index}"),
            })
    }

    fn after_body(&mut self, index: usize, size: u64) -> State {
        let pad = tar_header::padding(size);
        if pad > 0 {
            State::Padding { index, remaining: pad }
        } else {
            self.next_header(index + 1)
        }
    }

    fn next_header(&mut self, index: usize) -> State {
        let n = self.head.as_ref().map_or(0, |h| h.manifest().entries.len());
        self.checkpoint = Some(Checkpoint {
            offset: self.offset,
            next_entry: index - 1,
        });
        if index > n {
            State::End {
                remaining: 2 * BLOCK as u64,
            }
        } else {
            State::Header { index }
        }
    }

    fn header(&mut self, index: usize, h: &[u8; BLOCK], events: &mut Vec<Event>) -> Result<State, Refusal> {
        let header_offset = self.offset - BLOCK as u64;
        let expected = if index == 0 { None } else { Some(self.record(index)?) };
        let expected_path = expected.as_ref().map_or(HEAD_PATH.to_owned(), |r| r.path.to_string());
        if h.iter().all(|&b| b == 0) {
            return Err(Refusal::UnexpectedEntry {
                index: index + 1,
                offset: header_offset,
                expected: expected_path,
                found: "end-of-archive block".into(),
            });
        }
        let parsed = tar_header::parse(h);
        if parsed.typeflag != b'0' {
            return Err(Refusal::NotRegularFile {
                index: index + 1,
                offset: header_offset,
                typeflag: char::from(parsed.typeflag),
            });
        }
        let name = String::from_utf8_lossy(&parsed.name).into_owned();
        if let Err(e) = name.parse::<EntryPath>() {
            return Err(Refusal::UnsafePath {
                index: index + 1,
                offset: header_offset,
                path: name,
                reason: e.reason.to_owned(),
            });
        }
        if name != expected_path {
            return Err(Refusal::UnexpectedEntry {
                index: index + 1,
                offset: header_offset,
                expected: expected_path,
                found: name,
            });
        }
        let Some(size) = parsed.size else {
            return Err(Refusal::NonCanonicalHeader {
                path: name,
                offset: header_offset,
                field: "size",
            });
        };
        if let Some(record) = &expected
            && size != record.size
        {
            return Err(Refusal::EntrySizeMismatch {
                path: name,
                declared: size,
                expected: record.size,
            });
        }
        if let Some((field, at)) = tar_header::first_difference(h, &name, size) {
            let offset = header_offset + at as u64;
            if field.name == "checksum" {
                return Err(Refusal::HeaderChecksum { path: name, offset });
            }
            return Err(Refusal::NonCanonicalHeader {
                path: name,
                offset,
                field: field.name,
            });
        }
        let content_offset = self.offset;
        match expected {
            None => {
                if size > MAX_HEAD_BYTES {
                    return Err(Refusal::HeadTooLarge {
                        size,
                        limit: MAX_HEAD_BYTES,
                    });
                }
                Ok(State::HeadBody {
                    size,
                    buf: Vec::with_capacity(size as usize),
                })
            }
            Some(record) => {
                let metadata = METADATA_PATHS.contains(&record.path.as_str());
                if metadata && size > MAX_METADATA_BYTES {
                    return Err(Refusal::MetadataTooLarge {
                        path: name,
                        size,
                        limit: MAX_METADATA_BYTES,
                    });
                }
                events.push(Event::EntryStarted {
                    index,
                    path: record.path,
                    size,
                    offset: content_offset,
                });
                if size == 0 {
                    let actual = Digest::from_bytes(Sha256::digest([]).into());
                    let record = self.record(index)?;
                    if actual != record.digest {
                        return Err(Refusal::DigestMismatch {
                            path: record.path.to_string(),
                            expected: record.digest,
                            actual,
                        });
                    }
                    events.push(Event::EntryVerified {
                        index,
                        path: record.path,
                        digest: actual,
                        content: metadata.then(Vec::new),
                    });
                    return Ok(self.next_header(index + 1));
                }
                Ok(State::Body {
                    index,
                    remaining: size,
                    hasher: Box::new(Sha256::new()),
                    buf: metadata.then(|| Vec::with_capacity(size as usize)),
                })
            }
        }
    }
}
