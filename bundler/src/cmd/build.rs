//! `sealift-bundler build`: one signed, reproducible bundle from a spec.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use schemas::manifest::ChartInfo;
use schemas::release::{Migrations, StepKind, VariableSpec, VariableType, VariableValue};
use schemas::spec::BuildSpec;
use schemas::{Refusal, Timestamp, VerifiedHead};
use serde_json::json;

use crate::assemble::{self, MetadataBytes, Release};
use crate::helm::{Helm, RenderInput};
use crate::images::{BlobCache, FetchOptions, fetch_images};
use crate::progress::Progress;
use crate::render::{self, Document};
use crate::trust::{RootDir, load_release_keys};
use crate::variables::{self, Set};
use crate::{chart, image_refs, waves};

/// Prefix of the test-only annotations the Kubernetes API simulator acts on.
pub const SIMULATOR_ANNOTATION_PREFIX: &str = "sim.sealift.dev/";
/// Largest clock skew tolerated between `SOURCE_DATE_EPOCH` and this machine's clock.
const MAX_FUTURE_SECONDS: i64 = 600;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The build spec (sealift.yaml).
    pub spec: PathBuf,
    /// Product version, SemVer 2.0 (the only version admins type and bundles are ordered by).
    #[arg(long)]
    pub version: Option<String>,
    /// Monotonic build number of this product's releases (required).
    #[arg(long)]
    pub sequence: Option<u64>,
    /// Refuse, once this bundle is accepted, every bundle with a lower sequence.
    #[arg(long, default_value_t = 0)]
    pub min_sequence: u64,
    /// How long the bundle may be installed after its creation (`365d`, `12w`, `48h`).
    #[arg(long, default_value = "365d")]
    pub valid_for: String,
    /// Release signing key (PKCS#8 PEM); repeat for several signatures. An encrypted key's
    /// passphrase comes from SEALIFT_KEY_PASSPHRASE.
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Directory with 1.root.json … N.root.json; the whole chain goes into the bundle.
    #[arg(long)]
    pub root_dir: PathBuf,
    /// Output bundle file.
    #[arg(long)]
    pub out: PathBuf,
    /// Helm binary (default: `helm` on PATH).
    #[arg(long)]
    pub helm: Option<PathBuf>,
    /// Allow a template function that is refused by default (lookup, now, rand*, gen*, …).
    #[arg(long = "allow-template-fn", value_name = "NAME")]
    pub allow_template_fns: Vec<String>,
    /// Pull images named on HOST from MIRROR (HOST=MIRROR); names in the bundle are kept.
    #[arg(long = "registry-override", value_name = "HOST=MIRROR")]
    pub registry_overrides: Vec<String>,
    /// Allow plain HTTP to this registry host (loopback is always allowed).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificate (PEM) for registries.
    #[arg(long = "registry-ca", value_name = "PEM")]
    pub registry_cas: Vec<PathBuf>,
    /// Docker config.json with registry credentials (default: $DOCKER_CONFIG or ~/.docker).
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
    /// Keep only these platforms of multi-arch images (`linux/amd64`), unless the spec says otherwise.
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub platforms: Vec<String>,
    /// Images the render references but the spec lacks are errors, not warnings.
    #[arg(long)]
    pub strict: bool,
    /// Accept `sim.sealift.dev/*` annotations (test bundles for the API simulator only).
    #[arg(long)]
    pub allow_simulator_annotations: bool,
    /// Keep pulled blobs here between builds (default: a temporary directory).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Parallel image downloads.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value_t = crate::cmd::verify::Format::Text)]
    pub format: crate::cmd::verify::Format,
}

/// Args resolved and checked before any work.
struct Resolved {
    spec: BuildSpec,
    base: PathBuf,
    version: semver::Version,
    sequence: u64,
    created: Timestamp,
    expires: Timestamp,
    roots: RootDir,
    signers: Vec<keys::SigningKey>,
    helm: Helm,
    overrides: BTreeMap<String, String>,
}

fn resolve(args: &Args, source_date_epoch: Option<&str>) -> Result<Resolved> {
    let version = args
        .version
        .as_deref()
        .context("--version is required\nhint: pass the product version, e.g. --version 2.4.0")?;
    let version = semver::Version::parse(version).with_context(|| {
        format!("--version {version:?} is not SemVer 2.0\nhint: use MAJOR.MINOR.PATCH, e.g. 2.4.0 or 2.4.0-rc.1")
    })?;
    let sequence = args.sequence.context(
        "--sequence is required\nhint: pass a build number that grows with every release, e.g. --sequence $GITHUB_RUN_NUMBER",
    )?;
    let epoch = source_date_epoch.ok_or_else(|| {
        anyhow::anyhow!(
            "SOURCE_DATE_EPOCH is not set; the creation time must come from the source so builds are reproducible\n\
             hint: SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) sealift-bundler build …"
        )
    })?;
    let epoch: i64 = epoch
        .trim()
        .parse()
        .with_context(|| format!("SOURCE_DATE_EPOCH={epoch:?} is not a number of seconds"))?;
    let created = Timestamp::from_unix(epoch)?;
    let now = Timestamp::now();
    if created > now.plus(MAX_FUTURE_SECONDS) {
        bail!(
            "SOURCE_DATE_EPOCH {created} is more than {} minutes ahead of this machine's clock ({now})\nhint: check the build machine's clock",
            MAX_FUTURE_SECONDS / 60
        );
    }
    let valid_for = schemas::timestamp::parse_duration(&args.valid_for).context("--valid-for")?;
    let expires = created.plus(valid_for);
    let text = fs_err::read_to_string(&args.spec)?;
    let spec: BuildSpec =
        serde_saphyr::from_str(&text).with_context(|| format!("invalid spec {}", args.spec.display()))?;
    let base = args.spec.parent().map(Path::to_path_buf).unwrap_or_default();
    let roots = RootDir::load(&args.root_dir)?;
    let signers = load_release_keys(&args.keys, &roots)?;
    let helm = Helm::find(args.helm.as_deref())?;
    let mut overrides = spec.registry_overrides.clone();
    for o in &args.registry_overrides {
        let (host, mirror) = o
            .split_once('=')
            .with_context(|| format!("--registry-override {o:?} is not HOST=MIRROR"))?;
        overrides.insert(host.to_owned(), mirror.to_owned());
    }
    check_spec(&spec)?;
    Ok(Resolved {
        spec,
        base,
        version,
        sequence,
        created,
        expires,
        roots,
        signers,
        helm,
        overrides,
    })
}

/// Checks the spec's internal references before anything runs.
fn check_spec(spec: &BuildSpec) -> Result<()> {
    let names: BTreeSet<&str> = spec.images.iter().map(|i| i.name.as_str()).collect();
    if names.len() != spec.images.len() {
        bail!("the spec lists an image twice");
    }
    let mut ids = BTreeSet::new();
    for s in &spec.steps {
        if !ids.insert(s.id.as_str()) {
            bail!("step id {} is used twice", s.id);
        }
        if !names.contains(s.image.as_str()) {
            bail!(
                "step {} uses image {}, which the spec's images do not list",
                s.id,
                s.image
            );
        }
        if s.reversible != s.down.is_some() {
            bail!("step {}: `reversible: true` and a `down` step go together", s.id);
        }
        if s.kind != StepKind::Migration && (s.from_versions.is_some() || s.reversible) {
            bail!("step {}: only migrations have fromVersions or down steps", s.id);
        }
        for range in [&s.from_versions, &s.to_versions].into_iter().flatten() {
            semver::VersionReq::parse(range)
                .with_context(|| format!("step {}: {range:?} is not a semver range", s.id))?;
        }
    }
    let policy = &spec.upgrade_policy;
    for range in [&policy.upgrade_from, &policy.kube_versions].into_iter().flatten() {
        semver::VersionReq::parse(range).with_context(|| format!("upgradePolicy: {range:?} is not a semver range"))?;
    }
    let mut vars = BTreeSet::new();
    for v in &spec.variables {
        if !vars.insert(v.name.as_str()) {
            bail!("variable {} is declared twice", v.name);
        }
        if v.values_path.is_empty() || v.values_path.split('.').any(str::is_empty) {
            bail!(
                "variable {}: valuesPath {:?} is not a dotted path",
                v.name,
                v.values_path
            );
        }
        if let Some(p) = &v.pattern {
            let re = regex::Regex::new(p).with_context(|| format!("variable {}: pattern {p:?}", v.name))?;
            if let Some(VariableValue::String(d)) = &v.default
                && !re.is_match(d)
            {
                bail!("variable {}: default {d:?} does not match its pattern {p:?}", v.name);
            }
        }
        let type_ok = matches!(
            (&v.default, v.ty),
            (None, _)
                | (Some(VariableValue::Integer(_)), VariableType::Integer)
                | (Some(VariableValue::String(_)), VariableType::String)
        );
        if !type_ok {
            bail!("variable {}: default is not of type {:?}", v.name, v.ty);
        }
        if v.generate.is_some() && v.ty != VariableType::String {
            bail!("variable {}: only string variables can be generated", v.name);
        }
    }
    Ok(())
}

/// Renders with a values document added after the spec's values.
fn render_with(
    r: &Resolved,
    dir: &Path,
    name: &str,
    values: serde_json::Value,
    namespace: Option<String>,
) -> Result<Vec<Document>> {
    let file = dir.join(format!("{name}.yaml"));
    fs_err::write(&file, serde_json::to_vec(&values)?)?;
    let out = r.helm.template(
        &r.spec.chart,
        &r.base,
        &RenderInput {
            extra_values: vec![file],
            namespace,
        },
    )?;
    Ok(render::parse(&out)?.into_iter().filter(|d| !d.is_test_hook()).collect())
}

/// Renders with one sentinel set; when Helm refuses, names the variable(s) it refused.
fn render_sentinels(r: &Resolved, dir: &Path, set: Set) -> Result<Vec<Document>> {
    let vars = &r.spec.variables;
    let doc = variables::values_document(vars, |i, v| Some(variables::sentinel(set, i, v)));
    let ns = Some(variables::namespace_sentinel(set));
    match render_with(r, dir, "sentinels", doc, ns.clone()) {
        Ok(d) => Ok(d),
        Err(e) => {
            let mut culprits = Vec::new();
            for (i, v) in vars.iter().enumerate() {
                // This variable's test value, every other variable at its default.
                let one = variables::values_document(vars, |j, w| {
                    if j == i {
                        Some(variables::sentinel(set, i, v))
                    } else {
                        default_value(w)
                    }
                });
                if render_with(r, dir, "one", one, ns.clone()).is_err() {
                    culprits.push(format!("{} (test value {})", v.name, variables::sentinel(set, i, v)));
                }
            }
            if culprits.is_empty() {
                return Err(e.context("rendering with test values for the variables failed"));
            }
            Err(e.context(format!(
                "the chart refuses a test value of variable {}; its values.schema.json must accept any value of the variable's type \
                 (strings: up to 20 lowercase DNS characters; integers: 6 digits)",
                culprits.join(", ")
            )))
        }
    }
}

fn default_value(v: &VariableSpec) -> Option<serde_json::Value> {
    v.default.as_ref().map(|d| match d {
        VariableValue::Integer(i) => json!(i),
        VariableValue::String(s) => json!(s),
    })
}

fn defaults_document(vars: &[VariableSpec]) -> serde_json::Value {
    variables::values_document(vars, |_, v| default_value(v))
}

fn check_simulator_annotations(docs: &[Document], spec: &BuildSpec, allowed: bool) -> Result<()> {
    let mut found = Vec::new();
    for d in docs {
        let mut strings = Vec::new();
        collect_keys(&d.object, &mut strings);
        if let Some(k) = strings.iter().find(|k| k.starts_with(SIMULATOR_ANNOTATION_PREFIX)) {
            found.push(format!("{} has {k}", d.describe()));
        }
    }
    for s in &spec.steps {
        if let Some(k) = s
            .pod_template
            .iter()
            .flat_map(|p| p.annotations.keys())
            .find(|k| k.starts_with(SIMULATOR_ANNOTATION_PREFIX))
        {
            found.push(format!("step {} has {k}", s.id));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    if allowed {
        tracing::warn!("bundle carries test-only simulator annotations: {}", found.join("; "));
        return Ok(());
    }
    bail!(
        "test-only simulator annotations ({SIMULATOR_ANNOTATION_PREFIX}*) found: {}\nhint: only test bundles for the API simulator carry them (--allow-simulator-annotations)",
        found.join("; ")
    )
}

fn collect_keys(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                collect_keys(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_keys(x, out)),
        _ => {}
    }
}

pub fn run(args: Args) -> Result<()> {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    run_at(args, epoch.as_deref())
}

/// [`run`] with `SOURCE_DATE_EPOCH` given instead of read from the environment (for
/// programs and tests that build bundles in-process).
pub fn run_at(args: Args, source_date_epoch: Option<&str>) -> Result<()> {
    let r = resolve(&args, source_date_epoch)?;
    let chart_dir = r.base.join(&r.spec.chart.path);
    let meta = chart::read_meta(&chart_dir)?;

    let findings = chart::scan_templates(&chart_dir)?;
    let (allowed, refused): (Vec<_>, Vec<_>) = findings
        .into_iter()
        .partition(|f| args.allow_template_fns.contains(&f.function));
    for f in &allowed {
        tracing::warn!("{f} (allowed by --allow-template-fn; renders may differ between runs or sites)");
    }
    if !refused.is_empty() {
        let list: Vec<String> = refused.iter().map(ToString::to_string).collect();
        bail!(
            "the chart calls functions whose output differs between runs or sites:\n  {}\nhint: a value generated per site must be a variable with `generate`; --allow-template-fn NAME overrides",
            list.join("\n  ")
        );
    }

    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let vars = &r.spec.variables;
    tracing::info!("rendering {} with {}", chart_dir.display(), r.helm.version()?);
    let defaults = render_with(&r, work.path(), "defaults", defaults_document(vars), None)?;
    let again = render_with(&r, work.path(), "defaults", defaults_document(vars), None)?;
    if render::print(&defaults) != render::print(&again) {
        let at = defaults
            .iter()
            .zip(&again)
            .find(|(a, b)| a != b)
            .map_or_else(|| "the document list".to_owned(), |(a, _)| a.source.clone());
        bail!("two renders of the same chart and values differ (first in {at}); the chart is not deterministic");
    }
    check_simulator_annotations(&defaults, &r.spec, args.allow_simulator_annotations)?;
    let a = render_sentinels(&r, work.path(), Set::A)?;
    let b = render_sentinels(&r, work.path(), Set::B)?;
    let vars_entry = variables::analyze(
        vars,
        &variables::Renders {
            a: &a,
            b: &b,
            defaults: &defaults,
            namespace: &r.spec.chart.namespace,
            release_name: &r.spec.chart.release_name,
        },
    )?;
    let waves = waves::assign(&r.spec.waves, &defaults)?;

    let report = image_refs::analyse(&defaults, &r.spec.images, &r.spec.image_locations)?;
    for m in &report.mentions {
        tracing::info!("image {} appears in {} at {}", m.image, m.source, m.pointer);
    }
    for name in &report.unused {
        tracing::warn!("image {name} is listed in the spec but the render never mentions it");
    }
    if !report.missing.is_empty() {
        let list: Vec<&str> = report.missing.iter().map(String::as_str).collect();
        let msg = format!(
            "the render references images the spec does not list: {}",
            list.join(", ")
        );
        if args.strict {
            bail!("{msg}\nhint: add them to `images` in the spec");
        }
        tracing::warn!("{msg}");
    }

    let migrations = Migrations {
        steps: r.spec.steps.clone(),
        upgrade_policy: r.spec.upgrade_policy.clone(),
        waves,
    };
    let metadata = MetadataBytes {
        chart: chart::pack(&chart_dir, &meta.name)?,
        render: render::print(&defaults).into_bytes(),
        variables: pretty(&vars_entry)?,
        migrations: pretty(&migrations)?,
    };

    let cache_dir = match &args.cache_dir {
        Some(d) => d.clone(),
        None => work.path().join("blobs"),
    };
    let cache = BlobCache::new(&cache_dir)?;
    let opts = FetchOptions {
        registry_overrides: r.overrides.clone(),
        insecure_registries: r
            .spec
            .insecure_registries
            .iter()
            .chain(&args.insecure_registries)
            .cloned()
            .collect(),
        docker_config: args.docker_config.clone(),
        ca_certs: args.registry_cas.clone(),
        target_prefix: r.spec.target_prefix.clone(),
        default_platforms: args.platforms.clone(),
        parallelism: args.jobs.max(1),
        base_dir: r.base.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let images = runtime.block_on(fetch_images(&r.spec.images, &opts, &cache))?;

    let release = Release {
        product: r.spec.product.clone(),
        version: r.version.clone(),
        sequence: r.sequence,
        min_sequence: args.min_sequence,
        created: r.created,
        expires: r.expires,
        chart: ChartInfo {
            name: meta.name.clone(),
            version: meta.version.clone(),
            app_version: meta.app_version.clone(),
            release_name: r.spec.chart.release_name.clone(),
            namespace: r.spec.chart.namespace.clone(),
            kube_version: r.spec.chart.kube_version.clone(),
            api_versions: r.spec.chart.api_versions.clone(),
            helm_version: r.helm.version()?,
        },
        image_locations: r.spec.image_locations.clone(),
    };
    let mut bundle = assemble::assemble(release, metadata, &images, &cache)?;
    bundle.sign(&r.roots.envelopes, &r.signers)?;
    let head_entry = bundle.head.to_entry();
    let verified = match VerifiedHead::verify(&head_entry, &r.roots.trusted()?) {
        Ok(v) => Some(v),
        // Co-signing: a release threshold above the keys given here is met later, by
        // `sign` (in place) or the detached flow; everything else must hold now.
        Err(Refusal::ReleaseSignatures {
            source: keys::TrustError::ThresholdNotMet { have, need, .. },
        }) => {
            let manifest = schemas::Manifest::parse(&bundle.head.release.payload)
                .context("the bundle just signed has an unreadable manifest")?;
            schemas::layout::check(&manifest).context("the bundle just signed does not verify")?;
            tracing::warn!(
                "{} has {have} of the {need} release signatures it needs: it verifies only once co-signed \
                 (sealift-bundler sign {} --key KEY, or --print-pae / --attach)",
                args.out.display(),
                args.out.display()
            );
            None
        }
        Err(e) => return Err(anyhow::Error::new(e).context("the bundle just signed does not verify")),
    };
    let total: u64 = bundle.entries.iter().map(|e| e.size).sum();
    let mut progress = Progress::bytes("writing", total, args.format == crate::cmd::verify::Format::Json);
    let mut size = 0;
    assemble::write_atomically(&args.out, |file| {
        // Unbuffered on purpose: blob files are copied file-to-file by the kernel
        // (copy_file_range), headers are single 512-byte writes.
        size = schemas::writer::write_archive(file, &head_entry, &bundle.entries, |n| progress.set(n))?;
        Ok(())
    })?;
    progress.finish();
    match &verified {
        Some(v) => crate::cmd::verify::print_summary(v, size, args.format, "written", &args.out),
        None => {
            let identity = schemas::Digest::of(&bundle.head.release.payload);
            match args.format {
                crate::cmd::verify::Format::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "verified": false,
                        "file": args.out,
                        "identity": identity,
                        "size": size,
                        "reason": "release threshold not met: co-sign with `sealift-bundler sign`",
                    }))?
                )?,
                crate::cmd::verify::Format::Text => {
                    outln!("written {} (not yet verifiable: co-sign it)", args.out.display())?;
                    outln!("  identity  {identity}")?;
                    outln!("  size      {size} bytes")?;
                }
            }
            Ok(())
        }
    }
}

fn pretty(v: &impl serde::Serialize) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(v)?;
    out.push(b'\n');
    Ok(out)
}
