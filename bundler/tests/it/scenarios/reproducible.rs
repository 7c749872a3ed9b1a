//! Reproducibility: the same inputs give the same bytes whatever the checkout directory,
//! file mtimes, umask, parallelism and image source (registry or a skopeo-made OCI layout).

use std::path::Path;

use tests::oci_fixtures::{skopeo_copy_to_docker_archive, skopeo_copy_to_oci_layout, skopeo_inspect_raw};
use tests::sample::SAMPLE_COMPONENTS;

use crate::common::*;

/// Rewrites the copied spec so every image comes from `source(component)` (YAML lines
/// under the image's `name`); names stay as the chart uses them.
fn with_image_sources(spec: &Path, source: impl Fn(&str) -> String) {
    for component in SAMPLE_COMPONENTS {
        let name = format!("  - name: quay.io/sealift-sample/{component}:1.0.0\n");
        edit(spec, &name, &format!("{name}    source:\n{}", source(component)));
    }
}

#[test]
fn builds_in_other_directories_mtimes_umask_jobs_and_image_source_are_byte_identical() {
    let mut lab = Lab::with_versions(&["1.0.0"]);

    // First: the registry, old mtimes, umask 022, one download at a time.
    let first_dir = lab.at("ci-runner-1/checkout");
    let first_spec = copy_sample("1.0.0", &first_dir);
    set_mtimes(&first_dir, 1_000_000_000);
    let first = lab.at("first.sealift");
    lab.build(&first_spec, "1.0.0", &first)
        .args(["--jobs", "1"])
        .umask("022")
        .run()
        .ok();

    // Second: elsewhere, images from an OCI layout skopeo made, new mtimes, umask 077,
    // eight downloads at a time, and the registry gone.
    let second_dir = lab.at("elsewhere/deeper/src");
    let second_spec = copy_sample("1.0.0", &second_dir);
    let layout = second_dir.join("images");
    for component in SAMPLE_COMPONENTS {
        skopeo_copy_to_oci_layout(
            lab.registry(),
            &format!("sealift-sample/{component}:1.0.0"),
            &layout,
            &format!("{component}-1.0.0"),
        )
        .unwrap();
    }
    with_image_sources(&second_spec, |c| {
        format!("      ociLayout:\n        path: images\n        reference: {c}-1.0.0\n")
    });
    set_mtimes(&second_dir, 1_700_000_000);
    lab.registry.as_mut().unwrap().kill().unwrap();
    let second = lab.at("second.sealift");
    lab.build(&second_spec, "1.0.0", &second)
        .args(["--jobs", "8"])
        .umask("077")
        .run()
        .ok();

    let (a, b) = (fs_err::read(&first).unwrap(), fs_err::read(&second).unwrap());
    assert_eq!(a.len(), b.len());
    assert!(a == b, "the two bundles differ");
    tool("cmp", [&first, &second]);
    verify(&second, &lab.vendor.roots, &[]).ok();
}

#[test]
fn docker_archive_sources_build_and_verify() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let dir = lab.at("spec");
    let spec = copy_sample("1.0.0", &dir);
    fs_err::create_dir_all(dir.join("archives")).unwrap();
    for component in SAMPLE_COMPONENTS {
        skopeo_copy_to_docker_archive(
            lab.registry(),
            &format!("sealift-sample/{component}:1.0.0"),
            &dir.join(format!("archives/{component}.tar")),
            &format!("quay.io/sealift-sample/{component}:1.0.0"),
        )
        .unwrap();
    }
    with_image_sources(&spec, |c| {
        format!(
            "      dockerArchive:\n        path: archives/{c}.tar\n        reference: quay.io/sealift-sample/{c}:1.0.0\n"
        )
    });
    let out = lab.at("archive.sealift");
    lab.build(&spec, "1.0.0", &out).run().ok();

    let v = verify_json(&out, &lab.vendor.roots);
    let web = &v["images"][0];
    assert_eq!(web["name"], "quay.io/sealift-sample/web:1.0.0");
    assert_eq!(web["target"], "sealift-sample/web");
    // A docker archive holds one platform (linux/amd64) in docker's own manifest form, so
    // the digest is not the registry's index digest.
    assert_eq!(web["platforms"], serde_json::json!([]));
    let served = sha256(&skopeo_inspect_raw(lab.registry(), "sealift-sample/web:1.0.0").unwrap());
    assert_ne!(web["digest"], served);
    let inspect = bundler([
        std::ffi::OsStr::new("inspect"),
        out.as_os_str(),
        std::ffi::OsStr::new("--format"),
        std::ffi::OsStr::new("json"),
    ])
    .ok()
    .json();
    assert_eq!(
        inspect["images"][0]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}
