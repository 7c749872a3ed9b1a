//! Any bytes through the push parser, in uneven chunks, trusting the format-1 fixture's
//! root: it must refuse or accept, never panic, loop or grow memory without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schemas::{BundleReader, Policy};

const ROOT: &[u8] = include_bytes!("../../../testdata/format-1/roots/1.root.json");

fuzz_target!(|data: &[u8]| {
    let Ok(root) = keys::Envelope::parse_canonical(ROOT) else { return };
    let Ok(trusted) = keys::TrustedRoots::from_envelopes(&[root]) else { return };
    let mut reader = BundleReader::new(trusted, Policy::integrity_only());
    let mut events = Vec::new();
    let split = data.first().map_or(1, |b| usize::from(*b) * 37 + 1);
    for chunk in data.chunks(split) {
        if reader.push(chunk, &mut events).is_err() {
            return;
        }
        events.clear();
    }
    let _ = reader.finish();
});
