//! The inputs a build requires: `--sequence`, `SOURCE_DATE_EPOCH` (not in the future),
//! a SemVer `--version`; and `expires = created + --valid-for`.

use tests::sample::sample_spec;

use crate::common::*;

#[test]
fn build_without_sequence_is_refused_with_a_hint() {
    let lab = Lab::offline();
    let out = lab.at("x.sealift");
    let r = lab
        .build(sample_spec("1.0.0"), "1.0.0", &out)
        .sequence(None)
        .run()
        .refused();
    assert_eq!(r.error_line(), "error: --sequence is required");
    assert_eq!(
        r.hints(),
        ["hint: pass a build number that grows with every release, e.g. --sequence $GITHUB_RUN_NUMBER"]
    );
    assert!(!out.exists());
}

#[test]
fn build_without_source_date_epoch_is_refused_with_a_hint() {
    let lab = Lab::offline();
    let r = lab
        .build(sample_spec("1.0.0"), "1.0.0", lab.at("x.sealift"))
        .epoch(None)
        .run()
        .refused();
    assert_eq!(
        r.error_line(),
        "error: SOURCE_DATE_EPOCH is not set; the creation time must come from the source so builds are reproducible"
    );
    assert_eq!(
        r.hints(),
        ["hint: SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) sealift-bundler build …"]
    );
}

#[test]
fn source_date_epoch_twenty_minutes_ahead_is_refused() {
    let lab = Lab::offline();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ahead = now + 20 * 60;
    let r = lab
        .build(sample_spec("1.0.0"), "1.0.0", lab.at("x.sealift"))
        .epoch(Some(ahead.to_string()))
        .run()
        .refused();
    assert!(
        r.error_line().starts_with(&format!(
            "error: SOURCE_DATE_EPOCH {} is more than 10 minutes ahead of this machine's clock (",
            rfc3339(ahead)
        )),
        "{}",
        r.stderr
    );
    assert_eq!(r.hints(), ["hint: check the build machine's clock"]);
}

#[test]
fn non_numeric_source_date_epoch_is_refused() {
    let lab = Lab::offline();
    lab.build(sample_spec("1.0.0"), "1.0.0", lab.at("x.sealift"))
        .epoch(Some("yesterday".to_owned()))
        .run()
        .refused()
        .stderr_has("error: SOURCE_DATE_EPOCH=\"yesterday\" is not a number of seconds");
}

#[test]
fn version_that_is_not_semver_is_refused_with_a_hint() {
    let lab = Lab::offline();
    let r = lab
        .build(sample_spec("1.0.0"), "2.4", lab.at("x.sealift"))
        .run()
        .refused();
    assert_eq!(r.error_line(), "error: --version \"2.4\" is not SemVer 2.0");
    assert_eq!(r.hints(), ["hint: use MAJOR.MINOR.PATCH, e.g. 2.4.0 or 2.4.0-rc.1"]);

    let r = lab
        .build(sample_spec("1.0.0"), "1.0.0", lab.at("x.sealift"))
        .version(None)
        .run()
        .refused();
    assert_eq!(r.error_line(), "error: --version is required");
    assert_eq!(r.hints(), ["hint: pass the product version, e.g. --version 2.4.0"]);
}

#[test]
fn malformed_sequence_is_a_usage_error() {
    let lab = Lab::offline();
    lab.build(sample_spec("1.0.0"), "1.0.0", lab.at("x.sealift"))
        .sequence(Some("forty-two"))
        .run()
        .usage()
        .stderr_has("error: invalid value 'forty-two' for '--sequence <SEQUENCE>'");
}

#[test]
fn expiry_is_creation_time_plus_valid_for() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let out = lab.at("x.sealift");
    lab.build(sample_spec("1.0.0"), "1.0.0", &out)
        .args(["--valid-for", "30d", "--sequence", "7", "--min-sequence", "5"])
        .sequence(None)
        .run()
        .ok();
    let v = verify_json(&out, &lab.vendor.roots);
    assert_eq!(v["created"], rfc3339(lab.epoch));
    assert_eq!(v["expires"], rfc3339(lab.epoch + 30 * 86_400));
    assert_eq!(v["sequence"], 7);
    assert_eq!(v["minSequence"], 5);
    // Checked as of a time after expiry, the bundle is refused as expired.
    let after = rfc3339(lab.epoch + 31 * 86_400);
    lab.verify(&out, &["--at", &after]).refused().stderr_has(&format!(
        "caused by: bundle expired at {} (clock: {after})",
        rfc3339(lab.epoch + 30 * 86_400)
    ));
}
