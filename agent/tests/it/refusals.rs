//! Every refusal reason, through the real `sealift-agent import` CLI against a running agent
//! with the real registry: each crafted bundle is refused with its code and a message naming
//! the reason, the store, trust state and registry are unchanged, and the audit log records
//! the refusal. The set of reasons exercised must equal the set the code can produce, so a
//! new reason without a case here fails the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use agent::audit::{AuditLog, AuditRecord};
use agent::config::AgentConfig;
use agent::refusal::ImportRefusalKind;
use agent::service::Agent;
use keys::{Envelope, KeySet, RootDocument, SigningKey};
use schemas::entry::{CHART_PATH, HEAD_PATH, OCI_LAYOUT_PATH, RENDER_PATH};
use schemas::head::Head;
use schemas::reader::MAX_METADATA_BYTES;
use schemas::tar_header::{self, BLOCK};
use schemas::writer::{Content, EntrySource, write_archive};
use schemas::{Digest, Manifest, RefusalKind, Timestamp};
use strum::IntoEnumIterator;
use tests::registry::{Registry, RegistryOptions};
use tests::sample;

use super::harness::{ADMIN, AgentYaml, write_agent_dir};
/// CREATED: SOURCE_DATE_EPOCH of the bundle, 2026-01-01.
use super::vendor::{CREATED, Vendor};
/// The agent's clock: 2026-03-01, inside the bundle's window.
const NOW: i64 = CREATED + 59 * 86_400;
/// The good bundle's sequence and minSequence; importing it raises the agent's minSequence.
const SEQUENCE: u64 = 5;
const MIN_SEQUENCE: u64 = 3;
/// The store's limit: far above any disk, so free space and `maxBytes` can each be the
/// limit that a bundle's declared size exceeds.
const MAX_BYTES: u64 = 1 << 60;

/// Reasons that cannot be produced through `sealift-agent import`, as (code, why and which
/// test covers it instead). Empty: every reason is reachable from outside; keep it so
/// unless a reason truly is not.
const NOT_REACHABLE_BY_CLI: &[(&str, &str)] = &[];

/// The vendor's keys and roots, and one good sample-app bundle built by the real bundler.
struct Fixture {
    _vendor: Vendor,
    roots: PathBuf,
    release_key: SigningKey,
    good: PathBuf,
}

impl Fixture {
    fn build() -> Self {
        let vendor = Vendor::new();
        let good = vendor.dir.path().join("good.sealift");
        vendor.build_into(
            &sample::sample_spec("1.0.0"),
            &good,
            "1.0.0",
            SEQUENCE,
            CREATED,
            &["--min-sequence", &MIN_SEQUENCE.to_string()],
        );
        Self {
            roots: vendor.roots.clone(),
            release_key: vendor.signing_key(),
            good,
            _vendor: vendor,
        }
    }
}

/// One entry of an archive: where its header is, its path and size.
#[derive(Debug, Clone)]
struct Entry {
    at: usize,
    path: String,
    size: usize,
}

impl Entry {
    fn content<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.at + BLOCK..self.at + BLOCK + self.size]
    }
    fn end(&self) -> usize {
        self.at + BLOCK + self.size + tar_header::padding(self.size as u64) as usize
    }
}

/// The good bundle's bytes, taken apart so cases can be cut from it.
struct Good {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    head: Head,
    manifest: Manifest,
    release_key: SigningKey,
}

impl Good {
    fn new(bytes: Vec<u8>, release_key: SigningKey) -> Self {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            let h: &[u8; BLOCK] = bytes[at..at + BLOCK].try_into().unwrap();
            if h.iter().all(|&b| b == 0) {
                break;
            }
            let p = tar_header::parse(h);
            let e = Entry {
                at,
                path: String::from_utf8(p.name).unwrap(),
                size: usize::try_from(p.size.unwrap()).unwrap(),
            };
            at = e.end();
            entries.push(e);
        }
        assert_eq!(entries[0].path, HEAD_PATH);
        let head = Head::from_entry(entries[0].content(&bytes)).unwrap();
        let manifest = Manifest::parse(&head.release.payload).unwrap();
        Self {
            bytes,
            entries,
            head,
            manifest,
            release_key,
        }
    }

    fn entry(&self, path: &str) -> &Entry {
        self.entries.iter().find(|e| e.path == path).unwrap()
    }

    fn head_size(&self) -> usize {
        self.entries[0].size
    }

    /// The good bundle with byte `at` replaced by `f(byte)`.
    fn with_byte(&self, at: usize, f: impl FnOnce(u8) -> u8) -> Vec<u8> {
        let mut m = self.bytes.clone();
        m[at] = f(m[at]);
        m
    }

    /// The good bundle with the header at `at` replaced by a canonical header of `name`,
    /// `typeflag` and `size`, its checksum recomputed: only the intended field differs.
    fn with_header(&self, at: usize, name: &str, typeflag: u8, size: u64) -> Vec<u8> {
        let mut h = tar_header::encode(name, size);
        h[156] = typeflag;
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut m = self.bytes.clone();
        m[at..at + BLOCK].copy_from_slice(&h);
        m
    }

    /// The good bundle with its head entry's content replaced (same size, so nothing moves).
    fn with_head_entry(&self, entry: &[u8]) -> Vec<u8> {
        assert_eq!(entry.len(), self.head_size());
        let mut m = self.bytes.clone();
        m[BLOCK..BLOCK + entry.len()].copy_from_slice(entry);
        m
    }

    fn with_head(&self, head: &Head) -> Vec<u8> {
        self.with_head_entry(
            &head
                .to_entry_of_size(self.head_size())
                .expect("the head fits its reserve"),
        )
    }

    /// A head releasing `payload`, validly signed by the vendor's release key.
    fn signed_head(&self, payload: Vec<u8>) -> Head {
        let mut release = Envelope::new(keys::MANIFEST_PAYLOAD_TYPE, payload);
        release.sign(&self.release_key).unwrap();
        Head {
            roots: self.head.roots.clone(),
            release,
        }
    }

    /// The good archive under a validly signed head for the manifest as `edit` leaves it.
    fn resigned(&self, edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
        let mut m = self.manifest.clone();
        edit(&mut m);
        self.with_head(&self.signed_head(m.to_payload()))
    }

    /// Only the head's header and entry, validly signed for the edited manifest: what
    /// follows is never read because the refusal comes at the head.
    fn resigned_head_only(&self, edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
        let end = self.entries[0].end();
        self.resigned(edit)[..end].to_vec()
    }

    /// A whole new archive: every entry of the good one, with `path`'s content replaced
    /// and the manifest re-signed to match.
    fn rebuilt_with(&self, path: &str, content: Vec<u8>) -> Vec<u8> {
        let mut m = self.manifest.clone();
        let record = m.entries.iter_mut().find(|e| e.path.as_str() == path).unwrap();
        record.size = content.len() as u64;
        record.digest = Digest::of(&content);
        let sources: Vec<EntrySource> = self.entries[1..]
            .iter()
            .map(|e| {
                let bytes = if e.path == path {
                    content.clone()
                } else {
                    e.content(&self.bytes).to_vec()
                };
                EntrySource {
                    path: e.path.parse().unwrap(),
                    size: bytes.len() as u64,
                    content: Content::Bytes(bytes),
                }
            })
            .collect();
        let mut out = Vec::new();
        write_archive(&mut out, &self.signed_head(m.to_payload()).to_entry(), &sources, |_| {}).unwrap();
        out
    }
}

/// Declares `size` bytes for the manifest entry `path`.
fn set_size(m: &mut Manifest, path: &str, size: u64) {
    m.entries.iter_mut().find(|e| e.path.as_str() == path).unwrap().size = size;
}

/// A running agent on loopback with its own store and target registry, on a clock the test sets.
struct RunningAgent {
    dir: tempfile::TempDir,
    _agent: Arc<Agent>,
    url: String,
    target: Registry,
    clock: Arc<AtomicI64>,
    _server: tokio::task::JoinHandle<()>,
}

/// `agent.yaml` for a store in `dir`, listening on `listen`.
fn write_config(dir: &Path, vendor: &Fixture, target: &Registry, listen: &str) -> PathBuf {
    write_agent_dir(
        dir,
        &vendor.roots,
        AgentYaml {
            listen,
            product: "sample-app",
            max_bytes: &MAX_BYTES.to_string(),
            registry: &target.addr(),
            extra: "",
        },
    )
}

async fn start_agent(vendor: &Fixture) -> RunningAgent {
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    let cfg = AgentConfig::load(&write_config(dir.path(), vendor, &target, "127.0.0.1:0")).unwrap();
    let clock = Arc::new(AtomicI64::new(NOW));
    let agent = {
        let clock = clock.clone();
        Arc::new(
            Agent::open_with_clock(
                cfg,
                Box::new(move || Timestamp::from_unix(clock.load(Ordering::SeqCst)).unwrap()),
            )
            .unwrap(),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = agent::api::router(agent.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    RunningAgent {
        dir,
        _agent: agent,
        url,
        target,
        clock,
        _server: server,
    }
}

/// What `sealift-agent import` is given.
enum Source<'a> {
    /// A file the CLI uploads.
    Upload(&'a Path),
    /// A path on the agent's volume (`--from-path`).
    OnAgent(&'a Path),
}

async fn cli_import(url: &str, source: Source<'_>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealift-agent"));
    cmd.arg("import");
    match source {
        Source::Upload(p) => cmd.arg(p),
        Source::OnAgent(p) => cmd.arg("--from-path").arg(p),
    };
    cmd.args(["--server", url, "--token", ADMIN]);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Everything a refusal must leave unchanged.
#[derive(Debug)]
struct Snapshot {
    trust: Vec<u8>,
    index: Vec<u8>,
    bundles: Vec<String>,
    uploads: Vec<String>,
    registry: Vec<String>,
}

impl Snapshot {
    /// What differs in `after`, one line per part.
    fn changes(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        if self.trust != after.trust {
            out.push("trust.json changed".to_owned());
        }
        if self.index != after.index {
            out.push("index.json changed".to_owned());
        }
        for (what, b, a) in [
            ("bundles", &self.bundles, &after.bundles),
            ("uploads", &self.uploads, &after.uploads),
            ("registry manifests", &self.registry, &after.registry),
        ] {
            if b != a {
                out.push(format!("{what} changed from {b:?} to {a:?}"));
            }
        }
        out
    }
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Store files, index, trust state, and the registry's repositories, tags and manifest revisions.
fn snapshot(store: &Path, registry: &Registry) -> Snapshot {
    let root = registry.storage_dir();
    let manifests = walkdir::WalkDir::new(&root)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .map(|e| e.path().strip_prefix(&root).unwrap().display().to_string())
        .filter(|p| p.contains("/_manifests/"))
        .collect();
    Snapshot {
        trust: std::fs::read(store.join("trust.json")).unwrap_or_default(),
        index: std::fs::read(store.join("index.json")).unwrap_or_default(),
        bundles: list(&store.join("bundles")),
        uploads: list(&store.join("uploads")),
        registry: manifests,
    }
}

fn last_audit(store: &Path) -> AuditRecord {
    AuditLog::new(&store.join("audit.jsonl"))
        .read()
        .unwrap()
        .pop()
        .expect("an audit record")
}

/// Imports through the CLI and checks the refusal: exit code 1, `(code)` and `message` on
/// stderr, nothing changed, and the refusal audited with its code. Returns what was wrong,
/// so one run reports every reason that misbehaves.
async fn check_refused(
    url: &str,
    store: &Path,
    registry: &Registry,
    source: Source<'_>,
    code: &str,
    message: &str,
) -> Result<(), String> {
    let before = snapshot(store, registry);
    let out = cli_import(url, source).await;
    let err = String::from_utf8_lossy(&out.stderr);
    let mut wrong = Vec::new();
    if out.status.code() != Some(1) {
        wrong.push(format!("exit code {:?}", out.status.code()));
    }
    if !err.contains(&format!("({code})")) {
        wrong.push(format!("no ({code}) on stderr"));
    }
    if !err.contains(message) {
        wrong.push(format!("no {message:?} on stderr"));
    }
    wrong.extend(before.changes(&snapshot(store, registry)));
    let audit = last_audit(store);
    if (audit.outcome.as_str(), audit.code.as_deref()) != ("refused", Some(code)) {
        wrong.push(format!("last audit record {audit:?}"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{code}: {}\n    stderr: {}", wrong.join("; "), err.trim()))
    }
}

/// Every code an import can be refused with: the format's and the agent's own.
fn every_code() -> BTreeSet<&'static str> {
    RefusalKind::iter()
        .map(RefusalKind::code)
        .chain(ImportRefusalKind::iter().filter_map(ImportRefusalKind::code))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_reason_is_refused_through_the_cli_and_changes_nothing() {
    let vendor = Fixture::build();
    let imported = Good::new(std::fs::read(&vendor.good).unwrap(), vendor.release_key.clone());
    let a = start_agent(&vendor).await;
    let store = a.dir.path().join("store");

    // A first import: the store, trust state (minSequence 3, clock floor NOW, 1.0.0 at
    // sequence 5) and the registry hold something every refusal must leave alone.
    let out = cli_import(&a.url, Source::Upload(&vendor.good)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!snapshot(&store, &a.target).registry.is_empty());
    // The cases are cut from a bundle the agent does not hold yet (a rebuild of 1.0.0 with
    // sequence 6, the archive unchanged): for a bundle it holds, the agent stops reading
    // after the head and keeps its verified copy.
    let good = Good::new(imported.resigned(|m| m.sequence = 6), vendor.release_key.clone());

    let chart = good.entry(CHART_PATH).clone();
    let padded = good
        .entries
        .iter()
        .find(|e| e.size % BLOCK != 0)
        .expect("an entry with padding")
        .clone();
    let len = good.bytes.len();
    let json_len = good.head.to_json().len();

    // A root the agent never trusted, naming the vendor's release key.
    let stranger = SigningKey::from_seed(&[42; 32]);
    let mut stranger_root = RootDocument {
        version: 1,
        root_keys: KeySet::new(1, vec![stranger.public_key()]).unwrap(),
        release_keys: KeySet::new(1, vec![good.release_key.public_key()]).unwrap(),
    }
    .to_envelope();
    stranger_root.sign(&stranger).unwrap();

    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        // Archive structure, by byte surgery on the good file.
        ("truncated", "file ends at byte".into(), good.bytes[..len / 2].to_vec()),
        (
            "not_regular_file",
            "is not a regular file (typeflag '2')".into(),
            good.with_header(chart.at, CHART_PATH, b'2', chart.size as u64),
        ),
        (
            "unsafe_path",
            "has an unsafe path \"../evil\"".into(),
            good.with_header(chart.at, "../evil", b'0', chart.size as u64),
        ),
        (
            "unexpected_entry",
            format!("is \"{RENDER_PATH}\", expected \"{CHART_PATH}\""),
            good.with_header(chart.at, RENDER_PATH, b'0', chart.size as u64),
        ),
        (
            "entry_size_mismatch",
            format!("declares {} bytes, the manifest says {}", chart.size + 1, chart.size),
            good.with_header(chart.at, CHART_PATH, b'0', chart.size as u64 + 1),
        ),
        (
            "non_canonical_header",
            "is not canonical: field mode differs".into(),
            good.with_byte(chart.at + 101, |_| b'1'),
        ),
        (
            "header_checksum",
            "has a bad checksum".into(),
            good.with_byte(chart.at + 150, |b| if b == b'7' { b'6' } else { b + 1 }),
        ),
        (
            "head_too_large",
            "more than the limit of 4194304".into(),
            good.with_header(0, HEAD_PATH, b'0', 5 << 20),
        ),
        (
            "digest_mismatch",
            format!("entry {CHART_PATH} has digest"),
            good.with_byte(chart.at + BLOCK + 7, |b| b ^ 1),
        ),
        (
            "non_zero_padding",
            format!(
                "padding after {} at byte {}",
                padded.path,
                padded.at + BLOCK + padded.size
            ),
            good.with_byte(padded.at + BLOCK + padded.size, |_| 1),
        ),
        (
            "end_block_not_zero",
            format!("end-of-archive block at byte {}", len - 1),
            good.with_byte(len - 1, |_| 1),
        ),
        (
            "trailing_data",
            format!("data after the end of the archive at byte {len}"),
            {
                let mut m = good.bytes.clone();
                m.push(0);
                m
            },
        ),
        // The head's bytes, the signatures untouched.
        (
            "head_malformed",
            "head is not valid JSON of the head form".into(),
            good.with_byte(BLOCK, |_| b'x'),
        ),
        (
            "head_not_canonical",
            "head is not in canonical form (first difference at byte 1".into(),
            {
                let entry = good.entries[0].content(&good.bytes);
                let mut spaced = b"{ ".to_vec();
                spaced.extend_from_slice(&entry[1..entry.len() - 1]);
                good.with_head_entry(&spaced)
            },
        ),
        (
            "head_padding",
            format!("head padding at byte {json_len} of the head entry"),
            good.with_byte(BLOCK + json_len, |_| 1),
        ),
        ("envelope_invalid", "release envelope is invalid".into(), {
            let mut head = good.head.clone();
            let sig = head.release.signatures[0].clone();
            head.release.signatures.push(sig);
            good.with_head(&head)
        }),
        ("root_chain_untrusted", "root chain is not trusted".into(), {
            let mut head = good.head.clone();
            head.roots = vec![stranger_root];
            good.with_head(&head)
        }),
        (
            "release_signatures_untrusted",
            "release signatures are not trusted".into(),
            {
                let mut head = good.head.clone();
                head.release.signatures.clear();
                good.with_head(&head)
            },
        ),
        // Validly signed by the vendor's release key, but what it signs is wrong.
        ("manifest_invalid", "manifest cannot be read".into(), {
            let mut v: serde_json::Value = serde_json::from_slice(&good.manifest.to_payload()).unwrap();
            v["unknownField"] = true.into();
            good.with_head(&good.signed_head(serde_json::to_vec_pretty(&v).unwrap()))
        }),
        (
            "manifest_inconsistent",
            "manifest is inconsistent: expires".into(),
            good.resigned(|m| m.expires = m.created),
        ),
        ("metadata_too_large", "more than the limit of 67108864".into(), {
            let big = MAX_METADATA_BYTES + 1;
            let mut m = good.resigned_head_only(|m| set_size(m, CHART_PATH, big));
            m.extend_from_slice(&tar_header::encode(CHART_PATH, big));
            m
        }),
        // Policy and trust state: minSequence 3, clock NOW, 1.0.0 accepted at sequence 5.
        (
            "wrong_product",
            "expected \"sample-app\"".into(),
            good.resigned(|m| m.product = "other-product".parse().unwrap()),
        ),
        (
            "below_min_sequence",
            "bundle sequence 2 is below the minimum sequence 3".into(),
            good.resigned(|m| {
                m.version = semver::Version::new(9, 0, 0);
                (m.sequence, m.min_sequence) = (2, 0);
            }),
        ),
        (
            "expired",
            "bundle expired at".into(),
            good.resigned(|m| m.expires = Timestamp::from_unix(NOW - 1).unwrap()),
        ),
        (
            "created_in_future",
            "more than 3600s after the clock".into(),
            good.resigned(|m| m.created = Timestamp::from_unix(NOW + 7200).unwrap()),
        ),
        (
            "older_build",
            "version 1.0.0 was already accepted with sequence".into(),
            imported.resigned(|m| m.sequence = 4),
        ),
        // Space is checked at the head, before any blob is written: the declared sizes
        // exceed free space (but not maxBytes), then maxBytes.
        (
            "insufficient_space",
            "not enough space for the bundle".into(),
            good.resigned_head_only(|m| set_size(m, RENDER_PATH, 1 << 50)),
        ),
        (
            "store_full",
            "the store would exceed maxBytes".into(),
            good.resigned_head_only(|m| set_size(m, RENDER_PATH, MAX_BYTES)),
        ),
        // Last: a bundle wrongly accepted here would change the state later cases start from.
        (
            "metadata_invalid",
            format!("metadata entry {OCI_LAYOUT_PATH} is invalid"),
            good.rebuilt_with(OCI_LAYOUT_PATH, br#"{"imageLayoutVersion":"1.1.0"}"#.to_vec()),
        ),
    ];

    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    let files = tempfile::tempdir().unwrap();
    let format_codes: BTreeSet<&str> = RefusalKind::iter().map(RefusalKind::code).collect();
    for (code, message, bytes) in cases {
        let file = files.path().join(format!("{code}.sealift"));
        std::fs::write(&file, bytes).unwrap();
        // The case is what it claims: the format library refuses the file for this reason
        // under the agent's trust state, so the agent must too.
        if format_codes.contains(code) {
            let library = library_code(&vendor, &file);
            if library != Some(code) {
                failures.push(format!("{code}: the case is wrong: the library says {library:?}"));
            }
        }
        let checked = check_refused(&a.url, &store, &a.target, Source::Upload(&file), code, &message).await;
        failures.extend(checked.err());
        covered.insert(code);
    }

    // The clock more than the skew behind the floor the first import raised.
    a.clock.store(NOW - 7200, Ordering::SeqCst);
    let checked = check_refused(
        &a.url,
        &store,
        &a.target,
        Source::Upload(&vendor.good),
        "clock_behind_floor",
        "more than 3600s behind the clock floor",
    )
    .await;
    failures.extend(checked.err());
    a.clock.store(NOW, Ordering::SeqCst);
    covered.insert("clock_behind_floor");

    let missing = files.path().join("missing.sealift");
    let checked = check_refused(
        &a.url,
        &store,
        &a.target,
        Source::OnAgent(&missing),
        "source_unreadable",
        &format!("the file {} cannot be read", missing.display()),
    )
    .await;
    failures.extend(checked.err());
    covered.insert("source_unreadable");

    // A file on the agent's volume that ends early: the agent read all of it.
    let checked = check_refused(
        &a.url,
        &store,
        &a.target,
        Source::OnAgent(&files.path().join("truncated.sealift")),
        "truncated",
        "file ends at byte",
    )
    .await;
    failures.extend(checked.err().map(|e| format!("--from-path {e}")));

    failures.extend(write_failed_mid_stream(&vendor, &good, &a.target).await.err());
    covered.insert("write_failed");

    let excluded: BTreeSet<&str> = NOT_REACHABLE_BY_CLI.iter().map(|(code, _)| *code).collect();
    assert!(covered.is_disjoint(&excluded), "a code is both covered and excluded");
    let exercised: BTreeSet<&str> = covered.union(&excluded).copied().collect();
    assert_eq!(
        exercised,
        every_code(),
        "every refusal reason needs a case here (or a reasoned entry in NOT_REACHABLE_BY_CLI)"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases misbehave:\n{}",
        failures.len(),
        covered.len(),
        failures.join("\n")
    );

    // The agent still imports the good bundle: the refusals left it working.
    let out = cli_import(&a.url, Source::Upload(&vendor.good)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The code `schemas::verify_file` refuses `file` with, under the trust state the agent has
/// after the first import (minSequence 3, clock floor NOW), or `None` if it verifies.
fn library_code(vendor: &Fixture, file: &Path) -> Option<&'static str> {
    let trusted = keys::TrustedRoots::from_envelopes(&keys::root_dir::load(&vendor.roots).unwrap()).unwrap();
    let policy = schemas::Policy {
        product: Some("sample-app".parse().unwrap()),
        min_sequence: MIN_SEQUENCE,
        now: Some(Timestamp::from_unix(NOW).unwrap()),
        check_expiry: true,
        clock_floor: Some(Timestamp::from_unix(NOW).unwrap()),
        skew_seconds: 3600,
    };
    match schemas::verify_file(file, trusted, policy, |_| {}) {
        Ok(_) => None,
        Err(schemas::VerifyError::Refused(r)) => Some(r.code()),
        Err(e @ schemas::VerifyError::Io { .. }) => panic!("{e}"),
    }
}

/// An agent process that may not write files above this size (RLIMIT_FSIZE): writing the
/// upload fails mid-stream with EFBIG, as on a volume that fills up.
const FILE_SIZE_LIMIT_BLOCKS: u64 = 128;

/// `write_failed`: the agent runs as its own process under a file size limit below the
/// bundle's size, so writing the upload's data file fails after the head verified.
async fn write_failed_mid_stream(vendor: &Fixture, good: &Good, target: &Registry) -> Result<(), String> {
    // `ulimit -f` counts 512-byte blocks (POSIX; bash in sh mode too).
    let limit = FILE_SIZE_LIMIT_BLOCKS * 512;
    assert!(limit < good.bytes.len() as u64 / 2, "the limit must stop the upload");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = write_config(dir.path(), vendor, target, &format!("127.0.0.1:{port}"));
    // The process runs on the real clock: a bundle valid now, its archive unchanged.
    let now = Timestamp::now().unix();
    let bundle = good.resigned(|m| {
        m.created = Timestamp::from_unix(now - 86_400).unwrap();
        m.expires = Timestamp::from_unix(now + 30 * 86_400).unwrap();
    });
    let file = dir.path().join("bundle.sealift");
    std::fs::write(&file, bundle).unwrap();
    // SIGXFSZ ignored, so an oversized write fails with EFBIG instead of killing the agent.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {FILE_SIZE_LIMIT_BLOCKS}; exec \"$0\" serve --config \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_sealift-agent"))
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    let _agent = KillOnDrop(child);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the agent did not listen: {}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = dir.path().join("store");
    check_refused(
        &url,
        &store,
        target,
        Source::Upload(&file),
        "write_failed",
        "the bundle could not be written to the store: File too large",
    )
    .await
}

/// Kills the agent process this test started.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
