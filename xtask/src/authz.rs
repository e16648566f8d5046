//! `cargo xtask authz`: the offline authorisation gate (pulumi/authz/gate.ts).
//!
//! - `authz [--env dev|prod|preview]` evaluates every request the end-to-end run recorded
//!   (`pulumi/authz/recorded-requests.json`), every request AWS makes with a role on the
//!   pipeline's behalf and the KMS and S3 calls they imply, against the policies the Pulumi
//!   program generates for the environment; it prints per principal every (action, resource)
//!   with the statements that allow it, and fails on any denial and on any grant no request uses.
//! - `authz --render` writes the renderings the local emulator enforces (`pulumi/authz/local/`).
//!
//! `cargo xtask test` runs the end-to-end tests with the emulator recording every decision, then
//! checks the committed record holds every request of that run (`EVENTPIPE_AUTHZ_REFRESH=1` adds
//! them, `=exact` rewrites it) and
//! runs the gate for every environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::util::{root, run, target_dir};

/// Environments whose policies the gate evaluates.
pub const ENVIRONMENTS: [&str; 3] = ["dev", "prod", "preview"];

/// Rewrite the committed record from the run instead of checking it.
pub const REFRESH_ENV: &str = "EVENTPIPE_AUTHZ_REFRESH";

/// Where the end-to-end run records the emulator's decisions.
pub fn recording() -> PathBuf {
    target_dir().join("authz").join("recorded.jsonl")
}

fn pulumi_dir() -> PathBuf {
    root().join("pulumi")
}

/// `npm ci` in pulumi/ unless its lock file is installed already.
pub fn node_modules() -> Result<()> {
    let dir = pulumi_dir();
    let installed = dir.join("node_modules/.package-lock.json");
    let fresh = std::fs::read(&installed).ok().is_some()
        && std::fs::metadata(&installed)
            .and_then(|m| m.modified())
            .ok()
            >= std::fs::metadata(dir.join("package-lock.json"))
                .and_then(|m| m.modified())
                .ok();
    if !fresh {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir))?;
    }
    Ok(())
}

fn cli(args: &[&str]) -> Command {
    let mut cmd = Command::new(pulumi_dir().join("node_modules/.bin/ts-node"));
    cmd.args(["--transpile-only", "authz/cli.ts"])
        .args(args)
        .current_dir(pulumi_dir());
    cmd
}

/// The gate for one environment.
pub fn gate(env: &str) -> Result<()> {
    node_modules()?;
    run(&mut cli(&["gate", "--env", env]))
}

/// Writes the renderings for the local emulator.
pub fn render() -> Result<()> {
    node_modules()?;
    run(&mut cli(&["render"]))
}

/// Checks that the committed record of requests holds every request the end-to-end run recorded
/// in `recorded` (a run need not take every retry or redrive path the record holds). With
/// `EVENTPIPE_AUTHZ_REFRESH=1` the run's requests are added to it; with `=exact` it is rewritten
/// to hold just them.
pub fn check_record(recorded: &Path) -> Result<()> {
    let from = recorded.to_string_lossy().into_owned();
    let mut args = vec!["requests", "--from", from.as_str()];
    match std::env::var(REFRESH_ENV).as_deref() {
        Ok("1") => {}
        Ok("exact") => args.push("--exact"),
        Ok(other) => {
            anyhow::bail!("{REFRESH_ENV}={other}: use 1 (add the run's requests) or exact")
        }
        Err(_) => args.push("--check"),
    }
    run(&mut cli(&args))
}
