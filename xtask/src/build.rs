//! `cargo xtask build`: the Lambda binaries (`artifact::FUNCTIONS`).
//!
//! - `x86_64` (the host, for the local stack): plain cargo with the `local` profile (thin-local
//!   LTO, many codegen units), cheap to build on a laptop.
//! - `arm64` (AWS): cargo-lambda with zig for cross-compilation, `release` profile (fat LTO, one
//!   codegen unit, stripped, abort on panic). cargo-lambda comes pinned from PyPI into a virtualenv.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::ValueEnum;

use crate::util::{cargo, root, run, target_dir, venv};

pub use crate::artifact::FUNCTIONS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    #[value(name = "arm64")]
    Arm64,
    #[value(name = "x86_64")]
    X86_64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::X86_64
        }
    }

    /// The profile used when none is given: full optimisation for AWS, the light one locally.
    pub fn default_profile(self) -> &'static str {
        if self == Arch::host() {
            "local"
        } else {
            "release"
        }
    }
}

/// Builds every function; returns each function's binary.
pub fn build(arch: Arch, profile: Option<&str>) -> Result<BTreeMap<&'static str, PathBuf>> {
    let profile = profile.unwrap_or(arch.default_profile());
    let target = target_dir();
    let mut bins = BTreeMap::new();
    if arch == Arch::host() {
        let mut cmd = cargo();
        cmd.args(["build", "--locked", "--profile", profile]);
        for f in FUNCTIONS {
            cmd.args(["--bin", f]);
        }
        run(&mut cmd)?;
        let dir = target.join(if profile == "dev" { "debug" } else { profile });
        for f in FUNCTIONS {
            bins.insert(f, dir.join(f));
        }
    } else {
        let tools = venv("tools", &root().join(".ci/requirements-tools.txt"))?;
        let mut cmd = cargo();
        // cargo-lambda finds zig in the same virtualenv.
        let path = format!(
            "{}:{}",
            tools.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path).args([
            "lambda",
            "build",
            "--locked",
            "--arm64",
            "--profile",
            profile,
        ]);
        for f in FUNCTIONS {
            cmd.args(["--bin", f]);
        }
        run(&mut cmd)?;
        for f in FUNCTIONS {
            bins.insert(f, target.join("lambda").join(f).join("bootstrap"));
        }
    }
    for (f, path) in &bins {
        if !path.is_file() {
            bail!("the build did not produce {} for {f}", path.display());
        }
    }
    Ok(bins)
}
