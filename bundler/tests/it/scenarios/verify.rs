//! `verify`: the policy checks (`--product`, `--min-sequence`, `--at`) and its own inputs.
//! Tampered files are in `tamper.rs`, signatures in `sign.rs` and `roots.rs`.

use std::ffi::OsStr;

use crate::common::*;

#[test]
fn verify_refuses_another_product_and_a_higher_min_sequence() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let file = lab.sample_bundle("1.0.0", "sample");

    lab.verify(&file, &["--product", "sample-app"]).ok();
    lab.verify(&file, &["--product", "other"])
        .refused()
        .stderr_has(&format!("error: {} is refused\n", file.display()))
        .stderr_has("caused by: bundle is for product \"sample-app\", expected \"other\"");

    lab.verify(&file, &["--min-sequence", "1"]).ok();
    lab.verify(&file, &["--min-sequence", "2"])
        .refused()
        .stderr_has("caused by: bundle sequence 1 is below the minimum sequence 2");

    let json = lab
        .verify(&file, &["--min-sequence", "2", "--format", "json"])
        .refused();
    let first_line = json.stdout.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(first_line).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["code"], "below_min_sequence");
    assert_eq!(v["reason"], "bundle sequence 1 is below the minimum sequence 2");
}

#[test]
fn verify_needs_a_root_dir_and_refuses_one_without_roots() {
    let lab = Lab::offline();
    let file = lab.at("missing.sealift");
    bundler([OsStr::new("verify"), file.as_os_str()])
        .usage()
        .stderr_has("error: the following required arguments were not provided:\n  --root-dir <ROOT_DIR>");

    let empty = lab.at("empty-roots");
    fs_err::create_dir_all(&empty).unwrap();
    let r = verify(&file, &empty, &[]).refused();
    assert_eq!(
        r.error_line(),
        format!("error: cannot load roots from {}", empty.display())
    );
    r.stderr_has(&format!(
        "caused by: no root files (<N>.root.json) in {}",
        empty.display()
    ));
}
