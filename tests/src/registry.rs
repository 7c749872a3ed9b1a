//! A real `distribution` registry (`docker-registry serve`) on 127.0.0.1 with an ephemeral
//! port, its own config, storage and log in a temporary directory; anonymous or htpasswd
//! (bcrypt via the system `crypt(3)` through perl), plain HTTP or TLS with a test CA made by
//! the `openssl` CLI. Killed on drop; can be killed and restarted on the same port and storage.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

/// How clients authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    Anonymous,
    Htpasswd {
        user: String,
        password: String,
    },
    /// `auth.token`: clients get bearer tokens from `realm` (a token server the test runs)
    /// with basic `user`/`password`; the registry checks their signature against
    /// `root_cert_bundle` and their `service` and `issuer` claims.
    Token {
        user: String,
        password: String,
        realm: String,
        service: String,
        issuer: String,
        root_cert_bundle: PathBuf,
    },
}

/// What kind of registry to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    pub auth: RegistryAuth,
    pub tls: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            auth: RegistryAuth::Anonymous,
            tls: false,
        }
    }
}

/// How long to wait for the registry to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry. Dropping it kills the process.
#[derive(Debug)]
pub struct Registry {
    dir: tempfile::TempDir,
    options: RegistryOptions,
    port: u16,
    child: Option<Child>,
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until it answers.
    pub fn start(options: RegistryOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sealift-registry-")
            .tempdir()
            .context("creating registry tempdir")?;
        fs_err::create_dir_all(dir.path().join("storage"))?;
        if options.tls {
            make_tls_material(dir.path())?;
        }
        if let RegistryAuth::Htpasswd { user, password } = &options.auth {
            let line = htpasswd_line(user, password)?;
            fs_err::write(dir.path().join("htpasswd"), line)?;
        }
        let mut registry = Self {
            dir,
            options,
            port: free_port()?,
            child: None,
        };
        let mut attempts = 0;
        loop {
            let log_before = registry.log().len();
            match registry.launch() {
                Ok(()) => return Ok(registry),
                Err(e) => {
                    // Another process may have taken the port between probe and bind.
                    let in_use = registry
                        .log()
                        .get(log_before..)
                        .is_some_and(|l| l.contains("address already in use"));
                    registry.kill()?;
                    attempts += 1;
                    if !in_use || attempts >= 5 {
                        return Err(e.context("starting docker-registry"));
                    }
                    registry.port = free_port()?;
                }
            }
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// The test CA that signed the server certificate (TLS only).
    pub fn ca_pem_path(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.path().join("certs").join("ca.crt"))
    }

    /// A directory holding only `ca.crt`, as `skopeo --*-cert-dir` wants (TLS only).
    pub fn cert_dir(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.path().join("certs"))
    }

    /// `(user, password)` for htpasswd registries, and the token server's for token ones.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match &self.options.auth {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Htpasswd { user, password } | RegistryAuth::Token { user, password, .. } => {
                Some((user, password))
            }
        }
    }

    /// A docker `config.json` in the registry's tempdir holding its credentials (or none).
    pub fn docker_config(&self) -> Result<PathBuf> {
        docker_config_for(self.dir.path(), &self.addr(), self.credentials())
    }

    /// The registry's storage root.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's log (stdout and stderr, across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    pub fn log(&self) -> String {
        fs_err::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The registry's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process (SIGKILL) and waits for it. Storage and port are kept.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // It may have exited already; kill then reports an error we don't care about.
            let _ = child.kill();
            child.wait().context("waiting for docker-registry to exit")?;
        }
        Ok(())
    }

    /// Starts the registry again on the same port with the same storage.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.launch()
            .with_context(|| format!("restarting docker-registry on {}", self.addr()))
    }

    fn launch(&mut self) -> Result<()> {
        let config = self.dir.path().join("config.yml");
        fs_err::write(&config, self.config_yaml())?;
        let log = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let err = log.file().try_clone().context("cloning the registry log handle")?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.into_parts().0))
            .stderr(Stdio::from(err))
            .env_remove("REGISTRY_HTTP_ADDR")
            .spawn()
            .context("running docker-registry (is the `docker-registry` package installed?)")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if !self.is_running() {
                bail!(
                    "docker-registry exited during startup; log {}:\n{}",
                    self.log_path().display(),
                    self.log()
                );
            }
            if let Some(status) = self.probe()
                && (status == 200 || status == 401)
            {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "docker-registry on {} did not answer GET /v2/ within {:?}; log {}:\n{}",
                    self.addr(),
                    READY_TIMEOUT,
                    self.log_path().display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The HTTP status of `GET /v2/`, if it answered.
    fn probe(&self) -> Option<u16> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--noproxy",
            "*",
            "--max-time",
            "2",
        ]);
        if let Some(ca) = self.ca_pem_path() {
            cmd.arg("--cacert").arg(ca);
        }
        cmd.arg(format!("{}/v2/", self.url()));
        let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .ok()
            .filter(|s| *s != 0)
    }

    fn config_yaml(&self) -> String {
        let d = self.dir.path().display();
        let mut y = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {d}/storage\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: sealift-test-registry\n",
            port = self.port
        );
        if self.options.tls {
            y.push_str(&format!(
                "  tls:\n    certificate: {d}/tls/server.crt\n    key: {d}/tls/server.key\n"
            ));
        }
        match &self.options.auth {
            RegistryAuth::Anonymous => {}
            RegistryAuth::Htpasswd { .. } => y.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: sealift-test\n    path: {d}/htpasswd\n"
            )),
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                root_cert_bundle,
                ..
            } => y.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                root_cert_bundle.display()
            )),
        }
        y
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `DIR/docker-config/config.json` with `auths` for `host` when credentials are given.
pub fn docker_config_for(dir: &Path, host: &str, credentials: Option<(&str, &str)>) -> Result<PathBuf> {
    use base64::Engine as _;
    let config_dir = dir.join("docker-config");
    fs_err::create_dir_all(&config_dir)?;
    let path = config_dir.join("config.json");
    let value = match credentials {
        Some((user, password)) => {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            serde_json::json!({ "auths": { host: { "auth": auth } } })
        }
        None => serde_json::json!({ "auths": {} }),
    };
    fs_err::write(&path, serde_json::to_vec_pretty(&value)?)?;
    Ok(path)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A bcrypt htpasswd line, made with the system `crypt(3)` (libxcrypt) through perl, which
/// every Debian system has; distribution accepts only bcrypt.
fn htpasswd_line(user: &str, password: &str) -> Result<String> {
    ensure!(
        !user.contains(':') && !user.contains('\n'),
        "htpasswd user may not contain ':' or newlines"
    );
    const ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut salt = String::new();
    for i in 0..22 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // The last character carries only 2 bits: keep it in the set bcrypt round-trips.
        let c = if i == 21 {
            b"Oeu."[(seed % 4) as usize]
        } else {
            ALPHABET[(seed % 64) as usize]
        };
        salt.push(c as char);
    }
    let out = Command::new("perl")
        .args(["-e", "print crypt($ENV{SEALIFT_PW}, $ENV{SEALIFT_SALT})"])
        .env("SEALIFT_PW", password)
        .env("SEALIFT_SALT", format!("$2b$05${salt}"))
        .stdin(Stdio::null())
        .output()
        .context("running perl to hash the htpasswd password")?;
    let hash = String::from_utf8(out.stdout).context("perl printed a non-UTF-8 hash")?;
    ensure!(
        out.status.success() && hash.starts_with("$2b$05$") && hash.len() == 60,
        "crypt(3) made no bcrypt hash: {hash:?}"
    );
    Ok(format!("{user}:{hash}\n"))
}

/// Makes `certs/ca.crt` (a test CA) and `tls/server.{crt,key}` for 127.0.0.1 and localhost.
pub fn make_tls_material(dir: &Path) -> Result<()> {
    let certs = dir.join("certs");
    let tls = dir.join("tls");
    fs_err::create_dir_all(&certs)?;
    fs_err::create_dir_all(&tls)?;
    let ca_key = tls.join("ca.key");
    let ca_crt = certs.join("ca.crt");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=Sealift Test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        path_str(&ca_key)?,
        "-out",
        path_str(&ca_crt)?,
    ])?;
    let key = tls.join("server.key");
    let csr = tls.join("server.csr");
    let crt = tls.join("server.crt");
    let ext = tls.join("server.ext");
    fs_err::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )?;
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
        path_str(&key)?,
        "-out",
        path_str(&csr)?,
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        path_str(&csr)?,
        "-CA",
        path_str(&ca_crt)?,
        "-CAkey",
        path_str(&ca_key)?,
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        path_str(&ext)?,
        "-out",
        path_str(&crt)?,
    ])?;
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().with_context(|| format!("non-UTF-8 path {}", p.display()))
}

fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running openssl")?;
    ensure!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
