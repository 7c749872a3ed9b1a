//! `sealift-testkit`: the demo and the benchmark fixtures, on loopback only.
//!
//! - `demo BUNDLER`: a vendor's and an operator's day, end to end, with the real registry,
//!   skopeo, the Helm engine and `sealift-bundler`.
//! - `synth-layout DIR BYTES`: an OCI layout with one image of incompressible layers.
//! - `sparse-bundle OUT BYTES --key K --root-dir R`: a bundle with a real signed head whose
//!   one blob is a sparse hole (for timing `inspect` on huge files).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use tests::oci_fixtures::{SyntheticImage, skopeo_inspect_raw};
use tests::registry::{Registry, RegistryOptions};
use tests::sample;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["demo", bundler, agent, out] => demo(Path::new(bundler), Path::new(agent), Path::new(out)),
        ["synth-layout", dir, bytes] => synth_layout(Path::new(dir), bytes.parse()?),
        ["sparse-bundle", out, bytes, "--key", key, "--root-dir", roots] => {
            sparse_bundle(Path::new(out), bytes.parse()?, Path::new(key), Path::new(roots))
        }
        _ => bail!(
            "usage: sealift-testkit demo BUNDLER AGENT OUTDIR | synth-layout DIR BYTES | sparse-bundle OUT BYTES --key K --root-dir R"
        ),
    }
}

/// Runs a command, echoing it like a shell session; fails unless it exits 0.
fn step(title: &str, cmd: &mut Command) -> Result<String> {
    println!("\n## {title}");
    let shown: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!("$ {}", shown.join(" "));
    let out = cmd.output().with_context(|| format!("cannot run {}", shown[0]))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "{title}: exit status {}", out.status);
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn demo(bundler: &Path, agent: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        fs_err::remove_dir_all(out)?;
    }
    fs_err::create_dir_all(out)?;
    let out = fs_err::canonicalize(out)?;
    println!(
        "# Sealift demo — everything runs on 127.0.0.1; output in {}",
        out.display()
    );

    println!("\n## A vendor registry on loopback (the real `distribution`), seeded with skopeo");
    let registry = Registry::start(RegistryOptions::default())?;
    sample::seed_sample_images(&registry, &out.join("layouts"))?;
    println!(
        "registry {} holds quay.io/sealift-sample/{{web,api,db}}:{{1.0.0,2.0.0,3.0.0}} (web is multi-arch)",
        registry.addr()
    );

    let keys = out.join("keys");
    let roots = out.join("roots");
    step(
        "Keys: an offline root key and a CI release key",
        Command::new(bundler)
            .args(["keygen", "--name", "root", "--out"])
            .arg(&keys),
    )?;
    step(
        "",
        Command::new(bundler)
            .args(["keygen", "--name", "release", "--out"])
            .arg(&keys),
    )?;
    step(
        "The root of trust, 1.root.json",
        Command::new(bundler)
            .args(["root", "init", "--root-dir"])
            .arg(&roots)
            .arg("--root-key")
            .arg(keys.join("root.key"))
            .arg("--release-pub")
            .arg(keys.join("release.pub")),
    )?;

    let helm_dir = sample::helm_stand_in()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = format!("{}:{}", helm_dir.display(), std::env::var("PATH").unwrap_or_default());
    let override_arg = format!("{}={}", sample::SAMPLE_IMAGE_HOST, registry.addr());
    let mut bundles = Vec::new();
    for (i, version) in ["1.0.0", "2.0.0", "3.0.0"].iter().enumerate() {
        let file = out.join(format!("sample-app-{version}.sealift"));
        // The sample app as vendors write it, its backup and restore steps given the commands
        // the simulator runs in place of the database image (test-only annotations).
        let spec = sample::simulated_spec(version, &out.join(format!("spec-{version}")))?;
        step(
            &format!("Build sample-app {version} (helm template ×4, images pulled through the mirror, signed)"),
            Command::new(bundler)
                .env("PATH", &path)
                .env("SOURCE_DATE_EPOCH", "1767225600")
                .arg("build")
                .arg(&spec)
                .args([
                    "--version",
                    version,
                    "--sequence",
                    &(i + 1).to_string(),
                    "--valid-for",
                    "365d",
                ])
                .arg("--key")
                .arg(keys.join("release.key"))
                .arg("--root-dir")
                .arg(&roots)
                .arg("--out")
                .arg(&file)
                .args(["--registry-override", &override_arg])
                // Simulator annotations: the data steps' commands, and 3.0.0's crash loop.
                .arg("--allow-simulator-annotations"),
        )?;
        bundles.push(file);
    }
    let first = &bundles[0];
    step(
        "The customer's operator verifies on the low side",
        Command::new(bundler)
            .arg("verify")
            .arg(first)
            .arg("--root-dir")
            .arg(&roots)
            .args(["--product", "sample-app"]),
    )?;
    step(
        "Inspect reads only the head and metadata",
        Command::new(bundler)
            .arg("inspect")
            .arg(first)
            .arg("--root-dir")
            .arg(&roots),
    )?;
    step("A bundle is a plain tar", Command::new("tar").arg("tf").arg(first))?;

    let layout = out.join("extracted");
    fs_err::create_dir_all(&layout)?;
    step(
        "…and `tar x` gives an OCI layout",
        Command::new("tar").arg("xf").arg(first).arg("-C").arg(&layout),
    )?;
    step(
        "skopeo reads an image straight from it",
        Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .arg(format!("oci:{}:sealift-sample/api:1.0.0", layout.display())),
    )?;

    let tampered = out.join("tampered.sealift");
    let mut bytes = fs_err::read(first)?;
    let at = bytes.len() - 3000;
    bytes[at] ^= 0x01;
    fs_err::write(&tampered, &bytes)?;
    println!("\n## One flipped bit at byte {at} is refused with the exact reason");
    let refused = Command::new(bundler)
        .arg("verify")
        .arg(&tampered)
        .arg("--root-dir")
        .arg(&roots)
        .output()?;
    eprint!("{}", String::from_utf8_lossy(&refused.stderr));
    ensure!(refused.status.code() == Some(1), "the tampered bundle was not refused");
    println!("exit status {}", refused.status.code().unwrap_or(-1));

    customer_side(agent, &out, &roots, &bundles, &tampered)?;
    println!("\n# Demo complete: bundles in {}", out.display());
    Ok(())
}

/// kubectl 1.33 beside the machine image's kubectl dispatcher, else whatever `kubectl` is.
const KUBECTL_133: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

/// Starts the `kubesim` binary next to the agent's; returns it and its kubeconfig path.
fn start_simulator(agent: &Path, registry: &str) -> Result<(std::process::Child, PathBuf)> {
    use std::io::BufRead as _;
    let kubesim = agent.with_file_name("kubesim");
    let mut child = Command::new(&kubesim)
        .env("KUBESIM_REGISTRY", registry)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", kubesim.display()))?;
    let stdout = child.stdout.take().context("kubesim stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    Ok((child, PathBuf::from(line.trim())))
}

/// The dark cluster: an agent with its own registry imports the bundles and runs upgrades
/// against the Kubernetes API simulator.
fn customer_side(agent: &Path, out: &Path, roots: &Path, bundles: &[PathBuf], tampered: &Path) -> Result<()> {
    println!("\n# The dark cluster: sealift-agent and the cluster's registry");
    let cluster_registry = Registry::start(RegistryOptions::default())?;
    let dir = out.join("agent");
    fs_err::create_dir_all(&dir)?;
    let token = "demo-admin-token-0123456789";
    fs_err::write(dir.join("admin.token"), token)?;
    fs_err::copy(roots.join("1.root.json"), dir.join("root.json"))?;
    let (mut sim, kubeconfig) = start_simulator(agent, &cluster_registry.addr())?;
    let kubectl = if Path::new(KUBECTL_133).exists() {
        KUBECTL_133
    } else {
        "kubectl"
    };
    let namespace = out.join("namespace.yaml");
    fs_err::write(
        &namespace,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sealift-system\n",
    )?;
    step(
        "A Kubernetes cluster (the project's API simulator) with the agent's namespace",
        Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["apply", "--server-side", "-f"])
            .arg(&namespace),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = format!(
        "listen: 127.0.0.1:{port}\nstore: {{dir: store, maxBytes: 10Gi, reserveBytes: 0}}\ntrust: {{root: root.json, product: sample-app}}\nregistry: {{url: \"http://{}\", insecure: true}}\ntokens: {{admin: [{{name: admin, tokenFile: admin.token}}]}}\nkubernetes: {{namespace: sealift-system, kubeconfig: {}, leaseDuration: 10s, waveTimeout: 2m, pollInterval: 250ms, agentUrl: \"http://127.0.0.1:{port}\"}}\n",
        cluster_registry.addr(),
        kubeconfig.display()
    );
    fs_err::write(dir.join("agent.yaml"), &config)?;
    println!("agent.yaml:\n{config}");
    let mut server = Command::new(agent)
        .args(["serve", "--config"])
        .arg(dir.join("agent.yaml"))
        .spawn()?;
    let result = (|| -> Result<()> {
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                std::time::Instant::now() < deadline,
                "the agent did not start listening"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        println!(
            "\nThe agent's admin page: open {url}/ in a browser and sign in with the token {token}\n\
             (it serves while the demo runs; SEALIFT_DEMO_SERVE=1 keeps it serving at the end until Ctrl-C)"
        );
        println!("\n## A tampered bundle is refused by the agent too, and nothing changes");
        let refused = Command::new(agent)
            .arg("import")
            .arg(tampered)
            .args(["--server", &url, "--token", token])
            .output()?;
        eprint!("{}", String::from_utf8_lossy(&refused.stderr));
        ensure!(refused.status.code() == Some(1), "the agent accepted a tampered bundle");
        for b in bundles {
            step(
                "The admin imports a bundle (resumable upload, verified as it arrives, images pushed)",
                Command::new(agent)
                    .arg("import")
                    .arg(b)
                    .args(["--server", &url, "--token", token]),
            )?;
        }
        step(
            "Imported versions, newest first",
            Command::new(agent).args(["versions", "--server", &url, "--token", token]),
        )?;
        step(
            "The audit log",
            Command::new(agent).args(["audit", "--server", &url, "--token", token]),
        )?;
        let raw = skopeo_inspect_raw(&cluster_registry, "sealift-sample/web:2.0.0")?;
        println!(
            "\ncluster registry: sealift-sample/web:2.0.0 is {} ({} bytes), pushed byte for byte",
            schemas::Digest::of(&raw),
            raw.len()
        );
        let remote = ["--server", url.as_str(), "--token", token];
        step(
            "Install 1.0.0 from nothing (the admin types the version)",
            Command::new(agent).args(["upgrade", "1.0.0", "--wait"]).args(remote),
        )?;
        step(
            "Upgrade to 2.0.0 (pre-upgrade migration Job, waves, prune)",
            Command::new(agent).args(["upgrade", "2.0.0", "--wait"]).args(remote),
        )?;
        println!("\n## Upgrade to 3.0.0, whose web pods crash-loop: it fails fast and rolls back by itself");
        let failed = Command::new(agent)
            .args(["upgrade", "3.0.0", "--wait"])
            .args(remote)
            .output()?;
        print!("{}", String::from_utf8_lossy(&failed.stdout));
        eprint!("{}", String::from_utf8_lossy(&failed.stderr));
        ensure!(failed.status.code() == Some(1), "the failing upgrade reported success");
        step("Status", Command::new(agent).arg("status").args(remote))?;
        step("History", Command::new(agent).arg("history").args(remote))?;
        step(
            "Backups: the release engine took one before each upgrade",
            Command::new(agent).args(["backup", "list"]).args(remote),
        )?;
        println!("\n## An on-demand backup, exported as one signed file, then restored");
        let created = Command::new(agent)
            .args(["backup", "create", "--wait"])
            .args(remote)
            .output()?;
        print!("{}", String::from_utf8_lossy(&created.stdout));
        eprint!("{}", String::from_utf8_lossy(&created.stderr));
        ensure!(created.status.success(), "the backup failed");
        let stdout = String::from_utf8_lossy(&created.stdout).into_owned();
        let ts = stdout
            .split_whitespace()
            .nth(1)
            .context("`backup create` printed no timestamp")?
            .to_owned();
        step(
            "Export it (for another cluster, or safekeeping)",
            Command::new(agent)
                .args(["backup", "export", &ts, "-o"])
                .arg(out.join(format!("sealift-backup-{ts}.tar")))
                .args(remote),
        )?;
        step(
            "Restore it: its version re-rendered from the signed bundle, then only its data",
            Command::new(agent)
                .args(["restore", &ts, "--yes", "--wait"])
                .args(remote),
        )?;
        step(
            "The real kubectl against the cluster",
            Command::new(kubectl).arg("--kubeconfig").arg(&kubeconfig).args([
                "get",
                "sealiftreleases",
                "-n",
                "sealift-system",
            ]),
        )?;
        step(
            "",
            Command::new(kubectl).arg("--kubeconfig").arg(&kubeconfig).args([
                "get",
                "deployments,statefulsets,jobs",
                "-n",
                "sample",
            ]),
        )?;
        if std::env::var_os("SEALIFT_DEMO_SERVE").is_some() {
            println!("\n## The admin page\nopen {url}/ and sign in with the token {token}; Ctrl-C ends the demo");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    // SIGTERM lets the simulator remove its kubeconfig directory.
    let _ = Command::new("kill").arg(sim.id().to_string()).status();
    let _ = sim.wait();
    result
}

fn synth_layout(dir: &Path, bytes: u64) -> Result<()> {
    const LAYER: u64 = 256 << 20;
    let count = bytes.div_ceil(LAYER).max(1);
    let layers: Vec<usize> = (0..count).map(|i| (LAYER.min(bytes - i * LAYER)) as usize).collect();
    let built = SyntheticImage::new("bench/big", "1.0.0", &layers, 4242).write_layout(dir)?;
    println!("{}", built.digest);
    Ok(())
}

fn sparse_bundle(out: &Path, bytes: u64, key: &Path, roots: &Path) -> Result<()> {
    use schemas::entry::EntryPath;
    use schemas::manifest::{ChartInfo, EntryRecord, ImageRecord, Manifest, SCHEMA_VERSION};
    use schemas::release::{Migrations, NamespaceVariable, UpgradePolicy, Variables};
    use schemas::writer::{Content, EntrySource};
    use schemas::{Digest, Timestamp, entry, oci};

    let key = keys::SigningKey::load(key, keys::PASSPHRASE_ENV)?;
    let root_envelopes = keys::root_dir::load(roots)?;
    // The blob's digest is never checked by `inspect`, which stops before blobs.
    let manifest_blob = br#"{"schemaVersion":2}"#.to_vec();
    let big = Digest::of(b"sparse placeholder");
    let image = ImageRecord {
        name: "quay.io/bench/huge:1.0.0".parse()?,
        target: "bench/huge".parse()?,
        tags: vec!["1.0.0".into()],
        digest: Digest::of(&manifest_blob),
        source_digest: None,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: manifest_blob.len() as u64,
        platforms: vec![],
        total_size: manifest_blob.len() as u64 + bytes,
        blobs: vec![Digest::of(&manifest_blob), big],
    };
    let variables = Variables {
        release_name: "huge".into(),
        namespace: NamespaceVariable {
            default: "huge".into(),
            slots: vec![],
        },
        variables: vec![],
    };
    let migrations = Migrations {
        steps: vec![],
        upgrade_policy: UpgradePolicy::default(),
        waves: vec![],
    };
    let metas = [
        (entry::CHART_PATH, b"chart".to_vec()),
        (
            entry::RENDER_PATH,
            b"---\n# Source: huge/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\n".to_vec(),
        ),
        (entry::VARIABLES_PATH, serde_json::to_vec(&variables)?),
        (entry::MIGRATIONS_PATH, serde_json::to_vec(&migrations)?),
        (entry::OCI_LAYOUT_PATH, oci::layout_file()),
        (entry::OCI_INDEX_PATH, oci::index_file(std::slice::from_ref(&image))),
    ];
    let mut records = Vec::new();
    let mut sources = Vec::new();
    for (p, b) in metas.into_iter().chain([("", manifest_blob.clone())]) {
        let path: EntryPath = if p.is_empty() {
            EntryPath::blob(&Digest::of(&b))
        } else {
            p.parse()?
        };
        records.push(EntryRecord {
            path: path.clone(),
            size: b.len() as u64,
            digest: Digest::of(&b),
        });
        sources.push(EntrySource {
            path,
            size: b.len() as u64,
            content: Content::Bytes(b),
        });
    }
    records.push(EntryRecord {
        path: EntryPath::blob(&big),
        size: bytes,
        digest: big,
    });
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        product: "bench".parse()?,
        version: semver::Version::new(1, 0, 0),
        sequence: 1,
        min_sequence: 0,
        created: Timestamp::from_unix(1_767_225_600)?,
        expires: Timestamp::from_unix(1_767_225_600 + 86_400 * 3650)?,
        chart: ChartInfo {
            name: "huge".into(),
            version: "1.0.0".into(),
            app_version: None,
            release_name: "huge".into(),
            namespace: "huge".into(),
            kube_version: "v1.33.0".into(),
            api_versions: vec![],
            helm_version: "none".into(),
        },
        entries: records,
        images: vec![image],
        image_locations: vec![],
    };
    let mut release = keys::Envelope::new(keys::MANIFEST_PAYLOAD_TYPE, manifest.to_payload());
    release.sign(&key)?;
    let head = schemas::head::Head {
        roots: root_envelopes,
        release,
    };
    let mut file = std::io::BufWriter::new(fs_err::File::create(out)?);
    schemas::writer::write_archive(&mut file, &head.to_entry(), &sources, |_| {})?;
    let mut file = file.into_inner().map_err(|e| e.into_error())?;
    // The archive writer appended end blocks; replace them with the big entry's header and a hole.
    use std::io::{Seek, SeekFrom, Write};
    let end = file.seek(SeekFrom::End(0))? - 1024;
    file.seek(SeekFrom::Start(end))?;
    file.write_all(&schemas::tar_header::encode(EntryPath::blob(&big).as_str(), bytes))?;
    let total = end + 512 + bytes + schemas::tar_header::padding(bytes) + 1024;
    file.set_len(total)?;
    println!("{}: {} bytes, sparse", PathBuf::from(out).display(), total);
    Ok(())
}
