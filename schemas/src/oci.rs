//! The OCI image layout files a bundle carries, so `tar x` yields a layout skopeo reads.

use serde_json::json;

use crate::manifest::ImageRecord;

/// Annotation naming an image in an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The `oci-layout` marker file.
pub fn layout_file() -> Vec<u8> {
    br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()
}

/// The reference name under which an image is listed: the target path with its first tag,
/// or with its digest when it has no tag.
pub fn ref_name(image: &ImageRecord) -> String {
    match image.tags.first() {
        Some(tag) => format!("{}:{tag}", image.target),
        None => format!("{}@{}", image.target, image.digest),
    }
}

/// The `index.json` listing every image once, in manifest order.
pub fn index_file(images: &[ImageRecord]) -> Vec<u8> {
    let manifests: Vec<_> = images
        .iter()
        .map(|i| {
            json!({
                "mediaType": i.media_type,
                "digest": i.digest.to_string(),
                "size": i.size,
                "annotations": { REF_NAME_ANNOTATION: ref_name(i) },
            })
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let mut out = serde_json::to_vec(&index).unwrap_or_else(|_| unreachable!("index serializes"));
    out.push(b'\n');
    out
}
