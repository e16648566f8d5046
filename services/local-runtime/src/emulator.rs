//! The local AWS emulator (ministack), as a child process we own.
//!
//! Installed pinned into a private virtualenv under `target/`, started on a free loopback port
//! (never on all interfaces, never on a fixed port), health-checked, and stopped with its whole
//! process group (its Lambda workers included) when the handle is dropped or `stop` is called.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// Where state for a run lives: `target/local/<name>/`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub target: PathBuf,
    pub requirements: PathBuf,
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
    pub fn start(paths: &Paths) -> Result<Emulator, Error> {
        let venv = install(paths)?;
        let port = free_port()?;
        let dir = paths.target.join("local").join(format!("emulator-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let log = dir.join("emulator.log");
        let log_file = std::fs::File::create(&log).map_err(|e| Error::io(&log, e))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(venv.join("bin/ministack"));
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
            // Lambda workers reach the emulator through this, with the official SDKs.
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
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
        };
        emulator.wait_healthy(Duration::from_secs(30))?;
        Ok(emulator)
    }

    /// Attaches to an emulator started earlier (`local up --detach`); it is not stopped on drop.
    pub fn attach(port: u16) -> Result<Emulator, Error> {
        let emulator = Emulator {
            child: None,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            log: PathBuf::new(),
        };
        if !emulator.healthy() {
            return Err(Error::Emulator(format!(
                "no healthy emulator on 127.0.0.1:{port}: start one with `cargo xtask local up`"
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
        http(self.port, "GET", "/_ministack/health").is_ok_and(|(status, _)| status == 200)
    }

    /// Wipes all state (streams, buckets, tables, functions, queues…) and stops Lambda workers.
    pub fn reset(&self) -> Result<(), Error> {
        match http(self.port, "POST", "/_ministack/reset") {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(Error::Emulator(format!("reset answered {status}: {body}"))),
            Err(e) => Err(Error::Emulator(format!("reset: {e}"))),
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
fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
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
