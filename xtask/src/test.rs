//! `cargo xtask test`: everything CI checks. Rust formatting and lints; the functions packaged for
//! the host; Rust tests (unit, property, model, event-source-mapping conformance, and end-to-end
//! against the local emulator, with authorisation enforced and recorded); then the Pulumi program's
//! type check, tests and policies, the workflow linters, and the authorisation gate of every
//! environment over what the end-to-end run recorded.

use std::process::Command;

use anyhow::Result;

use crate::util::{cargo, root, run};

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Only the Rust checks.
    pub rust_only: bool,
}

pub fn run_all(options: Options) -> Result<()> {
    let started = std::time::Instant::now();
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The end-to-end tests run the packaged functions in the local emulator, which records every
    // authorisation decision it makes.
    crate::package::package(crate::build::Arch::host(), Some("local"))?;
    let recorded = crate::authz::recording();
    std::fs::create_dir_all(recorded.parent().unwrap_or(&recorded))?;
    std::fs::write(&recorded, "")?;
    run(cargo()
        .args(["test", "--workspace", "--locked"])
        .env(local_stack::runtime::RECORD_ENV, &recorded)
        .env(local_stack::runtime::PACKAGED_ENV, "1"))?;
    if !options.rust_only {
        // Everything the run asked AWS for is in the committed record (or, with
        // EVENTPIPE_AUTHZ_REFRESH, is added to it) before the Pulumi tests read the record.
        crate::authz::node_modules()?;
        crate::authz::check_record(&recorded)?;
        infra()?;
        // Every environment's policies allow exactly that.
        for env in crate::authz::ENVIRONMENTS {
            crate::authz::gate(env)?;
        }
    }
    eprintln!(
        "all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The Pulumi program (no CLI needed: type check, mocked unit tests, policies) and the workflows.
pub fn infra() -> Result<()> {
    let pulumi = root().join("pulumi");
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&pulumi))?;
    run(Command::new("npm")
        .args(["run", "typecheck"])
        .current_dir(&pulumi))?;
    run(Command::new("npm").args(["test"]).current_dir(&pulumi))?;
    run(Command::new("bash")
        .arg("scripts/lint-workflows.sh")
        .current_dir(&pulumi))?;
    Ok(())
}
