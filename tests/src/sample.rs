//! The sample application's images and paths, shared by the tests, the demo and the
//! benchmarks.

use std::path::{Path, PathBuf};

use anyhow::Result;

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

/// Pushes every sample image of every version into `registry` with skopeo, under
/// `sealift-sample/<component>:<version>`. `work` holds the generated layouts.
pub fn seed_sample_images(registry: &Registry, work: &Path) -> Result<()> {
    for version in SAMPLE_VERSIONS {
        for component in SAMPLE_COMPONENTS {
            let layout = work.join(format!("{component}-{version}"));
            let built = sample_image(component, version).write_layout(&layout)?;
            push_with_skopeo(&built, registry, &format!("sealift-sample/{component}:{version}"))?;
        }
    }
    Ok(())
}
