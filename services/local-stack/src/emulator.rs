//! The local AWS emulator (ministack), as a child process we own.
//!
//! Installed pinned into a private virtualenv under `target/`, started on a free loopback port
//! (never on all interfaces, never on a fixed port), health-checked, and stopped with its whole
//! process group (its Lambda workers included) when the handle is dropped or `stop` is called.
//!
//! By default it enforces authorisation as AWS does (`AUTH=true`: SigV4, identity policies,
//! permissions boundaries, resource policies) and serves HTTPS only, with a certificate of a
//! certificate authority made for this emulator alone: bucket and queue policies deny requests
//! that do not use TLS, as they do on AWS. Every client of the stack trusts that authority (the
//! Lambda workers through `SSL_CERT_FILE`). `emulator/launch.py` starts it, and records every
//! authorisation decision when asked to.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Error;

/// Where state for a run lives: `target/local/<name>/`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub target: PathBuf,
    pub requirements: PathBuf,
    /// `services/local-stack/emulator/launch.py`.
    pub launcher: PathBuf,
}

impl Paths {
    /// Paths relative to a workspace root.
    pub fn for_workspace(root: &Path) -> Self {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Paths {
            target,
            requirements: root.join(".ci/requirements-local.txt"),
            launcher: root.join("services/local-stack/emulator/launch.py"),
        }
    }
}

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct Options {
    /// Enforce authorisation and serve HTTPS only (the default); off only for debugging.
    pub authorization: bool,
    /// Append every authorisation decision to this file (JSON lines), for `cargo xtask authz`.
    pub record: Option<PathBuf>,
    /// Where the Lambda workers send their AWS calls, when not to the emulator itself (the fault
    /// injector in front of it).
    pub workers_endpoint: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            authorization: true,
            record: None,
            workers_endpoint: None,
        }
    }
}

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    child: Option<Child>,
    pub port: u16,
    pub endpoint: String,
    pub log: PathBuf,
    /// The PEM certificate of the authority that signed the emulator's TLS certificate, when it
    /// serves HTTPS; every client must trust it.
    pub ca_certificate: Option<PathBuf>,
    /// Its TLS certificate and key (for a proxy in front of it on the same host).
    pub tls: Option<TlsMaterial>,
    /// Whether it enforces authorisation.
    pub authorization: bool,
}

/// Installs the pinned emulator into `target/venv/ministack` if needed; returns the venv.
pub fn install(paths: &Paths) -> Result<PathBuf, Error> {
    let venv = venv(&paths.target, "ministack", &paths.requirements)?;
    if !venv.join("bin/ministack").is_file() {
        return Err(Error::Emulator(format!(
            "{} has no ministack after installing {}",
            venv.display(),
            paths.requirements.display()
        )));
    }
    Ok(venv)
}

/// A Python virtualenv `target/venv/<name>` with exactly `requirements` installed (with
/// `--require-hashes` when the file pins hashes); reinstalled only when the file changes.
pub fn venv(target: &Path, name: &str, requirements: &Path) -> Result<PathBuf, Error> {
    let venv = target.join("venv").join(name);
    let stamp = venv.join(".requirements");
    let want = std::fs::read_to_string(requirements).map_err(|e| Error::io(requirements, e))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(venv);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    run_quiet(
        Command::new(&python)
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        &format!("creating the virtualenv {}", venv.display()),
    )?;
    let mut pip = Command::new(venv.join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    if want.contains("--hash=") {
        pip.arg("--require-hashes");
    }
    run_quiet(
        pip.arg("-r").arg(requirements),
        &format!("installing {}", requirements.display()),
    )?;
    std::fs::write(&stamp, want).map_err(|e| Error::io(&stamp, e))?;
    Ok(venv)
}

fn run_quiet(cmd: &mut Command, what: &str) -> Result<(), Error> {
    let out = cmd
        .output()
        .map_err(|e| Error::Emulator(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Emulator(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A free port on the loopback interface.
pub fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Emulator(format!("finding a free loopback port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| Error::Emulator(e.to_string()))?
        .port())
}

impl Emulator {
    /// Installs (if needed) and starts the emulator on a free loopback port; waits for health.
    pub fn start(paths: &Paths, options: &Options) -> Result<Emulator, Error> {
        let venv = install(paths)?;
        let port = free_port()?;
        let dir = paths.target.join("local").join(format!("emulator-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let log = dir.join("emulator.log");
        let log_file = std::fs::File::create(&log).map_err(|e| Error::io(&log, e))?;
        let mut cmd = Command::new(venv.join("bin/python"));
        cmd.arg(&paths.launcher);
        // A clean environment: the emulator passes its own to every Lambda worker it starts.
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("GATEWAY_PORT", port.to_string())
            .env("BIND_HOST", "127.0.0.1")
            .env("LOG_LEVEL", "WARNING")
            .env("IOT_MTLS_ENABLED", "0")
            .env("SFTP_ENABLED", "0")
            .env("TMPDIR", &dir)
            .env("MINISTACK_REGION", crate::REGION)
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON");
        let (endpoint, tls) = if options.authorization {
            let tls = tls_material(&dir.join("tls"))?;
            cmd.env("AUTH", "true")
                .env("USE_SSL", "1")
                .env("MINISTACK_SSL_CERT", &tls.certificate)
                .env("MINISTACK_SSL_KEY", &tls.key)
                // The Lambda workers' SDK (rustls with the platform's roots) trusts exactly this.
                .env("SSL_CERT_FILE", &tls.ca_certificate);
            (format!("https://127.0.0.1:{port}"), Some(tls))
        } else {
            (format!("http://127.0.0.1:{port}"), None)
        };
        let ca_certificate = tls.as_ref().map(|t| t.ca_certificate.clone());
        if let Some(record) = &options.record {
            cmd.env("EVENTPIPE_AUTHZ_RECORD", record);
        }
        // Lambda workers reach the emulator through this, with the official SDKs.
        cmd.env(
            "AWS_ENDPOINT_URL",
            options.workers_endpoint.as_deref().unwrap_or(&endpoint),
        )
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| Error::io(&log, e))?)
        .stderr(log_file)
        // Its own process group, so that stopping it stops its Lambda workers too.
        .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| Error::Emulator(format!("starting ministack: {e}")))?;
        let mut emulator = Emulator {
            child: Some(child),
            port,
            endpoint,
            log,
            ca_certificate,
            tls,
            authorization: options.authorization,
        };
        emulator.wait_healthy(Duration::from_secs(30))?;
        Ok(emulator)
    }

    /// Attaches to an emulator started earlier (`local up --detach`); it is not stopped on drop.
    pub fn attach(endpoint: &str, ca_certificate: Option<PathBuf>) -> Result<Emulator, Error> {
        let port = endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Error::Emulator(format!("no port in the endpoint {endpoint}")))?;
        let emulator = Emulator {
            child: None,
            port,
            endpoint: endpoint.to_owned(),
            log: PathBuf::new(),
            authorization: ca_certificate.is_some(),
            ca_certificate,
            tls: None,
        };
        if !emulator.healthy() {
            return Err(Error::Emulator(format!(
                "no healthy emulator at {endpoint}: start one with `cargo xtask local up`"
            )));
        }
        Ok(emulator)
    }

    fn wait_healthy(&mut self, limit: Duration) -> Result<(), Error> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Emulator(format!(
                    "ministack exited with {status}; see {}",
                    self.log.display()
                )));
            }
            if self.healthy() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::Emulator(format!(
            "ministack was not healthy after {limit:?}; see {}",
            self.log.display()
        )))
    }

    /// `GET /_ministack/health` answers 200.
    pub fn healthy(&self) -> bool {
        self.request("GET", "/_ministack/health")
            .is_ok_and(|(status, _)| status == 200)
    }

    /// Wipes all state (streams, buckets, tables, functions, queues…) and stops Lambda workers.
    pub fn reset(&self) -> Result<(), Error> {
        match self.request("POST", "/_ministack/reset") {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(Error::Emulator(format!("reset answered {status}: {body}"))),
            Err(e) => Err(Error::Emulator(format!("reset: {e}"))),
        }
    }

    /// A request to the emulator's own endpoints, over TLS when it serves HTTPS.
    fn request(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        match &self.ca_certificate {
            None => http(stream, self.port, method, path),
            Some(ca) => {
                let config = tls_client_config(ca)?;
                let name =
                    rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
                let connection =
                    rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
                http(
                    rustls::StreamOwned::new(connection, stream),
                    self.port,
                    method,
                    path,
                )
            }
        }
    }

    /// Detaches: the emulator keeps running after this handle is gone.
    pub fn detach(mut self) -> Option<u32> {
        self.child.take().map(|c| c.id())
    }

    /// Stops the emulator and everything it started.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(child.id());
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            kill_group(child.id());
            let _ = child.wait();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM to a process group (the emulator and its Lambda workers).
pub fn stop_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// A minimal HTTP/1.1 request to the emulator's own endpoints.
fn http(
    mut s: impl Read + Write,
    port: u16,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    s.flush()?;
    let mut response = Vec::new();
    match s.read_to_end(&mut response) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify still sent the whole response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e),
    }
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A rustls client configuration that trusts only `ca` (a PEM file).
fn tls_client_config(ca: &Path) -> std::io::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", ca.display())))?
    {
        roots
            .add(cert.map_err(|e| std::io::Error::other(format!("{}: {e}", ca.display())))?)
            .map_err(std::io::Error::other)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The emulator's TLS material: a certificate authority of its own and a server certificate for
/// 127.0.0.1 that it signed.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub ca_certificate: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// Makes the TLS material in `dir` with the `openssl` command (ministack needs it for TLS too).
fn tls_material(dir: &Path) -> Result<TlsMaterial, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = |name: &str| dir.join(name);
    let extensions = path("server.ext");
    std::fs::write(
        &extensions,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .map_err(|e| Error::io(&extensions, e))?;
    let (ca_key, ca_pem, key, csr, pem) = (
        path("ca.key"),
        path("ca.pem"),
        path("server.key"),
        path("server.csr"),
        path("server.pem"),
    );
    run_quiet(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            ])
            .args(["-subj", "/CN=eventpipe local emulator CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_pem),
        "making the emulator's certificate authority with openssl",
    )?;
    run_quiet(
        Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        "making the emulator's certificate request with openssl",
    )?;
    run_quiet(
        Command::new("openssl")
            .args(["x509", "-req", "-CAcreateserial", "-days", "30"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca_pem)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-out")
            .arg(&pem)
            .arg("-extfile")
            .arg(&extensions),
        "signing the emulator's certificate with openssl",
    )?;
    Ok(TlsMaterial {
        ca_certificate: ca_pem,
        certificate: pem,
        key,
    })
}
