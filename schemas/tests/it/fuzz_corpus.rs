//! Replays the fuzz corpus (`schemas/fuzz/corpus/reader/`, seeds plus whatever `just fuzz`
//! found and was committed) as a normal test: every input is accepted or refused, never a panic.

use std::path::Path;

use schemas::{BundleReader, Policy};

fn trusted() -> keys::TrustedRoots {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/format-1/roots/1.root.json");
    let env = keys::Envelope::parse_canonical(&std::fs::read(root).unwrap()).unwrap();
    keys::TrustedRoots::from_envelopes(&[env]).unwrap()
}

#[test]
fn fuzz_corpus_replays_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/reader");
    let mut inputs = 0;
    let mut accepted = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let mut reader = BundleReader::new(trusted(), Policy::integrity_only());
        let mut events = Vec::new();
        let split = data.first().map_or(1, |b| usize::from(*b) * 37 + 1);
        let ok = data.chunks(split).all(|c| reader.push(c, &mut events).is_ok()) && reader.finish().is_ok();
        inputs += 1;
        accepted += usize::from(ok);
    }
    assert!(inputs >= 1, "the corpus is empty");
    // The seed is the committed format-1 bundle, which must verify.
    assert!(accepted >= 1, "not even the format-1 seed verified");
}
