//! Runs real `helm template` (or the test stand-in, which prints the same).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use schemas::spec::ChartSpec;

/// A Helm binary.
#[derive(Debug, Clone)]
pub struct Helm {
    bin: PathBuf,
}

/// One `helm template` invocation's inputs beyond the spec.
#[derive(Debug, Clone, Default)]
pub struct RenderInput {
    /// Values files added after the spec's (sentinels, defaults).
    pub extra_values: Vec<PathBuf>,
    /// Overrides the spec's namespace.
    pub namespace: Option<String>,
}

impl Helm {
    /// `explicit` (`--helm`), else `helm` on `PATH`.
    pub fn find(explicit: Option<&Path>) -> Result<Self> {
        if let Some(p) = explicit {
            if !p.is_file() {
                bail!("helm binary {} does not exist", p.display());
            }
            return Ok(Self { bin: p.to_owned() });
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join("helm"))
            .find(|p| p.is_file())
            .map(|bin| Self { bin })
            .context("no `helm` on PATH\nhint: install Helm v3 or v4, or pass --helm PATH")
    }

    /// `helm version --short`.
    pub fn version(&self) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(["version", "--short"])
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "`{} version --short` failed: {}",
                self.bin.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// `helm template` with the spec's release name, namespace, values, Kubernetes and API
    /// versions, CRDs included. Returns stdout.
    pub fn template(&self, spec: &ChartSpec, base: &Path, input: &RenderInput) -> Result<String> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("template")
            .arg(&spec.release_name)
            .arg(base.join(&spec.path))
            .arg("--namespace")
            .arg(input.namespace.as_deref().unwrap_or(&spec.namespace))
            .arg("--kube-version")
            .arg(&spec.kube_version)
            .arg("--include-crds");
        for api in &spec.api_versions {
            cmd.arg("--api-versions").arg(api);
        }
        for v in &spec.values {
            cmd.arg("--values").arg(base.join(v));
        }
        for v in &input.extra_values {
            cmd.arg("--values").arg(v);
        }
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        if !out.status.success() {
            bail!("helm template failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        String::from_utf8(out.stdout).context("helm template printed invalid UTF-8")
    }
}
