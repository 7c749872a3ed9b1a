//! The sample application's images and paths, shared by the tests, the demo and the
//! benchmarks.

use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::{Digest as _, Sha256};

use crate::oci_fixtures::{SyntheticImage, push_with_skopeo};
use crate::registry::Registry;

/// Versions of the sample app in `testdata/sample-app/`.
pub const SAMPLE_VERSIONS: [&str; 3] = ["1.0.0", "2.0.0", "3.0.0"];
/// Components, each an image `quay.io/sealift-sample/<name>:<version>`.
pub const SAMPLE_COMPONENTS: [&str; 3] = ["web", "api", "db"];
/// The host the sample chart names its images on; tests map it to the test registry.
pub const SAMPLE_IMAGE_HOST: &str = "quay.io";

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `helm template` stand-in over the real Helm engine.
pub fn helm_stand_in() -> PathBuf {
    repo_root().join("tests/helm/helm")
}

/// `testdata/sample-app/<version>/sealift.yaml`.
pub fn sample_spec(version: &str) -> PathBuf {
    repo_root()
        .join("testdata/sample-app")
        .join(version)
        .join("sealift.yaml")
}

/// What the sample database's backup step does in the API simulator (which runs a Job's
/// `sim.sealift.dev/exec` command instead of its image): it sends a dump to the agent the
/// way the real `sample-db dump` does, `PUT $SEALIFT_BACKUP_URL` with the step token.
pub const SIM_DUMP: &str = r#"printf "sample-db dump for backup %s\n" "$SEALIFT_BACKUP" | curl -sSf -X PUT --data-binary @- -H "Authorization: Bearer $SEALIFT_STEP_TOKEN" "$SEALIFT_BACKUP_URL""#;
/// What its restore step does there: reads the dump back and checks it.
pub const SIM_LOAD: &str =
    r#"curl -sSf -H "Authorization: Bearer $SEALIFT_STEP_TOKEN" "$SEALIFT_BACKUP_URL" | grep -q "sample-db dump""#;

/// Gives the sample app's backup and restore steps in `dir/sealift.yaml` their simulator
/// commands ([`SIM_DUMP`], [`SIM_LOAD`]); such a spec builds with
/// `--allow-simulator-annotations` only.
pub fn simulate_data_steps(dir: &Path) -> Result<()> {
    let path = dir.join("sealift.yaml");
    let text = fs_err::read_to_string(&path)?;
    let dump_at = "        sample.sealift.dev/step: backup\n";
    let load_at = "    command: [\"/usr/local/bin/sample-db\", \"load\", \"--in\", \"/backup/db.dump\"]\n    timeoutSeconds: 600\n";
    anyhow::ensure!(
        text.matches(dump_at).count() == 1 && text.matches(load_at).count() == 1,
        "{} does not have the sample app's backup and restore steps",
        path.display()
    );
    let text = text
        .replace(
            dump_at,
            &format!("{dump_at}        sim.sealift.dev/exec: '{SIM_DUMP}'\n"),
        )
        .replace(
            load_at,
            &format!("{load_at}    podTemplate:\n      annotations:\n        sim.sealift.dev/exec: '{SIM_LOAD}'\n"),
        );
    fs_err::write(&path, text)?;
    Ok(())
}

/// A copy of `testdata/sample-app/<version>` in `into` whose backup and restore steps run in
/// the simulator; returns its build spec.
pub fn simulated_spec(version: &str, into: &Path) -> Result<PathBuf> {
    let from = sample_spec(version).parent().map(Path::to_path_buf).unwrap_or_default();
    copy_dir(&from, into)?;
    simulate_data_steps(into)?;
    Ok(into.join("sealift.yaml"))
}

/// Copies a directory tree (directories and regular files) into `to`, creating it.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs_err::create_dir_all(to)?;
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs_err::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The synthetic image of one component and version: two small layers; `web` is
/// multi-arch (linux/amd64 + linux/arm64) so indexes are exercised.
pub fn sample_image(component: &str, version: &str) -> SyntheticImage {
    let seed = component
        .bytes()
        .chain(version.bytes())
        .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let image = SyntheticImage::new(&format!("sealift-sample/{component}"), version, &[4096, 20_000], seed);
    if component == "web" {
        image.with_platforms(&["linux/amd64", "linux/arm64"])
    } else {
        image
    }
}

/// Pushes every sample image of every version into `registry` (freshly started, empty) under
/// `sealift-sample/<component>:<version>`. `work` holds the generated layouts.
///
/// The first call on a machine pushes them with skopeo (about 2 s for the nine images) and
/// keeps a copy of the registry's storage, named by the images' digests; later calls copy
/// that storage in. Most agent tests start this way.
pub fn seed_sample_images(registry: &Registry, work: &Path) -> Result<()> {
    let mut built = Vec::new();
    let mut key = Sha256::new();
    for version in SAMPLE_VERSIONS {
        for component in SAMPLE_COMPONENTS {
            let layout = work.join(format!("{component}-{version}"));
            let image = sample_image(component, version).write_layout(&layout)?;
            key.update(format!("{component}:{version}@{}\n", image.digest).as_bytes());
            built.push((component, version, image));
        }
    }
    let key = hex::encode(&key.finalize()[..8]);
    let seeded = std::env::temp_dir().join(format!("sealift-seeded-registry-{key}"));
    if seeded.is_dir() {
        return copy_dir(&seeded, &registry.storage_dir());
    }
    for (component, version, image) in &built {
        push_with_skopeo(image, registry, &format!("sealift-sample/{component}:{version}"))?;
    }
    // Kept whole or not at all: copied aside, then renamed into place (a concurrent test may
    // win the rename; its copy is as good).
    let aside = tempfile::Builder::new()
        .prefix("sealift-seeding-")
        .tempdir_in(std::env::temp_dir())?;
    copy_dir(&registry.storage_dir(), aside.path())?;
    let aside = aside.keep();
    if fs_err::rename(&aside, &seeded).is_err() {
        fs_err::remove_dir_all(&aside)?;
    }
    Ok(())
}
