//! Shared helpers: run the real `sealift-bundler`, make keys and roots, start the real
//! registry seeded with the sample images, build bundles, copy and mutate charts, read
//! bundle entries with the system `tar`, and assert on exit codes and exact stderr text.

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tests::oci_fixtures::push_with_skopeo;
use tests::registry::{Registry, RegistryAuth, RegistryOptions, docker_config_for};
use tests::sample;

/// Exit code of a refused input or failed command.
pub const REFUSED: i32 = 1;
/// Exit code of a bad command line.
pub const USAGE: i32 = 2;
/// A loopback address nothing listens on (the discard port): builds of labs without a
/// registry pull from here, so a build that gets as far as pulling fails on loopback.
pub const CLOSED_LOOPBACK: &str = "127.0.0.1:9";

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sealift-bundler")
}

/// `SOURCE_DATE_EPOCH` for builds: midnight UTC of the day before today, so bundles are
/// neither created in the future nor expired whenever the tests run, and every build of
/// one test gets the same value.
pub fn epoch() -> i64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now / 86_400 - 1) * 86_400
}

/// RFC 3339 of a unix time (as the bundle prints it: seconds, `Z`).
pub fn rfc3339(unix: i64) -> String {
    schemas::Timestamp::from_unix(unix).unwrap().to_string()
}

/// A command's exit code and output.
#[derive(Debug)]
pub struct Run {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn explain(&self) -> String {
        format!(
            "{}\n--- exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts exit 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success:\n{}", self.explain());
        self
    }

    /// Asserts exit 1 and an `error: …` line on stderr.
    #[track_caller]
    pub fn refused(self) -> Self {
        assert_eq!(self.code, Some(REFUSED), "expected a refusal:\n{}", self.explain());
        assert!(
            self.stderr.contains("error: "),
            "a refusal prints `error: …`:\n{}",
            self.explain()
        );
        self
    }

    /// Asserts exit 2 (clap's usage error).
    #[track_caller]
    pub fn usage(self) -> Self {
        assert_eq!(self.code, Some(USAGE), "expected a usage error:\n{}", self.explain());
        self
    }

    /// Asserts stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.explain()
        );
        self
    }

    /// Asserts stderr does not contain `needle`.
    #[track_caller]
    pub fn stderr_lacks(self, needle: &str) -> Self {
        assert!(
            !self.stderr.contains(needle),
            "stderr has {needle:?}:\n{}",
            self.explain()
        );
        self
    }

    /// Asserts stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.explain()
        );
        self
    }

    /// The `error: …` line, exactly.
    #[track_caller]
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no `error:` line:\n{}", self.explain()))
    }

    /// The `hint: …` lines.
    pub fn hints(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with("hint: ")).collect()
    }

    /// Asserts a `hint: …` line starting with `prefix`.
    #[track_caller]
    pub fn hint_has(self, needle: &str) -> Self {
        assert!(
            self.hints().iter().any(|h| h.contains(needle)),
            "no hint line with {needle:?}:\n{}",
            self.explain()
        );
        self
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.explain()))
    }
}

/// Runs a prepared command and collects its output.
pub fn run(cmd: &mut Command) -> Run {
    let what = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Run {
        what,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `sealift-bundler` with a clean environment: no `SOURCE_DATE_EPOCH`, passphrase,
/// docker config or log filter from the caller, no colours.
pub fn bundler_cmd() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("SOURCE_DATE_EPOCH")
        .env_remove("RUST_LOG")
        .env_remove("DOCKER_CONFIG")
        .env_remove(keys::PASSPHRASE_ENV)
        .env("NO_COLOR", "1");
    c
}

/// Runs `sealift-bundler ARGS…`.
pub fn bundler<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(bundler_cmd().args(args))
}

/// Runs another program; panics unless it exits 0. Returns stdout bytes.
#[track_caller]
pub fn tool<I, S>(program: &str, args: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    let what = format!(
        "{program} {}",
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs another program and returns its exit status and output, whatever it is.
pub fn tool_run<I, S>(program: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new(program).args(args))
}

/// A key pair made by `sealift-bundler keygen`.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub key: PathBuf,
    pub public: PathBuf,
    /// Hex sha256 of the SPKI DER, as keygen prints it.
    pub id: String,
}

/// `sealift-bundler keygen --out DIR --name NAME`.
pub fn keygen(dir: &Path, name: &str) -> KeyPair {
    let run = bundler([
        OsStr::new("keygen"),
        OsStr::new("--out"),
        dir.as_os_str(),
        OsStr::new("--name"),
        OsStr::new(name),
    ])
    .ok();
    KeyPair {
        key: dir.join(format!("{name}.key")),
        public: dir.join(format!("{name}.pub")),
        id: run.stdout.trim().to_owned(),
    }
}

/// `root init --root-dir DIR --root-key ROOT --release-pub PUB…` with optional release
/// threshold.
pub fn root_init(dir: &Path, root: &KeyPair, release: &[&Path], release_threshold: Option<u32>) -> Run {
    let mut args: Vec<OsString> = vec![
        "root".into(),
        "init".into(),
        "--root-dir".into(),
        dir.into(),
        "--root-key".into(),
        root.key.clone().into(),
    ];
    for p in release {
        args.push("--release-pub".into());
        args.push(p.into());
    }
    if let Some(t) = release_threshold {
        args.push("--release-threshold".into());
        args.push(t.to_string().into());
    }
    bundler(args)
}

/// A vendor: a root key, a release key and `roots/1.root.json` naming them.
#[derive(Debug, Clone)]
pub struct Vendor {
    pub root: KeyPair,
    pub release: KeyPair,
    pub roots: PathBuf,
}

impl Vendor {
    pub fn new(dir: &Path) -> Self {
        let keys = dir.join("keys");
        let root = keygen(&keys, "root");
        let release = keygen(&keys, "release");
        let roots = dir.join("roots");
        root_init(&roots, &root, &[&release.public], None).ok();
        Self { root, release, roots }
    }
}

/// A scratch directory, a vendor and (optionally) a registry seeded with the sample images.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub vendor: Vendor,
    pub registry: Option<Registry>,
    /// An empty docker `config.json`, so no credentials of the machine leak in.
    pub docker_config: PathBuf,
    pub epoch: i64,
}

impl Lab {
    /// Keys and roots only, no registry.
    pub fn offline() -> Self {
        let dir = tempfile::Builder::new().prefix("sealift-it-").tempdir().unwrap();
        let vendor = Vendor::new(dir.path());
        let docker_config = docker_config_for(&dir.path().join("empty"), "none", None).unwrap();
        Self {
            dir,
            vendor,
            registry: None,
            docker_config,
            epoch: epoch(),
        }
    }

    /// An anonymous plain-HTTP registry with every sample image of every version.
    pub fn new() -> Self {
        Self::with_registry(RegistryOptions::default(), &sample::SAMPLE_VERSIONS)
    }

    /// An anonymous registry holding the sample images of `versions` only.
    pub fn with_versions(versions: &[&str]) -> Self {
        Self::with_registry(RegistryOptions::default(), versions)
    }

    /// A registry of the given kind holding the sample images of `versions`.
    pub fn with_registry(options: RegistryOptions, versions: &[&str]) -> Self {
        let mut lab = Self::offline();
        let registry = Registry::start(options).unwrap();
        seed(&registry, &lab.path().join("seed"), versions);
        lab.registry = Some(registry);
        lab
    }

    /// An htpasswd registry (user `vendor-ci`).
    pub fn htpasswd(versions: &[&str]) -> Self {
        Self::with_registry(
            RegistryOptions {
                auth: RegistryAuth::Htpasswd {
                    user: "vendor-ci".to_owned(),
                    password: "s3cret-pa55".to_owned(),
                },
                tls: false,
            },
            versions,
        )
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn registry(&self) -> &Registry {
        self.registry.as_ref().expect("this lab has a registry")
    }

    /// A path in the scratch directory.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// A build of `spec` with the lab's keys, roots, registry and epoch.
    pub fn build(&self, spec: impl Into<PathBuf>, version: &str, out: impl Into<PathBuf>) -> Build {
        Build {
            spec: spec.into(),
            version: Some(version.to_owned()),
            sequence: Some("1".to_owned()),
            epoch: Some(self.epoch.to_string()),
            keys: vec![self.vendor.release.key.clone()],
            root_dir: self.vendor.roots.clone(),
            out: out.into(),
            // Without a registry, a closed loopback port: nothing can reach the network.
            registry_override: Some(
                self.registry
                    .as_ref()
                    .map_or_else(|| CLOSED_LOOPBACK.to_owned(), Registry::addr),
            ),
            docker_config: Some(self.docker_config.clone()),
            args: Vec::new(),
            env: Vec::new(),
            umask: None,
        }
    }

    /// Builds the sample app `version` from the testdata spec into `NAME.sealift`; asserts
    /// success.
    pub fn sample_bundle(&self, version: &str, name: &str) -> PathBuf {
        let out = self.at(&format!("{name}.sealift"));
        let mut b = self.build(sample::sample_spec(version), version, &out);
        if version == "3.0.0" {
            b = b.arg("--allow-simulator-annotations");
        }
        b.run().ok();
        out
    }

    /// `verify FILE --root-dir ROOTS [extra…]`.
    pub fn verify(&self, file: &Path, extra: &[&str]) -> Run {
        verify(file, &self.vendor.roots, extra)
    }
}

/// `verify FILE --root-dir ROOTS [extra…]`.
pub fn verify(file: &Path, roots: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<OsString> = vec!["verify".into(), file.into(), "--root-dir".into(), roots.into()];
    args.extend(extra.iter().map(OsString::from));
    bundler(args)
}

/// `verify … --format json`, asserting success; the summary.
#[track_caller]
pub fn verify_json(file: &Path, roots: &Path) -> Value {
    verify(file, roots, &["--format", "json"]).ok().json()
}

/// Pushes the sample images of `versions` into `registry` with skopeo.
pub fn seed(registry: &Registry, work: &Path, versions: &[&str]) {
    if versions.len() == sample::SAMPLE_VERSIONS.len() {
        sample::seed_sample_images(registry, work).unwrap();
        return;
    }
    for version in versions {
        for component in sample::SAMPLE_COMPONENTS {
            let layout = work.join(format!("{component}-{version}"));
            let built = sample::sample_image(component, version).write_layout(&layout).unwrap();
            push_with_skopeo(&built, registry, &format!("sealift-sample/{component}:{version}")).unwrap();
        }
    }
}

/// One `sealift-bundler build`, with every required input set by default.
#[derive(Debug, Clone)]
pub struct Build {
    pub spec: PathBuf,
    pub version: Option<String>,
    pub sequence: Option<String>,
    pub epoch: Option<String>,
    pub keys: Vec<PathBuf>,
    pub root_dir: PathBuf,
    pub out: PathBuf,
    pub registry_override: Option<String>,
    pub docker_config: Option<PathBuf>,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// Run through `bash -c 'umask U; exec …'`.
    pub umask: Option<String>,
}

impl Build {
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn version(mut self, v: Option<&str>) -> Self {
        self.version = v.map(str::to_owned);
        self
    }
    pub fn sequence(mut self, s: Option<&str>) -> Self {
        self.sequence = s.map(str::to_owned);
        self
    }
    pub fn epoch(mut self, e: Option<String>) -> Self {
        self.epoch = e;
        self
    }
    pub fn keys(mut self, keys: &[&Path]) -> Self {
        self.keys = keys.iter().map(|k| k.to_path_buf()).collect();
        self
    }
    pub fn root_dir(mut self, dir: &Path) -> Self {
        self.root_dir = dir.to_owned();
        self
    }
    pub fn docker_config(mut self, path: &Path) -> Self {
        self.docker_config = Some(path.to_owned());
        self
    }
    pub fn umask(mut self, umask: &str) -> Self {
        self.umask = Some(umask.to_owned());
        self
    }

    /// The full argument list after `sealift-bundler`.
    pub fn argv(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["build".into(), self.spec.clone().into()];
        if let Some(v) = &self.version {
            a.extend(["--version".into(), v.into()]);
        }
        if let Some(s) = &self.sequence {
            a.extend(["--sequence".into(), s.into()]);
        }
        for k in &self.keys {
            a.extend(["--key".into(), k.into()]);
        }
        a.extend(["--root-dir".into(), self.root_dir.clone().into()]);
        a.extend(["--out".into(), self.out.clone().into()]);
        a.extend(["--helm".into(), sample::helm_stand_in().into()]);
        if let Some(r) = &self.registry_override {
            a.extend([
                "--registry-override".into(),
                format!("{}={r}", sample::SAMPLE_IMAGE_HOST).into(),
            ]);
        }
        if let Some(d) = &self.docker_config {
            a.extend(["--docker-config".into(), d.into()]);
        }
        a.extend(self.args.iter().cloned());
        a
    }

    pub fn run(&self) -> Run {
        let mut cmd = match &self.umask {
            Some(u) => {
                let mut c = Command::new("bash");
                c.arg("-c").arg(format!("umask {u}; exec \"$0\" \"$@\"")).arg(bin());
                c.env_remove("SOURCE_DATE_EPOCH")
                    .env_remove("RUST_LOG")
                    .env_remove("DOCKER_CONFIG")
                    .env_remove(keys::PASSPHRASE_ENV)
                    .env("NO_COLOR", "1");
                c
            }
            None => bundler_cmd(),
        };
        cmd.args(self.argv());
        if let Some(e) = &self.epoch {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }
}

// ---------------------------------------------------------------------------------------
// charts and specs

/// Copies `testdata/sample-app/VERSION/` (spec and chart) into `dir`; returns the spec path.
pub fn copy_sample(version: &str, dir: &Path) -> PathBuf {
    let src = sample::sample_spec(version);
    sample::copy_dir(src.parent().unwrap(), dir).unwrap();
    dir.join("sealift.yaml")
}

/// Writes `dir/rel`, creating parents.
pub fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, text).unwrap();
}

/// Replaces `from` (which must occur) with `to` in a file.
#[track_caller]
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = fs_err::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    fs_err::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Sets the mtime of every file and directory under `dir`.
pub fn set_mtimes(dir: &Path, unix: u64) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(unix);
    for entry in walkdir::WalkDir::new(dir).contents_first(true) {
        let entry = entry.unwrap();
        let f = std::fs::File::open(entry.path()).unwrap();
        f.set_modified(t).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// bundles

/// `tar -xOf FILE ENTRY`: one entry's bytes, read by the system tar.
pub fn tar_entry(file: &Path, entry: &str) -> Vec<u8> {
    tool("tar", [OsStr::new("-xOf"), file.as_os_str(), OsStr::new(entry)])
}

/// `tar tf FILE`: the entry names, in order.
pub fn tar_list(file: &Path) -> Vec<String> {
    String::from_utf8(tool("tar", [OsStr::new("tf"), file.as_os_str()]))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `sealift/head.json` parsed, its zero reserve stripped.
pub fn head_json(file: &Path) -> Value {
    let mut bytes = tar_entry(file, "sealift/head.json");
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    serde_json::from_slice(&bytes).unwrap()
}

/// The release envelope's payload (the manifest) decoded from the head.
pub fn manifest_payload(file: &Path) -> Vec<u8> {
    let head = head_json(file);
    let payload = head["release"]["payload"].as_str().unwrap();
    base64::engine::general_purpose::STANDARD.decode(payload).unwrap()
}

/// `sha256:HEX` of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Hex sha256 of an SPKI PEM public key's DER, computed by openssl: the key id.
pub fn openssl_key_id(public: &Path) -> String {
    let der = tool(
        "openssl",
        [
            OsStr::new("pkey"),
            OsStr::new("-pubin"),
            OsStr::new("-in"),
            public.as_os_str(),
            OsStr::new("-outform"),
            OsStr::new("DER"),
        ],
    );
    hex::encode(Sha256::digest(&der))
}

/// A copy of `file` at `to` with `change` applied to its bytes.
pub fn tampered(file: &Path, to: &Path, change: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = fs_err::read(file).unwrap();
    change(&mut bytes);
    fs_err::write(to, bytes).unwrap();
    to.to_owned()
}

/// Byte offset and size of each entry's data, from the tar headers (`(path, data_offset, size)`).
pub fn entries(file: &Path) -> Vec<(String, usize, usize)> {
    let bytes = fs_err::read(file).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() && bytes[at..at + 512].iter().any(|b| *b != 0) {
        let h = &bytes[at..at + 512];
        let name_end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..name_end]).into_owned();
        let size_field = String::from_utf8_lossy(&h[124..136]);
        let size = usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap();
        out.push((name, at + 512, size));
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}
