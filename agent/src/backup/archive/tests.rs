//! Round trips and every refusal of the archive, on a temporary [`DirStorage`].

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    storage: SharedStorage,
    key: keys::SigningKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage: SharedStorage = Arc::new(DirStorage::new(dir.path().join("backups")).unwrap());
    Fixture {
        dir,
        storage,
        key: keys::SigningKey::from_seed(&[1; 32]),
    }
}

impl Fixture {
    fn root(&self) -> PathBuf {
        self.dir.path().join("backups")
    }
    fn file(&self, id: &str, rel: &str) -> PathBuf {
        self.root().join(id).join(rel)
    }
    fn trust(&self) -> BackupTrust {
        BackupTrust {
            own: self.key.public_key(),
            trusted: vec![],
        }
    }
    fn open(&self, id: &str) -> Result<VerifiedBackup, ArchiveError> {
        open_verified(self.storage.clone(), &id.parse().unwrap(), &self.trust(), None)
    }
    /// A finished backup `id` with a JSON entry and a streamed part.
    fn backup(&self, id: &str, recipient: Option<age::x25519::Recipient>) -> BackupId {
        let id: BackupId = id.parse().unwrap();
        let writer = BackupWriter::create(self.storage.clone(), id, info(), recipient).unwrap();
        writer
            .add_bytes("objects/secrets.json", br#"[{"kind":"Secret"}]"#)
            .unwrap();
        let mut sink = writer.entry("parts/db").unwrap();
        sink.write_all(b"dump ").unwrap();
        sink.write_all(b"of the database").unwrap();
        assert_eq!(sink.finish().unwrap(), 20);
        writer.finish(&self.key).unwrap();
        id
    }
    /// Everything in the storage directory, temporary files included.
    fn everything(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.root(), &self.root(), &mut out);
        out.sort();
        out
    }
}

fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.strip_prefix(base).unwrap().display().to_string());
        if p.is_dir() {
            walk(base, &p, out);
        }
    }
}

fn info() -> BackupInfo {
    BackupInfo {
        product: "acme".into(),
        app_version: "2.4.0".into(),
        bundle: format!("sha256:{}", "ab".repeat(32)),
        sequence: 7,
        source_namespace: "acme".into(),
        kind: BackupKind::PreUpgrade,
        revision: Some(3),
    }
}

const ID: &str = "2026-11-22t06-00-00";

fn read_all(backup: &VerifiedBackup, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    backup.read(path).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn code(r: Result<VerifiedBackup, ArchiveError>) -> &'static str {
    r.map(|_| ()).unwrap_err().code()
}

#[test]
fn round_trip_plain() {
    let f = fixture();
    let id = f.backup(ID, None);
    let status = read_status(f.storage.as_ref(), &id).unwrap();
    assert_eq!(status.status, BackupState::Success);
    assert_eq!(status.kind, BackupKind::PreUpgrade);
    assert_eq!(status.revision, Some(3));
    assert!(!status.encrypted);
    let manifest_len = std::fs::metadata(f.file(ID, MANIFEST_FILE)).unwrap().len();
    assert_eq!(status.size_bytes, 19 + 20 + manifest_len);
    assert_eq!(list_backups(f.storage.as_ref()).unwrap(), [id]);

    let backup = f.open(ID).unwrap();
    let m = backup.manifest();
    assert_eq!((m.format, m.id, m.sequence, m.revision), (1, id, 7, Some(3)));
    assert_eq!(m.created.to_string(), "2026-11-22T06:00:00Z");
    let paths: Vec<_> = backup.entries().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["objects/secrets.json", "parts/db"]);
    assert_eq!(
        backup.entries()[1].sha256,
        hex::encode(Sha256::digest(b"dump of the database"))
    );
    assert_eq!(read_all(&backup, "parts/db"), b"dump of the database");
    let v: serde_json::Value = backup.read_json("objects/secrets.json").unwrap();
    assert_eq!(v[0]["kind"], "Secret");
    assert_eq!(
        backup.read("parts/other").map(|_| ()).unwrap_err().code(),
        "entry_missing"
    );
    let err = backup.read_json::<u32>("parts/db").unwrap_err();
    assert_eq!(err.code(), "entry_invalid");

    // The status file is the only thing besides the manifest and entries.
    let listing = f.storage.list_objects(ID).unwrap();
    assert_eq!(
        listing,
        [
            "entries/objects/secrets.json",
            "entries/parts/db",
            "manifest.json",
            "status.json"
        ]
    );
    delete_backup(f.storage.as_ref(), &id).unwrap();
    assert_eq!(code(f.open(ID)), "backup_not_found");
    assert_eq!(
        delete_backup(f.storage.as_ref(), &id).unwrap_err().code(),
        "backup_not_found"
    );
}

/// Deterministic, incompressible-looking bytes.
fn chunk(i: u64) -> Vec<u8> {
    Sha256::digest(i.to_le_bytes()).repeat(128)
}

#[test]
fn round_trip_encrypted_with_a_large_streamed_entry() {
    let f = fixture();
    let identity = age::x25519::Identity::generate();
    let id: BackupId = ID.parse().unwrap();
    let writer = BackupWriter::create(f.storage.clone(), id, info(), Some(identity.to_public())).unwrap();
    writer.add_bytes("agent/state.json", b"{\"a\":1}").unwrap();
    // 20 MiB in 4 KiB writes.
    let mut sink = writer.entry("parts/big").unwrap();
    let mut plain = Sha256::new();
    for i in 0..5120 {
        let c = chunk(i);
        plain.update(&c);
        sink.write_all(&c).unwrap();
    }
    assert_eq!(sink.finish().unwrap(), 20 << 20);
    let status = writer.finish(&f.key).unwrap();
    assert!(status.encrypted);

    // Stored as ciphertext: no plaintext chunk appears in the file.
    let stored = std::fs::read(f.file(ID, "entries/agent/state.json")).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n"), "{stored:?}");

    let backup = open_verified(f.storage.clone(), &id, &f.trust(), Some(&identity)).unwrap();
    assert_eq!(
        backup.manifest().encrypted.as_ref().unwrap().recipient,
        identity.to_public().to_string()
    );
    let big = backup
        .entries()
        .iter()
        .find(|e| e.path.as_str() == "parts/big")
        .unwrap();
    assert!(big.size > 20 << 20);
    let mut reader = backup.read("parts/big").unwrap();
    let mut got = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut n_total = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        n_total += n as u64;
        got.update(&buf[..n]);
    }
    assert_eq!(n_total, 20 << 20);
    assert_eq!(got.finalize(), plain.finalize());
    let v: serde_json::Value = backup.read_json("agent/state.json").unwrap();
    assert_eq!(v["a"], 1);

    // Without the key, or with another one: refused before any data is read.
    let no_key = open_verified(f.storage.clone(), &id, &f.trust(), None);
    let err = no_key.map(|_| ()).unwrap_err();
    assert_eq!(err.code(), "encrypted_no_key");
    assert!(err.to_string().contains(&identity.to_public().to_string()), "{err}");
    let other = age::x25519::Identity::generate();
    let err = open_verified(f.storage.clone(), &id, &f.trust(), Some(&other))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), "decrypt_failed");
    assert!(err.to_string().contains(&other.to_public().to_string()), "{err}");
}

fn flip_byte(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_changed_entry_is_refused() {
    let f = fixture();
    f.backup(ID, None);
    let db = f.file(ID, "entries/parts/db");
    flip_byte(&db, 3);
    let err = f.open(ID).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), "entry_digest");
    assert!(
        err.to_string()
            .starts_with("entry parts/db of backup 2026-11-22t06-00-00 has sha256 "),
        "{err}"
    );

    std::fs::write(&db, b"dump of the").unwrap();
    let err = f.open(ID).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), "entry_size");
    assert_eq!(
        err.to_string(),
        "entry parts/db of backup 2026-11-22t06-00-00 is 11 bytes, the manifest says 20"
    );

    std::fs::remove_file(&db).unwrap();
    let err = f.open(ID).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), "entry_missing");
    assert_eq!(
        err.to_string(),
        "backup 2026-11-22t06-00-00 has no entry parts/db, which its manifest lists"
    );
}

#[test]
fn an_extra_file_is_refused() {
    let f = fixture();
    f.backup(ID, None);
    std::fs::write(f.file(ID, "entries/parts/extra"), b"x").unwrap();
    let err = f.open(ID).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), "entry_unlisted");
    assert_eq!(
        err.to_string(),
        "backup 2026-11-22t06-00-00 holds entries/parts/extra, which its manifest does not list"
    );
    std::fs::remove_file(f.file(ID, "entries/parts/extra")).unwrap();
    std::fs::write(f.file(ID, "notes.txt"), b"x").unwrap();
    assert_eq!(code(f.open(ID)), "entry_unlisted");
}

#[test]
fn a_change_after_verification_fails_the_read() {
    let f = fixture();
    f.backup(ID, None);
    let backup = f.open(ID).unwrap();
    flip_byte(&f.file(ID, "entries/parts/db"), 19);
    let mut out = Vec::new();
    let err = backup.read("parts/db").unwrap().read_to_end(&mut out).unwrap_err();
    assert_eq!(ArchiveError::io("reading", err).code(), "entry_digest");
    assert_eq!(
        backup.read_json::<String>("parts/db").unwrap_err().code(),
        "entry_digest"
    );
}

/// The reopen of a verified backup skips only the digest pass: the signature, the set of
/// entries and their sizes are checked, and a changed byte still fails the read.
#[test]
fn a_reopened_backup_checks_everything_but_digests_and_reads_still_check_them() {
    let f = fixture();
    f.backup(ID, None);
    let reopen = || reopen_verified(f.storage.clone(), &ID.parse().unwrap(), &f.trust(), None);
    assert_eq!(read_all(&reopen().unwrap(), "parts/db"), b"dump of the database");

    let db = f.file(ID, "entries/parts/db");
    flip_byte(&db, 19);
    assert_eq!(code(f.open(ID)), "entry_digest");
    let backup = reopen().unwrap();
    let mut out = Vec::new();
    let err = backup.read("parts/db").unwrap().read_to_end(&mut out).unwrap_err();
    assert_eq!(ArchiveError::io("reading", err).code(), "entry_digest");

    std::fs::write(&db, b"dump of the").unwrap();
    assert_eq!(code(reopen()), "entry_size");
    std::fs::write(f.file(ID, "entries/parts/extra"), b"x").unwrap();
    assert_eq!(code(reopen()), "entry_unlisted");
    let other = BackupTrust {
        own: keys::SigningKey::from_seed(&[2; 32]).public_key(),
        trusted: vec![],
    };
    let err = reopen_verified(f.storage.clone(), &ID.parse().unwrap(), &other, None).unwrap_err();
    assert_eq!(err.code(), "untrusted_key", "{err}");
}

/// The manifest envelope of a stored backup.
fn envelope(f: &Fixture) -> keys::Envelope {
    keys::Envelope::parse_canonical(&std::fs::read(f.file(ID, MANIFEST_FILE)).unwrap()).unwrap()
}

#[test]
fn an_edited_manifest_is_refused() {
    let f = fixture();
    f.backup(ID, None);
    let original = envelope(&f);
    let edited_payload = String::from_utf8(original.payload.clone())
        .unwrap()
        .replace("\"acme\"", "\"evil\"");

    // Edited, signature kept.
    let mut edited = original.clone();
    edited.payload = edited_payload.clone().into_bytes();
    std::fs::write(f.file(ID, MANIFEST_FILE), edited.to_canonical_json()).unwrap();
    let err = f.open(ID).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), "signature_invalid");
    assert!(
        err.to_string().contains(&f.key.public_key().key_id().to_string()),
        "{err}"
    );

    // Edited and re-signed by a key nobody trusts.
    let stranger = keys::SigningKey::from_seed(&[9; 32]);
    let mut resigned = keys::Envelope::new(BACKUP_PAYLOAD_TYPE, edited_payload.into_bytes());
    resigned.sign(&stranger).unwrap();
    std::fs::write(f.file(ID, MANIFEST_FILE), resigned.to_canonical_json()).unwrap();
    let err = f.open(ID).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), "untrusted_key");
    let msg = err.to_string();
    assert!(msg.contains(&stranger.public_key().key_id().to_string()), "{msg}");
    assert!(msg.contains("backups.trustedKeys"), "{msg}");

    // Not canonical (a space added): refused before the signature is looked at.
    let mut spaced = original.to_canonical_json();
    spaced.push(b' ');
    std::fs::write(f.file(ID, MANIFEST_FILE), spaced).unwrap();
    assert_eq!(code(f.open(ID)), "manifest_invalid");

    // Signed by this agent but naming another backup.
    let mut m: BackupManifest = serde_json::from_slice(&original.payload).unwrap();
    m.id = "2026-11-22t06-00-01".parse().unwrap();
    let mut other = keys::Envelope::new(BACKUP_PAYLOAD_TYPE, serde_json::to_vec(&m).unwrap());
    other.sign(&f.key).unwrap();
    std::fs::write(f.file(ID, MANIFEST_FILE), other.to_canonical_json()).unwrap();
    let err = f.open(ID).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), "manifest_invalid");
    assert!(
        err.to_string()
            .contains("it is the manifest of backup 2026-11-22t06-00-01"),
        "{err}"
    );

    // An unknown field, signed: strict parsing refuses it.
    let mut v: serde_json::Value = serde_json::from_slice(&original.payload).unwrap();
    v["extra"] = serde_json::json!(1);
    let mut unknown = keys::Envelope::new(BACKUP_PAYLOAD_TYPE, serde_json::to_vec(&v).unwrap());
    unknown.sign(&f.key).unwrap();
    std::fs::write(f.file(ID, MANIFEST_FILE), unknown.to_canonical_json()).unwrap();
    let err = f.open(ID).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");
}

#[test]
fn a_trusted_agents_backup_is_accepted() {
    let f = fixture();
    f.backup(ID, None);
    let other_agent = BackupTrust {
        own: keys::SigningKey::from_seed(&[2; 32]).public_key(),
        trusted: vec![f.key.public_key()],
    };
    open_verified(f.storage.clone(), &ID.parse().unwrap(), &other_agent, None).unwrap();
    let untrusting = BackupTrust {
        own: keys::SigningKey::from_seed(&[2; 32]).public_key(),
        trusted: vec![],
    };
    let err = open_verified(f.storage.clone(), &ID.parse().unwrap(), &untrusting, None).map(|_| ());
    assert_eq!(err.unwrap_err().code(), "untrusted_key");
}

#[test]
fn only_successful_backups_open() {
    let f = fixture();
    let id: BackupId = ID.parse().unwrap();
    let writer = BackupWriter::create(f.storage.clone(), id, info(), None).unwrap();
    writer.add_bytes("a", b"1").unwrap();
    let err = f.open(ID).map(|_| ()).unwrap_err();
    assert_eq!(err.code(), "backup_not_successful");
    assert_eq!(err.to_string(), "backup 2026-11-22t06-00-00 is Running, not Success");
    // A second backup in the same second is refused.
    let again = BackupWriter::create(f.storage.clone(), id, info(), None).map(|_| ());
    assert_eq!(again.unwrap_err().code(), "backup_exists");

    let status = writer.fail("the dump step failed").unwrap();
    assert_eq!(status.status, BackupState::Failed);
    assert_eq!(status.size_bytes, 1);
    let err = f.open(ID).map(|_| ()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backup 2026-11-22t06-00-00 is Failed, not Success: the dump step failed"
    );
    // Failed stays Failed; the first reason is kept.
    let again = mark_failed(f.storage.as_ref(), &id, "other").unwrap();
    assert_eq!(again.reason.as_deref(), Some("the dump step failed"));
}

#[test]
fn an_unfinished_writer_never_ends_success() {
    let f = fixture();
    let a: BackupId = ID.parse().unwrap();
    drop(BackupWriter::create(f.storage.clone(), a, info(), None).unwrap());
    let status = read_status(f.storage.as_ref(), &a).unwrap();
    assert_eq!(
        (status.status, status.reason.as_deref()),
        (BackupState::Failed, Some(ABANDONED_REASON))
    );

    // Marked Failed while it ran (e.g. by recover_interrupted): finish refuses.
    let b: BackupId = "2026-11-22t06-00-01".parse().unwrap();
    let writer = BackupWriter::create(f.storage.clone(), b, info(), None).unwrap();
    mark_failed(f.storage.as_ref(), &b, "stopped").unwrap();
    assert_eq!(writer.finish(&f.key).unwrap_err().code(), "backup_not_running");
    assert_eq!(read_status(f.storage.as_ref(), &b).unwrap().status, BackupState::Failed);
    assert!(!f.file("2026-11-22t06-00-01", MANIFEST_FILE).exists());

    // A Success backup cannot be marked Failed.
    let c = f.backup("2026-11-22t06-00-02", None);
    assert_eq!(
        mark_failed(f.storage.as_ref(), &c, "x").unwrap_err().code(),
        "backup_not_running"
    );
}

#[test]
fn recover_interrupted_fails_running_backups_and_removes_leftovers() {
    let f = fixture();
    let done = f.backup("2026-11-22t05-00-00", None);
    let id: BackupId = ID.parse().unwrap();
    let writer = BackupWriter::create(f.storage.clone(), id, info(), None).unwrap();
    let mut half = writer.entry("parts/db").unwrap();
    half.write_all(b"partial").unwrap();
    half.flush().unwrap();
    // The agent stops: nothing runs Drop.
    std::mem::forget(half);
    std::mem::forget(writer);
    std::fs::create_dir_all(f.root().join(".incoming-0123/entries")).unwrap();

    assert_eq!(recover_interrupted(f.storage.as_ref()).unwrap(), [id]);
    let status = read_status(f.storage.as_ref(), &id).unwrap();
    assert_eq!(status.status, BackupState::Failed);
    assert_eq!(status.reason.as_deref(), Some(INTERRUPTED_REASON));
    assert_eq!(
        read_status(f.storage.as_ref(), &done).unwrap().status,
        BackupState::Success
    );
    let left = f.everything();
    assert!(
        !left.iter().any(|p| p.contains("incoming") || p.starts_with(".tmp/")),
        "{left:?}"
    );
}

#[test]
fn parts_are_written_once_and_only_when_finished() {
    let f = fixture();
    let id: BackupId = ID.parse().unwrap();
    let writer = BackupWriter::create(f.storage.clone(), id, info(), None).unwrap();

    // An upload that breaks off leaves nothing.
    let mut aborted = open_part_sink(f.storage.clone(), &id, "parts/db", None).unwrap();
    aborted.write_all(&[7; 100_000]).unwrap();
    drop(aborted);
    assert!(f.storage.list_objects(&format!("{ID}/entries")).unwrap().is_empty());
    assert!(
        !f.everything().iter().any(|p| p.starts_with(".tmp/")),
        "{:?}",
        f.everything()
    );

    // Two concurrent uploads: the second to commit is refused.
    let mut one = open_part_sink(f.storage.clone(), &id, "parts/db", None).unwrap();
    let mut two = open_part_sink(f.storage.clone(), &id, "parts/db", None).unwrap();
    one.write_all(b"first").unwrap();
    two.write_all(b"second").unwrap();
    one.finish().unwrap();
    let err = two.finish().unwrap_err();
    assert_eq!(err.code(), "part_exists");
    // And a later one is refused before it sends anything.
    let err = open_part_sink(f.storage.clone(), &id, "parts/db", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "entry parts/db of backup 2026-11-22t06-00-00 was already written; an entry is written once"
    );
    assert_eq!(
        open_part_sink(f.storage.clone(), &id, "../x", None).unwrap_err().code(),
        "entry_name"
    );

    writer.finish(&f.key).unwrap();
    assert_eq!(read_all(&f.open(ID).unwrap(), "parts/db"), b"first");
    // No parts for a finished backup.
    let late = open_part_sink(f.storage.clone(), &id, "parts/late", None).unwrap_err();
    assert_eq!(late.code(), "backup_not_running");
}

fn exported(f: &Fixture, id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let n = export(f.storage.clone(), &id.parse().unwrap(), &f.trust(), &mut out).unwrap();
    assert_eq!(n, out.len() as u64);
    out
}

#[test]
fn export_then_import_on_another_agent() {
    let f = fixture();
    let identity = age::x25519::Identity::generate();
    let id = f.backup(ID, Some(identity.to_public()));
    let tar = exported(&f, ID);
    assert_eq!(tar, exported(&f, ID), "exports are deterministic");
    let prepared = Export::prepare(f.storage.clone(), &id, &f.trust()).unwrap();
    assert_eq!(prepared.size().unwrap(), tar.len() as u64);

    let g = Fixture {
        key: keys::SigningKey::from_seed(&[2; 32]),
        ..fixture()
    };
    let trust = BackupTrust {
        own: g.key.public_key(),
        trusted: vec![f.key.public_key()],
    };
    let imported = import(g.storage.as_ref(), tar.as_slice(), &trust, Some(&identity)).unwrap();
    assert_eq!(imported, id);
    assert_eq!(
        std::fs::read(g.file(ID, MANIFEST_FILE)).unwrap(),
        std::fs::read(f.file(ID, MANIFEST_FILE)).unwrap()
    );
    let status = read_status(g.storage.as_ref(), &id).unwrap();
    assert_eq!(status.status, BackupState::Success);
    assert_eq!(
        status.size_bytes,
        read_status(f.storage.as_ref(), &id).unwrap().size_bytes
    );
    assert_eq!(status.created.to_string(), "2026-11-22T06:00:00Z");
    assert!(status.encrypted);
    let backup = open_verified(g.storage.clone(), &id, &trust, Some(&identity)).unwrap();
    assert_eq!(read_all(&backup, "parts/db"), b"dump of the database");

    // The same archive again: the id exists.
    let again = import(g.storage.as_ref(), tar.as_slice(), &trust, Some(&identity)).unwrap_err();
    assert_eq!(again.code(), "backup_exists");
    // Without trusting the first agent, or without its decryption key: refused.
    let own_only = BackupTrust {
        own: g.key.public_key(),
        trusted: vec![],
    };
    let h = fixture();
    assert_eq!(
        import(h.storage.as_ref(), tar.as_slice(), &own_only, Some(&identity))
            .unwrap_err()
            .code(),
        "untrusted_key"
    );
    assert_eq!(
        import(h.storage.as_ref(), tar.as_slice(), &trust, None)
            .unwrap_err()
            .code(),
        "encrypted_no_key"
    );
    assert!(list_backups(h.storage.as_ref()).unwrap().is_empty());
}

#[test]
fn a_corrupt_backup_is_not_exported() {
    let f = fixture();
    f.backup(ID, None);
    flip_byte(&f.file(ID, "entries/parts/db"), 0);
    let mut out = Vec::new();
    let err = export(f.storage.clone(), &ID.parse().unwrap(), &f.trust(), &mut out).unwrap_err();
    assert_eq!(err.code(), "entry_digest");
    assert!(out.is_empty());
}

/// One raw tar entry: the name written into the header as it is (so `..` can be expressed).
#[derive(Clone)]
struct Raw<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    link: Option<&'a str>,
    data: &'a [u8],
}

fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name);
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = e.link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        builder.append(&h, e.data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: tar::EntryType::Regular,
        link: None,
        data,
    }
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let f = fixture();
    f.backup(ID, None);
    let manifest = std::fs::read(f.file(ID, MANIFEST_FILE)).unwrap();
    let secrets = std::fs::read(f.file(ID, "entries/objects/secrets.json")).unwrap();
    let db = std::fs::read(f.file(ID, "entries/parts/db")).unwrap();
    let m = file("sealift-backup/manifest.json", &manifest);
    let s = file("sealift-backup/entries/objects/secrets.json", &secrets);
    let d = file("sealift-backup/entries/parts/db", &db);
    let symlink = Raw {
        name: b"sealift-backup/entries/parts/db",
        kind: tar::EntryType::Symlink,
        link: Some("/etc/passwd"),
        data: b"",
    };
    let hardlink = Raw {
        name: b"sealift-backup/entries/parts/db",
        kind: tar::EntryType::Link,
        link: Some("sealift-backup/manifest.json"),
        data: b"",
    };
    let dotdot = file("sealift-backup/entries/../x", b"x");
    let absolute = file("/sealift-backup/entries/parts/db", &db);
    let unlisted = file("sealift-backup/entries/parts/other", b"x");
    let stray = file("sealift-backup/status.json", b"{}");
    let odd_dir = Raw {
        name: b"sealift-backup/../",
        kind: tar::EntryType::Directory,
        link: None,
        data: b"",
    };
    let mut flipped = db.clone();
    flipped[0] ^= 1;
    let changed = file("sealift-backup/entries/parts/db", &flipped);
    let short = file("sealift-backup/entries/parts/db", &db[..5]);
    let ok_dir = Raw {
        name: b"sealift-backup/entries/parts/",
        kind: tar::EntryType::Directory,
        link: None,
        data: b"",
    };

    let g = fixture();
    let trust = f.trust();
    let cases: Vec<(&str, Vec<Raw<'_>>, &str)> = vec![
        ("dot-dot", vec![m.clone(), s.clone(), dotdot], "entry_name"),
        ("symlink", vec![m.clone(), s.clone(), symlink], "archive_invalid"),
        ("hardlink", vec![m.clone(), s.clone(), hardlink], "archive_invalid"),
        ("absolute", vec![m.clone(), s.clone(), absolute], "archive_invalid"),
        (
            "duplicate",
            vec![m.clone(), s.clone(), d.clone(), d.clone()],
            "archive_invalid",
        ),
        (
            "unlisted",
            vec![m.clone(), s.clone(), d.clone(), unlisted],
            "entry_unlisted",
        ),
        (
            "status file",
            vec![m.clone(), s.clone(), d.clone(), stray],
            "archive_invalid",
        ),
        ("odd directory", vec![m.clone(), odd_dir], "archive_invalid"),
        ("missing entry", vec![m.clone(), s.clone()], "entry_missing"),
        ("changed entry", vec![m.clone(), s.clone(), changed], "entry_digest"),
        ("short entry", vec![m.clone(), s.clone(), short], "entry_size"),
        (
            "manifest not first",
            vec![s.clone(), m.clone(), d.clone()],
            "archive_invalid",
        ),
        ("empty", vec![], "archive_invalid"),
    ];
    for (what, entries, want) in cases {
        let err = import(g.storage.as_ref(), raw_tar(&entries).as_slice(), &trust, None).unwrap_err();
        assert_eq!(err.code(), want, "{what}: {err}");
        assert!(
            g.everything().iter().all(|p| p == ".tmp"),
            "{what}: {:?}",
            g.everything()
        );
    }
    let not_tar = import(g.storage.as_ref(), &b"garbage"[..], &trust, None).unwrap_err();
    assert_eq!(not_tar.code(), "archive_invalid");

    // Directories as parents of entries, in any order of entries: accepted.
    let fine = raw_tar(&[m.clone(), ok_dir, d.clone(), s.clone()]);
    assert_eq!(
        import(g.storage.as_ref(), fine.as_slice(), &trust, None)
            .unwrap()
            .to_string(),
        ID
    );
}

#[test]
fn long_entry_names_survive_export_and_import() {
    let f = fixture();
    let id: BackupId = ID.parse().unwrap();
    let long = format!("objects/{}", "n".repeat(200));
    let writer = BackupWriter::create(f.storage.clone(), id, info(), None).unwrap();
    writer.add_bytes(&long, b"x").unwrap();
    writer.finish(&f.key).unwrap();
    let tar = exported(&f, ID);
    let prepared = Export::prepare(f.storage.clone(), &id, &f.trust()).unwrap();
    assert_eq!(prepared.size().unwrap(), tar.len() as u64);
    let g = fixture();
    import(g.storage.as_ref(), tar.as_slice(), &f.trust(), None).unwrap();
    let backup = open_verified(g.storage.clone(), &id, &f.trust(), None).unwrap();
    assert_eq!(read_all(&backup, &long), b"x");
}
