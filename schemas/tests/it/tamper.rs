//! The tamper matrix: a good bundle, mutated every way the format must refuse, each
//! refusal asserted by its exact reason.

use keys::{Envelope, KeySet, RootDocument, SigningKey, TrustedRoots};
use rand::{Rng, SeedableRng};
use schemas::entry::{
    CHART_PATH, EntryPath, MIGRATIONS_PATH, OCI_INDEX_PATH, OCI_LAYOUT_PATH, RENDER_PATH, VARIABLES_PATH,
};
use schemas::head::Head;
use schemas::manifest::{ChartInfo, EntryRecord, ImageRecord, Manifest, SCHEMA_VERSION};
use schemas::release::{Migrations, NamespaceVariable, UpgradePolicy, Variables};
use schemas::tar_header::{self, BLOCK};
use schemas::writer::{Content, EntrySource, write_archive};
use schemas::{BundleReader, Checkpoint, Digest, Event, Policy, Refusal, Timestamp};

/// Keys and roots of a test vendor.
struct Vendor {
    root_key: SigningKey,
    release_key: SigningKey,
    roots: Vec<Envelope>,
}

impl Vendor {
    fn new(seed: u8) -> Self {
        let root_key = SigningKey::from_seed(&[seed; 32]);
        let release_key = SigningKey::from_seed(&[seed.wrapping_add(100); 32]);
        let doc = RootDocument {
            version: 1,
            root_keys: KeySet::new(1, vec![root_key.public_key()]).unwrap(),
            release_keys: KeySet::new(1, vec![release_key.public_key()]).unwrap(),
        };
        let mut env = doc.to_envelope();
        env.sign(&root_key).unwrap();
        Self {
            root_key,
            release_key,
            roots: vec![env],
        }
    }

    fn trusted(&self) -> TrustedRoots {
        TrustedRoots::from_envelopes(&self.roots[..1]).unwrap()
    }
}

/// The parts of a good bundle, kept so tests can rebuild variants.
struct Parts {
    manifest: Manifest,
    sources: Vec<EntrySource>,
}

fn entry(path: &str, bytes: Vec<u8>) -> (EntryRecord, EntrySource) {
    let p: EntryPath = path.parse().unwrap();
    (
        EntryRecord {
            path: p.clone(),
            size: bytes.len() as u64,
            digest: Digest::of(&bytes),
        },
        EntrySource {
            path: p,
            size: bytes.len() as u64,
            content: Content::Bytes(bytes),
        },
    )
}

fn parts() -> Parts {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let layer: Vec<u8> = (0..3000).map(|_| rng.r#gen()).collect();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let image_manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        Digest::of(&config),
        config.len(),
        Digest::of(&layer),
        layer.len()
    )
    .into_bytes();
    let image = ImageRecord {
        name: "quay.io/acme/app:1.0.0".parse().unwrap(),
        target: "acme/app".parse().unwrap(),
        tags: vec!["1.0.0".into()],
        digest: Digest::of(&image_manifest),
        source_digest: None,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: image_manifest.len() as u64,
        platforms: vec![],
        total_size: (image_manifest.len() + config.len() + layer.len()) as u64,
        blobs: vec![Digest::of(&image_manifest), Digest::of(&config), Digest::of(&layer)],
    };
    let variables = Variables {
        release_name: "acme".into(),
        namespace: NamespaceVariable {
            default: "acme".into(),
            slots: vec![],
        },
        variables: vec![],
    };
    let migrations = Migrations {
        steps: vec![],
        upgrade_policy: UpgradePolicy::default(),
        waves: vec![],
    };
    let mut pairs = vec![
        entry(CHART_PATH, b"chart bytes".to_vec()),
        entry(
            RENDER_PATH,
            b"---\n# Source: acme/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\n".to_vec(),
        ),
        entry(VARIABLES_PATH, serde_json::to_vec(&variables).unwrap()),
        entry(MIGRATIONS_PATH, serde_json::to_vec(&migrations).unwrap()),
        entry(OCI_LAYOUT_PATH, schemas::oci::layout_file()),
        entry(OCI_INDEX_PATH, schemas::oci::index_file(std::slice::from_ref(&image))),
    ];
    for blob in [image_manifest, config, layer] {
        let d = Digest::of(&blob);
        let p = EntryPath::blob(&d);
        pairs.push((
            EntryRecord {
                path: p.clone(),
                size: blob.len() as u64,
                digest: d,
            },
            EntrySource {
                path: p,
                size: blob.len() as u64,
                content: Content::Bytes(blob),
            },
        ));
    }
    let (entries, sources): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        product: "acme".parse().unwrap(),
        version: semver::Version::new(1, 0, 0),
        sequence: 5,
        min_sequence: 0,
        created: Timestamp::from_unix(1_700_000_000).unwrap(),
        expires: Timestamp::from_unix(1_900_000_000).unwrap(),
        chart: ChartInfo {
            name: "acme".into(),
            version: "0.1.0".into(),
            app_version: None,
            release_name: "acme".into(),
            namespace: "acme".into(),
            kube_version: "v1.33.0".into(),
            api_versions: vec![],
            helm_version: "test".into(),
        },
        entries,
        images: vec![image],
        image_locations: vec![],
    };
    Parts { manifest, sources }
}

fn head_for(vendor: &Vendor, manifest: &Manifest, signers: &[&SigningKey]) -> Head {
    let mut release = Envelope::new(keys::MANIFEST_PAYLOAD_TYPE, manifest.to_payload());
    for k in signers {
        release.sign(k).unwrap();
    }
    Head {
        roots: vendor.roots.clone(),
        release,
    }
}

fn archive(head: &Head, sources: &[EntrySource]) -> Vec<u8> {
    let mut out = Vec::new();
    write_archive(&mut out, &head.to_entry(), sources, |_| {}).unwrap();
    out
}

fn good() -> (Vendor, Vec<u8>) {
    let vendor = Vendor::new(1);
    let p = parts();
    let head = head_for(&vendor, &p.manifest, &[&vendor.release_key]);
    let bytes = archive(&head, &p.sources);
    (vendor, bytes)
}

fn policy() -> Policy {
    Policy::import(Timestamp::from_unix(1_800_000_000).unwrap())
}

/// Feeds `bytes` in chunks of `chunk` and reports the refusal, or Ok with the events.
fn read(vendor: &Vendor, bytes: &[u8], chunk: usize) -> Result<Vec<Event>, Refusal> {
    let mut reader = BundleReader::new(vendor.trusted(), policy());
    let mut events = Vec::new();
    for c in bytes.chunks(chunk.max(1)) {
        reader.push(c, &mut events)?;
    }
    reader.finish()?;
    Ok(events)
}

fn refusal(vendor: &Vendor, bytes: &[u8]) -> Refusal {
    read(vendor, bytes, 4096).expect_err("tampered bundle accepted")
}

/// Offsets of each entry's header in a good archive.
fn header_offsets(bytes: &[u8]) -> Vec<(usize, String, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + BLOCK <= bytes.len() {
        let h: &[u8; BLOCK] = bytes[at..at + BLOCK].try_into().unwrap();
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let p = tar_header::parse(h);
        let size = p.size.unwrap();
        out.push((at, String::from_utf8(p.name).unwrap(), size));
        at += BLOCK + size as usize + tar_header::padding(size) as usize;
    }
    out
}

fn set_header(bytes: &mut [u8], at: usize, name: &str, typeflag: u8, size: u64) {
    let mut h = tar_header::encode(name, size);
    h[156] = typeflag;
    // Recompute the checksum so only the intended field differs from a real tar's view.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    bytes[at..at + BLOCK].copy_from_slice(&h);
}

#[test]
fn good_bundle_verifies_in_any_chunking() {
    let (vendor, bytes) = good();
    for chunk in [1, 7, 511, 512, 513, 4096, bytes.len()] {
        let events = read(&vendor, &bytes, chunk).unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
        assert!(matches!(events.first(), Some(Event::HeadVerified(_))));
        assert!(matches!(events.last(), Some(Event::Finished)));
        let verified = events
            .iter()
            .filter(|e| matches!(e, Event::EntryVerified { .. }))
            .count();
        assert_eq!(verified, 9, "chunk {chunk}");
    }
}

#[test]
fn system_tar_lists_the_bundle() {
    let (_, bytes) = good();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.sealift");
    std::fs::write(&file, &bytes).unwrap();
    let out = std::process::Command::new("tar").arg("tf").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(
        &names[..7],
        &[
            "sealift/head.json",
            CHART_PATH,
            RENDER_PATH,
            VARIABLES_PATH,
            MIGRATIONS_PATH,
            OCI_LAYOUT_PATH,
            OCI_INDEX_PATH
        ]
    );
    assert_eq!(names.len(), 10);
}

#[test]
fn every_header_byte_of_the_first_entries_is_refused_with_a_header_reason() {
    let (vendor, bytes) = good();
    let headers = header_offsets(&bytes);
    for (at, name, _) in headers.iter().take(4) {
        for i in 0..BLOCK {
            let mut m = bytes.clone();
            m[at + i] ^= 0x20;
            let r = refusal(&vendor, &m);
            let ok = match &r {
                Refusal::NonCanonicalHeader { path, .. } | Refusal::HeaderChecksum { path, .. } => path == name,
                Refusal::UnexpectedEntry { found, .. } | Refusal::UnsafePath { path: found, .. } => {
                    i < 100 && found != name
                }
                Refusal::NotRegularFile { .. } => i == 156,
                Refusal::EntrySizeMismatch { path, .. } => (124..136).contains(&i) && path == name,
                // The head's own size field: its checksum no longer matches, or the head is cut.
                Refusal::HeadPadding { .. } | Refusal::HeadMalformed { .. } | Refusal::HeadTooLarge { .. } => {
                    (124..136).contains(&i) && name == "sealift/head.json"
                }
                _ => false,
            };
            assert!(ok, "header of {name}, byte {i}: unexpected reason {r:?}");
        }
    }
}

#[test]
fn random_byte_flips_are_all_refused_with_a_reason_for_where_they_are() {
    let (vendor, bytes) = good();
    let headers = header_offsets(&bytes);
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    for _ in 0..2000 {
        let at = rng.gen_range(0..bytes.len());
        let mut m = bytes.clone();
        m[at] ^= rng.gen_range(1..=255u8);
        let r = refusal(&vendor, &m);
        // Which region the byte is in decides which reasons are specific enough.
        let region = headers
            .iter()
            .find(|(h, _, size)| at >= *h && at < h + BLOCK + *size as usize + tar_header::padding(*size) as usize);
        let ok = match region {
            Some((h, name, size)) if at < h + BLOCK => !matches!(r, Refusal::DigestMismatch { .. }) || name.is_empty(),
            Some((h, name, size)) if at < h + BLOCK + *size as usize => {
                if name == "sealift/head.json" {
                    matches!(
                        r,
                        Refusal::HeadMalformed { .. }
                            | Refusal::HeadNotCanonical { .. }
                            | Refusal::HeadPadding { .. }
                            | Refusal::Envelope { .. }
                            | Refusal::RootChain { .. }
                            | Refusal::ReleaseSignatures { .. }
                    )
                } else {
                    matches!(&r, Refusal::DigestMismatch { path, .. } if path == name)
                }
            }
            Some((_, name, _)) => matches!(&r, Refusal::NonZeroPadding { path, .. } if path == name),
            None => matches!(r, Refusal::EndBlock { .. }),
        };
        assert!(ok, "byte {at} in {:?}: reason {r:?}", region.map(|r| &r.1));
    }
}

#[test]
fn truncation_anywhere_is_refused() {
    let (vendor, bytes) = good();
    for cut in (0..bytes.len()).step_by(97).chain([bytes.len() - 1, bytes.len() - 512]) {
        match read(&vendor, &bytes[..cut], 1000) {
            Err(Refusal::Truncated { offset, .. }) => assert_eq!(offset, cut as u64),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn appended_data_is_refused() {
    let (vendor, mut bytes) = good();
    let len = bytes.len();
    bytes.push(0);
    assert!(matches!(refusal(&vendor, &bytes), Refusal::TrailingData { offset } if offset == len as u64));
}

#[test]
fn unsigned_duplicate_unknown_and_under_threshold_signatures_are_refused() {
    let vendor = Vendor::new(1);
    let p = parts();
    // Unsigned.
    let head = head_for(&vendor, &p.manifest, &[]);
    let r = refusal(&vendor, &archive(&head, &p.sources));
    assert!(
        matches!(
            r,
            Refusal::ReleaseSignatures {
                source: keys::TrustError::ThresholdNotMet { .. }
            }
        ),
        "{r:?}"
    );
    // Unknown key.
    let stranger = SigningKey::from_seed(&[42; 32]);
    let head = head_for(&vendor, &p.manifest, &[&stranger]);
    let r = refusal(&vendor, &archive(&head, &p.sources));
    assert!(
        matches!(
            r,
            Refusal::ReleaseSignatures {
                source: keys::TrustError::UnknownKey { .. }
            }
        ),
        "{r:?}"
    );
    // A valid signature plus one from an unknown key: every signature counts.
    let head = head_for(&vendor, &p.manifest, &[&vendor.release_key, &stranger]);
    let r = refusal(&vendor, &archive(&head, &p.sources));
    assert!(
        matches!(
            r,
            Refusal::ReleaseSignatures {
                source: keys::TrustError::UnknownKey { .. }
            }
        ),
        "{r:?}"
    );
    // Signed by the root key, which is not a release key.
    let head = head_for(&vendor, &p.manifest, &[&vendor.root_key]);
    let r = refusal(&vendor, &archive(&head, &p.sources));
    assert!(
        matches!(
            r,
            Refusal::ReleaseSignatures {
                source: keys::TrustError::UnknownKey { .. }
            }
        ),
        "{r:?}"
    );
    // Duplicated signature: the envelope's canonical form forbids it.
    let mut head = head_for(&vendor, &p.manifest, &[&vendor.release_key]);
    let sig = head.release.signatures[0].clone();
    head.release.signatures.push(sig);
    let r = refusal(&vendor, &archive(&head, &p.sources));
    assert!(matches!(r, Refusal::Envelope { .. }), "{r:?}");
}

#[test]
fn threshold_counts_distinct_keys() {
    let root_key = SigningKey::from_seed(&[1; 32]);
    let (k1, k2) = (SigningKey::from_seed(&[2; 32]), SigningKey::from_seed(&[3; 32]));
    let doc = RootDocument {
        version: 1,
        root_keys: KeySet::new(1, vec![root_key.public_key()]).unwrap(),
        release_keys: KeySet::new(2, vec![k1.public_key(), k2.public_key()]).unwrap(),
    };
    let mut env = doc.to_envelope();
    env.sign(&root_key).unwrap();
    let vendor = Vendor {
        root_key,
        release_key: k1,
        roots: vec![env],
    };
    let p = parts();
    let one = head_for(&vendor, &p.manifest, &[&vendor.release_key]);
    let r = refusal(&vendor, &archive(&one, &p.sources));
    assert!(
        matches!(
            r,
            Refusal::ReleaseSignatures {
                source: keys::TrustError::ThresholdNotMet { have: 1, need: 2, .. }
            }
        ),
        "{r:?}"
    );
    let both = head_for(&vendor, &p.manifest, &[&vendor.release_key, &k2]);
    read(&vendor, &archive(&both, &p.sources), 4096).expect("two of two verifies");
}

#[test]
fn forged_root_rotation_is_refused() {
    let vendor = Vendor::new(1);
    let attacker = SigningKey::from_seed(&[66; 32]);
    // Root 2 naming the attacker's keys, signed only by the attacker.
    let doc = RootDocument {
        version: 2,
        root_keys: KeySet::new(1, vec![attacker.public_key()]).unwrap(),
        release_keys: KeySet::new(1, vec![attacker.public_key()]).unwrap(),
    };
    let mut env2 = doc.to_envelope();
    env2.sign(&attacker).unwrap();
    let forged = Vendor {
        root_key: attacker.clone(),
        release_key: attacker.clone(),
        roots: vec![vendor.roots[0].clone(), env2],
    };
    let p = parts();
    let head = head_for(&forged, &p.manifest, &[&attacker]);
    let r = refusal(&vendor, &archive(&head, &p.sources));
    assert!(matches!(r, Refusal::RootChain { .. }), "{r:?}");
}

#[test]
fn wrong_payload_type_is_refused() {
    let vendor = Vendor::new(1);
    let p = parts();
    // A root envelope presented as the release.
    let head = Head {
        roots: vendor.roots.clone(),
        release: vendor.roots[0].clone(),
    };
    let r = refusal(&vendor, &archive(&head, &p.sources));
    assert!(
        matches!(
            r,
            Refusal::ReleaseSignatures {
                source: keys::TrustError::WrongPayloadType { .. }
            }
        ),
        "{r:?}"
    );
}

#[test]
fn unsafe_link_duplicate_reordered_and_missized_entries_are_refused() {
    let (vendor, bytes) = good();
    let headers = header_offsets(&bytes);
    let (chart_at, _, chart_size) = headers[1].clone();

    let mut m = bytes.clone();
    set_header(&mut m, chart_at, "../evil", b'0', chart_size);
    assert!(matches!(refusal(&vendor, &m), Refusal::UnsafePath { path, .. } if path == "../evil"));

    let mut m = bytes.clone();
    set_header(&mut m, chart_at, "/etc/passwd", b'0', chart_size);
    assert!(matches!(refusal(&vendor, &m), Refusal::UnsafePath { .. }));

    for (flag, what) in [
        (b'2', "symlink"),
        (b'1', "hard link"),
        (b'3', "character device"),
        (b'5', "directory"),
    ] {
        let mut m = bytes.clone();
        set_header(&mut m, chart_at, CHART_PATH, flag, chart_size);
        let r = refusal(&vendor, &m);
        assert!(
            matches!(r, Refusal::NotRegularFile { typeflag, .. } if typeflag == char::from(flag)),
            "{what}: {r:?}"
        );
    }

    // Oversize and undersize: the header disagrees with the manifest.
    for size in [chart_size + 1, chart_size - 1] {
        let mut m = bytes.clone();
        set_header(&mut m, chart_at, CHART_PATH, b'0', size);
        let r = refusal(&vendor, &m);
        assert!(
            matches!(r, Refusal::EntrySizeMismatch { declared, expected, .. } if declared == size && expected == chart_size),
            "{r:?}"
        );
    }

    // Duplicate: the chart entry twice.
    let (render_at, _, _) = headers[2].clone();
    let mut m = bytes[..render_at].to_vec();
    m.extend_from_slice(&bytes[chart_at..render_at]);
    m.extend_from_slice(&bytes[render_at..]);
    let r = refusal(&vendor, &m);
    assert!(
        matches!(&r, Refusal::UnexpectedEntry { expected, found, .. } if expected == RENDER_PATH && found == CHART_PATH),
        "{r:?}"
    );

    // Reordered: the last two blobs swapped.
    let (b2, _, _) = headers[8].clone();
    let (b3, _, _) = headers[9].clone();
    let end = bytes.len() - 2 * BLOCK;
    let mut m = bytes[..b2].to_vec();
    m.extend_from_slice(&bytes[b3..end]);
    m.extend_from_slice(&bytes[b2..b3]);
    m.extend_from_slice(&bytes[end..]);
    assert!(matches!(refusal(&vendor, &m), Refusal::UnexpectedEntry { .. }));
}

#[test]
fn manifest_policy_checks_name_the_reason() {
    let (vendor, bytes) = good();
    let check = |policy: Policy| {
        let mut reader = BundleReader::new(vendor.trusted(), policy);
        let mut events = Vec::new();
        reader.push(&bytes, &mut events).expect_err("refused")
    };
    let mut p = policy();
    p.product = Some("other".parse().unwrap());
    assert!(matches!(check(p), Refusal::WrongProduct { .. }));
    let mut p = policy();
    p.min_sequence = 6;
    assert!(matches!(
        check(p),
        Refusal::BelowMinSequence {
            sequence: 5,
            min_sequence: 6
        }
    ));
    let p = Policy::import(Timestamp::from_unix(1_900_000_000).unwrap());
    assert!(matches!(check(p), Refusal::Expired { .. }));
    let p = Policy::import(Timestamp::from_unix(1_600_000_000).unwrap());
    assert!(matches!(check(p), Refusal::CreatedInFuture { .. }));
    let mut p = policy();
    p.clock_floor = Some(Timestamp::from_unix(1_850_000_000).unwrap());
    assert!(matches!(check(p), Refusal::ClockBehindFloor { .. }));
    // Integrity only: an expired bundle still reads (rollback and restore).
    let mut reader = BundleReader::new(vendor.trusted(), Policy::integrity_only());
    let mut events = Vec::new();
    reader.push(&bytes, &mut events).unwrap();
    reader.finish().unwrap();
}

#[test]
fn parsing_resumes_from_a_checkpoint() {
    let (vendor, bytes) = good();
    let mut reader = BundleReader::new(vendor.trusted(), policy());
    let mut events = Vec::new();
    let headers = header_offsets(&bytes);
    // Feed up to the middle of the layer blob, then "crash".
    let stop = headers[9].0 + 700;
    reader.push(&bytes[..stop], &mut events).unwrap();
    let checkpoint = reader.checkpoint().unwrap();
    assert_eq!(
        checkpoint,
        Checkpoint {
            offset: headers[9].0 as u64,
            next_entry: 8
        }
    );
    let head_entry = reader.head().unwrap().entry().to_vec();
    let mut resumed = BundleReader::resume(vendor.trusted(), policy(), &head_entry, checkpoint).unwrap();
    resumed.push(&bytes[checkpoint.offset as usize..], &mut events).unwrap();
    resumed.finish().unwrap();
    // A tampered resume is still caught.
    let mut m = bytes.clone();
    m[headers[9].0 + BLOCK + 5] ^= 1;
    let mut resumed = BundleReader::resume(vendor.trusted(), policy(), &head_entry, checkpoint).unwrap();
    let r = resumed.push(&m[checkpoint.offset as usize..], &mut events).unwrap_err();
    assert!(matches!(r, Refusal::DigestMismatch { .. }));
}

#[test]
fn co_signing_keeps_identity_and_fits_the_reserved_room() {
    let vendor = Vendor::new(1);
    let p = parts();
    let head = head_for(&vendor, &p.manifest, &[&vendor.release_key]);
    let entry = head.to_entry();
    let mut again = Head::from_entry(&entry).unwrap();
    let other = SigningKey::from_seed(&[9; 32]);
    again.release.sign(&other).unwrap();
    let rewritten = again.to_entry_of_size(entry.len()).expect("room reserved");
    assert_eq!(rewritten.len(), entry.len());
    assert_eq!(Digest::of(&again.release.payload), Digest::of(&head.release.payload));
}
