//! A real `distribution` registry (`docker-registry serve`) on 127.0.0.1 for image-pull
//! tests, with a minimal HTTP pusher for single-layer test images.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub struct Registry {
    pub host: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(host: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(host).expect("connect to registry");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, head, response[split + 4..].to_vec())
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl Registry {
    /// Starts `docker-registry` with its own config on an ephemeral loopback port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(&host).is_ok() && request(&host, "GET", "/v2/", "text/plain", b"").0 == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {host} within 20s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { host, child, dir }
    }

    /// Restarts the registry on the same port and storage with TLS (a test CA made by the
    /// `openssl` CLI) and htpasswd basic auth; returns the CA certificate's path.
    pub fn restart_secure(&mut self, user: &str, password: &str) -> std::path::PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let d = self.dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kubesim test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(d.join("server.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n").expect("ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        let hash = Command::new("perl")
            .args(["-e", "print crypt($ENV{PW}, q{$2y$05$kubesimkubesimkubesimO})"])
            .env("PW", password)
            .output()
            .expect("perl crypt");
        let hash = String::from_utf8(hash.stdout).expect("hash");
        assert!(hash.starts_with("$2y$"), "bcrypt through crypt(3): {hash}");
        std::fs::write(d.join("htpasswd"), format!("{user}:{hash}\n")).expect("htpasswd");
        let config = d.join("secure.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}\nauth:\n  htpasswd:\n    realm: kubesim\n    path: {htpasswd}\nhttp:\n  addr: {host}\n  tls:\n    certificate: {crt}\n    key: {key}\n",
                data = d.join("data").display(),
                htpasswd = d.join("htpasswd").display(),
                host = self.host,
                crt = d.join("server.crt").display(),
                key = d.join("server.key").display(),
            ),
        )
        .expect("write secure config");
        self.child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry restarts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&self.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "secure docker-registry did not listen on {}",
                self.host
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d.join("ca.crt")
    }

    fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = digest(bytes);
        let (code, head, _) = request(
            &self.host,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            "application/octet-stream",
            b"",
        );
        assert_eq!(code, 202, "start upload: {head}");
        let location = head
            .lines()
            .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
            .expect("upload location")
            .trim()
            .to_string();
        let path = location
            .split_once(&self.host)
            .map(|(_, p)| p.to_string())
            .unwrap_or(location);
        let sep = if path.contains('?') { '&' } else { '?' };
        let (code, head, _) = request(
            &self.host,
            "PUT",
            &format!("{path}{sep}digest={d}"),
            "application/octet-stream",
            bytes,
        );
        assert_eq!(code, 201, "finish upload: {head}");
        d
    }

    /// Pushes a one-layer image `repo:tag` and returns its reference on this registry.
    pub fn push_image(&self, repo: &str, tag: &str) -> String {
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}},\"tag\":\"{tag}\"}}"
        );
        let layer = format!("layer of {repo}:{tag}");
        let config_digest = self.push_blob(repo, config.as_bytes());
        let layer_digest = self.push_blob(repo, layer.as_bytes());
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config_digest}\",\"size\":{}}},\"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{layer_digest}\",\"size\":{}}}]}}",
            config.len(),
            layer.len()
        );
        let (code, head, _) = request(
            &self.host,
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        );
        assert_eq!(code, 201, "push manifest: {head}");
        format!("{}/{repo}:{tag}", self.host)
    }
}
