//! Importing an identity the store already holds (only the head is sent; images are staged
//! again from the stored copy), a stored copy corrupted on disk, and push progress in
//! `GET /api/v1/status` — through the real CLI, the real registry and loopback proxies.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tests::oci_fixtures::{SyntheticImage, skopeo_inspect_raw};
use tests::registry::{Registry, RegistryOptions};

use crate::import::{
    ADMIN, CREATED, NOW, RunningAgent, VIEWER, Vendor, cli_import, last_audit, registry_state, snapshot, start_agent,
    start_agent_in, stderr, write_config,
};

/// A loopback TCP proxy to `upstream` that counts the bytes clients send through it and, with
/// `rate`, forwards them at most `rate` bytes per second per connection.
struct Proxy {
    url: String,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy(upstream: String, rate: Option<u64>) -> Proxy {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A small receive buffer: what the kernel takes ahead of the throttle stays small.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(32 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let (upstream, counter) = (upstream.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_r, mut client_w) = client.into_split();
                let (mut server_r, mut server_w) = server.into_split();
                let back = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match client_r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                    if server_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    if let Some(rate) = rate {
                        tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
                    }
                }
                let _ = server_w.shutdown().await;
                let _ = back.await;
            });
        }
    });
    Proxy { url, sent, task }
}

/// `sealift-agent import FILE` against `server` (a proxy in front of the agent).
async fn cli_import_via(server: &str, file: &Path) -> std::process::Output {
    let (server, file) = (server.to_owned(), file.to_owned());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sealift-agent"))
            .arg("import")
            .arg(&file)
            .args(["--server", &server, "--token", ADMIN])
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Where the head entry ends: its header, content and padding.
fn head_entry_end(file: &Path) -> u64 {
    let bytes = std::fs::read(file).unwrap();
    let header: &[u8; 512] = bytes[..512].try_into().unwrap();
    let size = schemas::tar_header::parse(header).size.unwrap();
    512 + size + schemas::tar_header::padding(size)
}

/// Empties the registry's storage (as if it had been rebuilt) and starts it again.
fn wipe(registry: &mut Registry) {
    registry.kill().unwrap();
    std::fs::remove_dir_all(registry.storage_dir()).unwrap();
    std::fs::create_dir_all(registry.storage_dir()).unwrap();
    registry.restart().unwrap();
}

/// The registry's requests that upload a blob or put a manifest.
fn uploads_in(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            (l.contains("\"POST /v2/") && l.contains("/blobs/uploads/"))
                || l.contains("\"PUT /v2/")
                || l.contains("\"PATCH /v2/")
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimporting_a_stored_identity_sends_only_the_head_and_restages_from_the_store() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &[]);
    let mut a = start_agent(&vendor, "sample-app", "10Gi", NOW).await;
    let front = proxy(a.url.trim_start_matches("http://").to_owned(), None).await;
    let size = std::fs::metadata(&v1).unwrap().len();
    let head = head_entry_end(&v1);

    let out = cli_import_via(&front.url, &v1).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let first = front.sent.swap(0, Ordering::Relaxed);
    assert!(first > size, "the first import sent {first} of {size} bytes");

    // Again: the agent verifies the head, finds the identity stored and the client stops.
    let before = snapshot(&a);
    let log_before = a.target.log().len();
    let out = cli_import_via(&front.url, &v1).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "(already imported; nothing changed; {head} bytes of it sent, the head only)"
        )),
        "{text}"
    );
    assert!(text.contains("0 blobs uploaded"), "{text}");
    assert!(
        stderr(&out).contains("the agent already holds this bundle"),
        "{}",
        stderr(&out)
    );
    let again = front.sent.load(Ordering::Relaxed);
    // The head entry plus a few KiB of HTTP requests; never the blobs.
    assert!(
        again < head + 16 * 1024 && head + 16 * 1024 < size,
        "re-import sent {again} bytes; head {head}, bundle {size}"
    );
    let after = snapshot(&a);
    assert_eq!(
        (&before.index, &before.bundles, &before.registry),
        (&after.index, &after.bundles, &after.registry)
    );
    assert!(after.uploads.is_empty(), "{:?}", after.uploads);
    let uploads = uploads_in(a.target.log().get(log_before..).unwrap_or_default());
    assert!(uploads.is_empty(), "an unchanged registry got {uploads:#?}");
    let record = last_audit(&a);
    assert_eq!(
        (record.outcome.as_str(), record.version.as_deref()),
        ("ok", Some("1.0.0"))
    );
    assert!(
        record
            .detail
            .as_deref()
            .is_some_and(|d| d.contains(&format!("already imported; {head} of {size} bytes received"))),
        "{record:?}"
    );

    // The registry lost everything: the head alone is enough to stage every image again,
    // read from the stored copy.
    wipe(&mut a.target);
    let out = cli_import_via(&front.url, &v1).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the head only"), "{text}");
    assert!(!text.contains(" 0 blobs uploaded"), "{text}");
    let stored = a.agent.store.list().remove(0);
    for image in &stored.images {
        assert!(text.contains(image), "{text}");
    }
    let head_of = schemas::inspect::read_metadata(
        &v1,
        keys::TrustedRoots::from_envelopes(&keys::root_dir::load(&vendor.roots).unwrap()).unwrap(),
    )
    .unwrap()
    .0;
    for image in &head_of.manifest().images {
        let raw = skopeo_inspect_raw(&a.target, &format!("{}:{}", image.target, image.tags[0])).unwrap();
        assert_eq!(schemas::Digest::of(&raw), image.digest, "{}", image.name);
    }

    // The head still counts byte for byte: a flipped signature byte is refused.
    let bytes = std::fs::read(&v1).unwrap();
    let text = String::from_utf8_lossy(&bytes[512..head as usize]);
    let sig = text.find("\"sig\":\"").unwrap() + 512 + 7;
    let mut flipped = bytes.clone();
    flipped[sig + 3] = if flipped[sig + 3] == b'A' { b'B' } else { b'A' };
    let file = a.dir.path().join("flipped-signature.sealift");
    std::fs::write(&file, &flipped).unwrap();
    let before = snapshot(&a);
    let out = cli_import(&a, &file, ADMIN, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(snapshot(&a), before);
    assert_eq!(last_audit(&a).outcome, "refused");

    // A byte flipped after the head is never read: the identity is what was verified and
    // stored, and the stored copy is what gets staged.
    let mut flipped = bytes;
    let last = flipped.len() - 2048;
    flipped[last] ^= 0x01;
    std::fs::write(&file, &flipped).unwrap();
    let out = cli_import(&a, &file, ADMIN, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the head only"));
    assert_eq!(
        std::fs::read(a.agent.store.path_of(&stored.identity)).unwrap(),
        std::fs::read(&v1).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_bundle_corrupted_on_disk_is_refused_when_staged_again_then_repaired() {
    let vendor = Vendor::new();
    let v1 = vendor.build_plain("1.0.0", 1, &[]);
    let mut a = start_agent(&vendor, "sample-app", "10Gi", NOW).await;
    let out = cli_import(&a, &v1, ADMIN, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Flip one byte in the middle of the largest blob (an image layer) of the stored file.
    let stored = a.agent.store.list().remove(0);
    let (layer, location) = stored
        .blobs
        .iter()
        .max_by_key(|(_, l)| l.size)
        .map(|(d, l)| (*d, *l))
        .unwrap();
    let file = a.agent.store.path_of(&stored.identity);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[(location.offset + location.size / 2) as usize] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    // The registry was rebuilt empty, so the layer must be read from the store again.
    wipe(&mut a.target);

    let before = snapshot(&a);
    let out = cli_import(&a, &v1, ADMIN, &[]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let entry = format!("blobs/sha256/{}", layer.hex());
    assert!(err.contains("(stored_bundle_corrupt)"), "{err}");
    assert!(
        err.contains(&format!(
            "stored bundle 1.0.0 ({}) is corrupt: entry {entry} (expected {layer}) hashes to sha256:",
            stored.identity
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: import the same file again: the agent now takes all of it"),
        "{err}"
    );
    // Marked corrupt in the index (and the listing); nothing else changed.
    let marked = a.agent.store.get(&stored.identity).unwrap();
    let reason = marked.corrupt.clone().expect("marked corrupt");
    assert!(
        reason.contains(&entry) && reason.contains(&layer.to_string()),
        "{reason}"
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.dir.path().join("store/index.json")).unwrap()).unwrap();
    assert_eq!(index[0]["corrupt"].as_str(), Some(reason.as_str()));
    let versions: serde_json::Value = super::harness::get_json(&format!("{}/api/v1/versions", a.url), VIEWER).await;
    assert_eq!(versions["versions"][0]["corrupt"].as_str(), Some(reason.as_str()));
    let after = snapshot(&a);
    assert_eq!(after.trust, before.trust, "the refusal moved the trust state");
    assert_eq!(after.bundles, before.bundles);
    assert!(after.uploads.is_empty());
    // No manifest or tag was pushed: the registry holds none at all.
    assert_eq!(registry_state(&a.target), Vec::<String>::new());
    // Audited as a refused import of version 1.0.0, naming the entry.
    let record = last_audit(&a);
    assert_eq!(
        (
            record.action.as_str(),
            record.outcome.as_str(),
            record.code.as_deref(),
            record.version.as_deref()
        ),
        ("import", "refused", Some("stored_bundle_corrupt"), Some("1.0.0")),
        "{record:?}"
    );
    assert!(
        record.detail.as_deref().is_some_and(|d| d.contains(&entry)),
        "{record:?}"
    );

    // The same file again: the corrupt copy no longer counts as stored, so all of it is sent,
    // verified, and replaces the copy; the images are staged.
    let out = cli_import(&a, &v1, ADMIN, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("already imported"), "{text}");
    assert_eq!(a.agent.store.get(&stored.identity).unwrap().corrupt, None);
    assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&v1).unwrap());
    let audit = a.agent.audit.read().unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.code.as_deref() == Some("repaired") && r.version.as_deref() == Some("1.0.0")),
        "{audit:#?}"
    );
    let image = &stored.images[0];
    let target = image.trim_start_matches("quay.io/");
    skopeo_inspect_raw(&a.target, target).unwrap();
}

/// The `big` product: one chart with a pod running two images whose layers are `layer` bytes
/// each, from OCI layouts. Returns the spec.
fn big_spec(dir: &Path, layer: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("chart/templates")).unwrap();
    std::fs::write(
        dir.join("chart/Chart.yaml"),
        "apiVersion: v2\nname: big\nversion: 1.0.0\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("chart/templates/pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\nspec:\n  containers:\n    - name: one\n      image: quay.io/big/one:1.0.0\n    - name: two\n      image: quay.io/big/two:1.0.0\n",
    )
    .unwrap();
    let mut images = String::new();
    for (i, name) in ["one", "two"].into_iter().enumerate() {
        let layout = dir.join(format!("layout-{name}"));
        SyntheticImage::new(&format!("big/{name}"), "1.0.0", &[layer], 40 + i as u64)
            .write_layout(&layout)
            .unwrap();
        images.push_str(&format!(
            "  - name: quay.io/big/{name}:1.0.0\n    source: {{ociLayout: {{path: {}, reference: \"1.0.0\"}}}}\n",
            layout.display()
        ));
    }
    let spec = dir.join("sealift.yaml");
    std::fs::write(
        &spec,
        format!(
            "product: big\nchart: {{path: chart, releaseName: big, namespace: big, kubeVersion: v1.33.0}}\nimages:\n{images}"
        ),
    )
    .unwrap();
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_push_progress_while_images_are_staged() {
    const LAYER: usize = 12 << 20;
    const RATE: u64 = 4 << 20;
    let vendor = Vendor::new();
    let spec = big_spec(&vendor.dir.path().join("big"), LAYER);
    let bundle = vendor.dir.path().join("big-1.0.0.sealift");
    vendor.build_into(&spec, &bundle, "1.0.0", 1, CREATED, &[]);

    // The agent reaches its registry through a proxy that forwards 4 MiB/s per connection.
    let dir = tempfile::tempdir().unwrap();
    let target = Registry::start(RegistryOptions::default()).unwrap();
    let slow = proxy(target.addr(), Some(RATE)).await;
    let cfg = write_config(dir.path(), &vendor, &target, "big", "10Gi");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!("http://{}", target.addr()), &slow.url);
    std::fs::write(&cfg, text).unwrap();
    let a: RunningAgent = start_agent_in(dir, target, NOW).await;

    let importing = tokio::spawn({
        let (url, bundle) = (a.url.clone(), bundle.clone());
        async move { cli_import_via(&url, &bundle).await }
    });
    let client = reqwest::Client::new();
    let mut seen: Vec<serde_json::Value> = Vec::new();
    loop {
        let done = importing.is_finished();
        let status: serde_json::Value = client
            .get(format!("{}/api/v1/status", a.url))
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.push(status["push"].clone());
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let out = importing.await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let field = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
    let running: Vec<&serde_json::Value> = seen.iter().filter(|s| s["running"] == true).collect();
    // Bytes, blobs and images only move forward, from the first poll to the last.
    for pair in seen.windows(2) {
        for k in ["bytesDone", "bytesUploaded", "blobsDone", "imagesDone"] {
            assert!(
                field(&pair[0], k) <= field(&pair[1], k),
                "{k} went back: {} then {}",
                pair[0],
                pair[1]
            );
        }
    }
    // The push was seen under way: bytes part done, images n/m with n < m, a rate.
    let total = field(running.first().expect("the push was never seen running"), "bytesTotal");
    assert!(total >= 2 * LAYER as u64, "bytesTotal {total}");
    let partial: Vec<&&serde_json::Value> = running
        .iter()
        .filter(|s| {
            let done = field(s, "bytesDone");
            done > 0 && done < total
        })
        .collect();
    assert!(
        partial.len() >= 3,
        "bytes seen in progress only {} times: {seen:#?}",
        partial.len()
    );
    eprintln!(
        "{} polls, {} with the push running, {} with bytes part done; rates seen: {:?}",
        seen.len(),
        running.len(),
        partial.len(),
        partial.iter().map(|s| field(s, "bytesPerSecond")).collect::<Vec<_>>()
    );
    assert!(running.iter().all(|s| field(s, "imagesTotal") == 2), "{running:#?}");
    assert!(running.iter().any(|s| field(s, "imagesDone") < 2), "{running:#?}");
    assert!(partial.iter().any(|s| field(s, "bytesPerSecond") > 0), "{partial:#?}");
    // Over the whole push the rate is the throttle's: two uploads at RATE each at most. (While
    // running it reads high at first: bytes count when handed to the upload, and the kernel's
    // socket buffers take several MiB ahead of the proxy.)
    let end = seen.last().unwrap();
    let rate = field(end, "bytesPerSecond");
    assert!(rate > 0 && rate <= 2 * RATE + RATE / 10, "final rate {rate}: {end}");
    // The final state: not running, every byte, blob and image done, the elapsed time kept.
    assert_eq!(end["running"], false, "{end}");
    assert_eq!(field(end, "bytesDone"), field(end, "bytesTotal"), "{end}");
    assert_eq!(field(end, "blobsDone"), field(end, "blobsTotal"), "{end}");
    assert_eq!((field(end, "imagesDone"), field(end, "imagesTotal")), (2, 2), "{end}");
    assert!(
        end["elapsedSeconds"].as_f64().unwrap() > (LAYER as f64 / RATE as f64) * 0.5,
        "{end}"
    );
}
