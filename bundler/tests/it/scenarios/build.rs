//! Building the sample app from a registry (anonymous, htpasswd, TLS) and verifying it.

use tests::oci_fixtures::skopeo_inspect_raw;

use crate::common::*;

#[test]
fn probe() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let file = lab.sample_bundle("1.0.0", "a");
    let r = lab.verify(&file, &["--format", "json"]);
    println!("{r:#?}");
    let _ = skopeo_inspect_raw;
    panic!("probe");
}
