//! Images for pull tests, in the `tests` crate's real `distribution` registry on loopback,
//! pushed with skopeo.

use tests::oci_fixtures::{SyntheticImage, push_with_skopeo};
pub use tests::registry::{Registry, RegistryAuth, RegistryOptions};

/// An anonymous plain-HTTP registry.
pub fn start_registry() -> Registry {
    start_registry_with(RegistryOptions::default())
}

pub fn start_registry_with(options: RegistryOptions) -> Registry {
    Registry::start(options).expect("docker-registry (Debian package docker-registry) starts")
}

/// Pushes `image` as `repo:tag` (its own repository and tag) and returns its reference on
/// `registry`.
pub fn push(registry: &Registry, image: &SyntheticImage) -> String {
    let layout = registry
        .dir()
        .join("layouts")
        .join(format!("{}-{}", image.repo.replace('/', "_"), image.tag));
    let built = image.write_layout(&layout).expect("write the image layout");
    let reference = format!("{}:{}", image.repo, image.tag);
    push_with_skopeo(&built, registry, &reference).unwrap_or_else(|e| panic!("push {reference}: {e:#}"));
    format!("{}/{reference}", registry.addr())
}

/// Pushes a small one-layer `linux/amd64` image `repo:tag` and returns its reference.
pub fn push_image(registry: &Registry, repo: &str, tag: &str) -> String {
    let seed = repo
        .bytes()
        .chain(tag.bytes())
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    push(registry, &SyntheticImage::new(repo, tag, &[1024], seed))
}
