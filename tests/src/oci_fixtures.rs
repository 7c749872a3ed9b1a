//! Synthetic container images written as OCI image layouts from a seed, and the `skopeo`
//! (the independent second client) operations that move them in and out of a [`Registry`].
//!
//! Layers are real tar streams holding one file of pseudo-random (incompressible) bytes,
//! generated and written in a stream, so large layers cost no memory.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail, ensure};
use schemas::Digest;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::registry::Registry;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How layers are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    /// `application/vnd.oci.image.layer.v1.tar`: the digest is the diff id.
    #[default]
    None,
    /// `…tar+gzip` (fastest level).
    Gzip,
}

/// An image to synthesize. Same fields, same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticImage {
    /// Repository the image is meant for (recorded in a config label).
    pub repo: String,
    /// The `org.opencontainers.image.ref.name` in the layout.
    pub tag: String,
    /// `os/arch[/variant]`; more than one makes an OCI index.
    pub platforms: Vec<String>,
    /// Payload bytes of each layer.
    pub layers: Vec<usize>,
    pub seed: u64,
    pub compression: LayerCompression,
}

impl SyntheticImage {
    /// A `linux/amd64` image with uncompressed layers.
    pub fn new(repo: &str, tag: &str, layers: &[usize], seed: u64) -> Self {
        Self {
            repo: repo.to_owned(),
            tag: tag.to_owned(),
            platforms: vec!["linux/amd64".to_owned()],
            layers: layers.to_vec(),
            seed,
            compression: LayerCompression::None,
        }
    }

    pub fn with_platforms(mut self, platforms: &[&str]) -> Self {
        self.platforms = platforms.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    pub fn with_compression(mut self, compression: LayerCompression) -> Self {
        self.compression = compression;
        self
    }

    /// Writes the image into the OCI layout `dir` (created, or added to when it exists),
    /// listed in `index.json` under `tag`.
    pub fn write_layout(&self, dir: &Path) -> Result<BuiltImage> {
        ensure!(!self.platforms.is_empty(), "an image needs at least one platform");
        let blobs = dir.join("blobs").join("sha256");
        fs_err::create_dir_all(&blobs)?;
        fs_err::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;

        let mut manifests = Vec::new();
        for (p, platform) in self.platforms.iter().enumerate() {
            let parts: Vec<&str> = platform.split('/').collect();
            let (os, arch, variant) = match parts.as_slice() {
                [os, arch] => (*os, *arch, None),
                [os, arch, v] => (*os, *arch, Some(*v)),
                _ => bail!("platform {platform:?} is not os/arch[/variant]"),
            };
            let mut layer_descs = Vec::new();
            let mut diff_ids = Vec::new();
            let mut layer_digests = Vec::new();
            for (l, &size) in self.layers.iter().enumerate() {
                let layer = write_layer(&blobs, self.seed, p as u64, l as u64, size, self.compression)?;
                let media_type = match self.compression {
                    LayerCompression::None => OCI_LAYER,
                    LayerCompression::Gzip => OCI_LAYER_GZIP,
                };
                layer_descs
                    .push(json!({ "mediaType": media_type, "digest": layer.digest.to_string(), "size": layer.size }));
                diff_ids.push(layer.diff_id);
                layer_digests.push(layer.digest);
            }
            let mut config = json!({
                "created": "1970-01-01T00:00:00Z",
                "architecture": arch,
                "os": os,
            });
            if let Some(v) = variant {
                config["variant"] = json!(v);
            }
            config["config"] = json!({
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                "Labels": { "dev.sealift.test.repo": self.repo, "dev.sealift.test.seed": self.seed.to_string() },
            });
            let diff_id_strings: Vec<String> = diff_ids.iter().map(Digest::to_string).collect();
            config["rootfs"] = json!({ "type": "layers", "diff_ids": diff_id_strings });
            let (config_digest, config_size) = put_blob(&blobs, &serde_json::to_vec(&config)?)?;
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": { "mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size },
                "layers": layer_descs,
            });
            let (digest, size) = put_blob(&blobs, &serde_json::to_vec(&manifest)?)?;
            manifests.push(BuiltManifest {
                platform: platform.clone(),
                os: os.to_owned(),
                architecture: arch.to_owned(),
                variant: variant.map(str::to_owned),
                digest,
                size,
                config: config_digest,
                layers: layer_digests,
                diff_ids,
            });
        }

        let (media_type, digest, size) = if manifests.len() == 1 {
            (OCI_MANIFEST, manifests[0].digest, manifests[0].size)
        } else {
            let entries: Vec<Value> = manifests
                .iter()
                .map(|m| {
                    let mut platform = json!({ "architecture": m.architecture, "os": m.os });
                    if let Some(v) = &m.variant {
                        platform["variant"] = json!(v);
                    }
                    json!({ "mediaType": OCI_MANIFEST, "digest": m.digest.to_string(), "size": m.size, "platform": platform })
                })
                .collect();
            let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries });
            let (d, s) = put_blob(&blobs, &serde_json::to_vec(&index)?)?;
            (OCI_INDEX, d, s)
        };

        // index.json: keep other refs, replace this one.
        let index_path = dir.join("index.json");
        let mut entries: Vec<Value> = if index_path.is_file() {
            let v: Value = serde_json::from_slice(&fs_err::read(&index_path)?)?;
            v.get("manifests")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        entries.retain(|e| {
            e.pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(Value::as_str)
                != Some(&self.tag)
        });
        entries.push(json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": size,
            "annotations": { REF_NAME: self.tag },
        }));
        fs_err::write(
            &index_path,
            serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": entries }))?,
        )?;

        Ok(BuiltImage {
            dir: dir.to_owned(),
            ref_name: self.tag.clone(),
            media_type: media_type.to_owned(),
            digest,
            size,
            manifests,
        })
    }
}

/// An image written into a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub dir: PathBuf,
    pub ref_name: String,
    /// Media type, digest and size of the top manifest (one platform) or index.
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The platform manifests, in index order.
    pub manifests: Vec<BuiltManifest>,
}

impl BuiltImage {
    /// Path of a blob in the layout.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(d.hex())
    }

    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX
    }
}

/// One platform manifest of a [`BuiltImage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltManifest {
    pub platform: String,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub digest: Digest,
    pub size: u64,
    pub config: Digest,
    pub layers: Vec<Digest>,
    /// Digests of the uncompressed layers (the config's `rootfs.diff_ids`).
    pub diff_ids: Vec<Digest>,
}

struct Layer {
    digest: Digest,
    size: u64,
    diff_id: Digest,
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
    len: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: sha2::Sha256::new(),
            len: 0,
        }
    }
    fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_bytes(self.hasher.finalize().into()), self.len)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SplitMix64: fast, deterministic forever, and incompressible for gzip or zstd.
struct Noise {
    state: u64,
    remaining: u64,
}

impl Noise {
    fn new(seed: u64, remaining: u64) -> Self {
        Self { state: seed, remaining }
    }
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.remaining) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn write_layer(
    blobs: &Path,
    seed: u64,
    platform: u64,
    index: u64,
    size: usize,
    compression: LayerCompression,
) -> Result<Layer> {
    let tmp = tempfile::NamedTempFile::new_in(blobs)?;
    let file = io::BufWriter::with_capacity(1 << 20, tmp);
    let mix = seed.wrapping_mul(0x100_0000_01B3) ^ (platform << 32) ^ index;
    let mut header = tar::Header::new_ustar();
    header.set_path(format!("sealift/layer-{platform}-{index}.bin"))?;
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let noise = Noise::new(mix, size as u64);
    let (file, digest, stored, diff_id) = match compression {
        LayerCompression::None => {
            let mut builder = tar::Builder::new(Hashing::new(file));
            builder.append(&header, noise)?;
            let (file, digest, len) = builder.into_inner()?.finish();
            (file, digest, len, digest)
        }
        LayerCompression::Gzip => {
            let gz = flate2::write::GzEncoder::new(Hashing::new(file), flate2::Compression::fast());
            let mut builder = tar::Builder::new(Hashing::new(gz));
            builder.append(&header, noise)?;
            let (gz, diff_id, _) = builder.into_inner()?.finish();
            let (file, digest, len) = gz.finish()?.finish();
            (file, digest, len, diff_id)
        }
    };
    let tmp = file.into_inner().map_err(|e| e.into_error())?;
    tmp.persist(blobs.join(digest.hex()))?;
    Ok(Layer {
        digest,
        size: stored,
        diff_id,
    })
}

fn put_blob(blobs: &Path, bytes: &[u8]) -> Result<(Digest, u64)> {
    let d = Digest::of(bytes);
    fs_err::write(blobs.join(d.hex()), bytes)?;
    Ok((d, bytes.len() as u64))
}

/// The flags that let skopeo reach `registry` on one side (`src` or `dest`).
fn registry_flags(registry: &Registry, side: &str) -> Vec<String> {
    let mut flags = Vec::new();
    match registry.cert_dir() {
        // TLS: verify with the test CA only.
        Some(dir) => {
            flags.push(format!("--{side}-tls-verify=true"));
            flags.push(format!("--{side}-cert-dir={}", dir.display()));
        }
        // Plain HTTP: skopeo needs tls-verify off to fall back to http.
        None => flags.push(format!("--{side}-tls-verify=false")),
    }
    match registry.credentials() {
        Some((user, password)) => flags.push(format!("--{side}-creds={user}:{password}")),
        None => flags.push(format!("--{side}-no-creds")),
    }
    flags
}

fn skopeo(registry: &Registry, args: &[String]) -> Result<Vec<u8>> {
    let registries_conf = registry.dir().join("registries.conf");
    if !registries_conf.is_file() {
        fs_err::write(&registries_conf, "")?;
    }
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "--command-timeout", "300s"])
        .args(args)
        .env("CONTAINERS_REGISTRIES_CONF", &registries_conf)
        .stdin(Stdio::null())
        .output()
        .context("running skopeo (is the `skopeo` package installed?)")?;
    if !out.status.success() {
        bail!(
            "skopeo {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Copies a layout image to `registry` as `dest` (`acme/app:1.0`) byte for byte, and checks
/// that the registry serves the same top manifest digest.
pub fn push_with_skopeo(image: &BuiltImage, registry: &Registry, dest: &str) -> Result<()> {
    let mut args = vec![
        "copy".to_owned(),
        "--all".to_owned(),
        "--preserve-digests".to_owned(),
        "--quiet".to_owned(),
    ];
    args.extend(registry_flags(registry, "dest"));
    args.push(format!("oci:{}:{}", image.dir.display(), image.ref_name));
    args.push(format!("docker://{}/{dest}", registry.addr()));
    skopeo(registry, &args)?;
    let raw = skopeo_inspect_raw(registry, dest)?;
    let served = Digest::of(&raw);
    ensure!(
        served == image.digest,
        "registry serves {dest} as {served}, the layout has {}",
        image.digest
    );
    Ok(())
}

/// `skopeo inspect --raw`: the manifest bytes the registry serves for `reference`.
pub fn skopeo_inspect_raw(registry: &Registry, reference: &str) -> Result<Vec<u8>> {
    let mut args = vec!["inspect".to_owned(), "--raw".to_owned()];
    for flag in registry_flags(registry, "src") {
        // inspect spells the flags without the side.
        args.push(flag.replacen("--src-", "--", 1));
    }
    args.push(format!("docker://{}/{reference}", registry.addr()));
    skopeo(registry, &args)
}

/// Copies `reference` (`acme/app:1.0`, every platform) from `registry` into the OCI layout
/// `dir` under `ref_name`.
pub fn skopeo_copy_to_oci_layout(registry: &Registry, reference: &str, dir: &Path, ref_name: &str) -> Result<()> {
    let mut args = vec![
        "copy".to_owned(),
        "--all".to_owned(),
        "--preserve-digests".to_owned(),
        "--quiet".to_owned(),
    ];
    args.extend(registry_flags(registry, "src"));
    args.push(format!("docker://{}/{reference}", registry.addr()));
    args.push(format!("oci:{}:{ref_name}", dir.display()));
    skopeo(registry, &args)?;
    Ok(())
}

/// Copies `reference` from `registry` into a docker archive `file` tagged `name_tag`
/// (`quay.io/acme/app:1.0`). For an index, skopeo takes the `linux/amd64` image.
pub fn skopeo_copy_to_docker_archive(registry: &Registry, reference: &str, file: &Path, name_tag: &str) -> Result<()> {
    let mut args = vec![
        "--override-os=linux".to_owned(),
        "--override-arch=amd64".to_owned(),
        "copy".to_owned(),
        "--quiet".to_owned(),
    ];
    args.extend(registry_flags(registry, "src"));
    args.push(format!("docker://{}/{reference}", registry.addr()));
    args.push(format!("docker-archive:{}:{name_tag}", file.display()));
    skopeo(registry, &args)?;
    Ok(())
}
