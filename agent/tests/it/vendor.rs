//! The vendor side of the agent's tests: keys, a root, a registry seeded with the sample
//! images, and bundles built from them by the real bundler (in process).

use std::path::{Path, PathBuf};

use tests::registry::{Registry, RegistryOptions};
use tests::sample;

/// `SOURCE_DATE_EPOCH` of the bundles: 2026-01-01.
pub(crate) const CREATED: i64 = 1_767_225_600;

pub(crate) struct Vendor {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) registry: Registry,
    pub(crate) release_key: PathBuf,
    pub(crate) roots: PathBuf,
}

impl Vendor {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start(RegistryOptions::default()).unwrap();
        sample::seed_sample_images(&registry, &dir.path().join("layouts")).unwrap();
        let keys_dir = dir.path().join("keys");
        std::fs::create_dir_all(&keys_dir).unwrap();
        let root = keys::generate_key_files(&keys_dir, "root").unwrap();
        let release = keys::generate_key_files(&keys_dir, "release").unwrap();
        let roots = dir.path().join("roots");
        let root_key = keys::SigningKey::load(&root.private_key, keys::PASSPHRASE_ENV).unwrap();
        let release_pub = keys::PublicKey::load(&release.public_key).unwrap();
        std::fs::create_dir_all(&roots).unwrap();
        keys::root_dir::init(&roots, &[root_key], vec![], None, vec![release_pub], None).unwrap();
        Self {
            dir,
            registry,
            release_key: release.private_key,
            roots,
        }
    }

    /// The release signing key.
    pub(crate) fn signing_key(&self) -> keys::SigningKey {
        keys::SigningKey::load(&self.release_key, keys::PASSPHRASE_ENV).unwrap()
    }

    /// The sample app `version`, its backup and restore steps running in the simulator.
    pub(crate) fn build(&self, version: &str, sequence: u64) -> PathBuf {
        let dir = self.dir.path().join(format!("spec-{version}-{sequence}"));
        let spec = sample::simulated_spec(version, &dir).unwrap();
        self.build_spec(&spec, version, sequence)
    }

    /// The sample app `version` as written in `testdata/`, with `extra` bundler arguments.
    pub(crate) fn build_plain(&self, version: &str, sequence: u64, extra: &[&str]) -> PathBuf {
        let out = self.out(version, sequence);
        self.build_into(&sample::sample_spec(version), &out, version, sequence, CREATED, extra);
        out
    }

    /// Builds any build spec (a modified copy of the sample app, say), valid for ten years.
    pub(crate) fn build_spec(&self, spec: &Path, version: &str, sequence: u64) -> PathBuf {
        self.build_spec_with(spec, version, sequence, CREATED, &["--valid-for", "3650d"])
    }

    /// As [`Vendor::build_spec`], created at `created` (`SOURCE_DATE_EPOCH`) with `extra`
    /// bundler arguments instead of `--valid-for 3650d` (a short `--valid-for`, say).
    pub(crate) fn build_spec_with(
        &self,
        spec: &Path,
        version: &str,
        sequence: u64,
        created: i64,
        extra: &[&str],
    ) -> PathBuf {
        let out = self.out(version, sequence);
        self.build_into(spec, &out, version, sequence, created, extra);
        out
    }

    fn out(&self, version: &str, sequence: u64) -> PathBuf {
        self.dir.path().join(format!("sample-app-{version}-{sequence}.sealift"))
    }

    /// Builds `spec` as `version` with `sequence` into `out`, created at `created`, with
    /// `extra` bundler arguments.
    pub(crate) fn build_into(
        &self,
        spec: &Path,
        out: &Path,
        version: &str,
        sequence: u64,
        created: i64,
        extra: &[&str],
    ) {
        let mut argv: Vec<String> = [
            "sealift-bundler",
            "build",
            &spec.display().to_string(),
            "--version",
            version,
            "--sequence",
            &sequence.to_string(),
            "--key",
            &self.release_key.display().to_string(),
            "--root-dir",
            &self.roots.display().to_string(),
            "--out",
            &out.display().to_string(),
            "--helm",
            &sample::helm_stand_in().display().to_string(),
            "--registry-override",
            &format!("quay.io={}", self.registry.addr()),
            "--allow-simulator-annotations",
            "--format",
            "json",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        let cli = <bundler::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let bundler::cli::Command::Build(args) = cli.command else {
            unreachable!()
        };
        // The bundler runs its own runtime: keep it off the test's.
        std::thread::spawn(move || bundler::cmd::build::run_at(*args, Some(&created.to_string())))
            .join()
            .unwrap()
            .unwrap();
    }
}
