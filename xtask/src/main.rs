//! `cargo xtask`: the one front door for building, testing, packaging, running and deploying.
//! Each task is a module; CI calls these commands and nothing else.

mod bench;
mod build;
mod demo;
mod package;
mod test;
mod tidy;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::build::Arch;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every check: Rust format, lints and tests; Pulumi type check, tests and policies; workflow lint.
    Test {
        /// Only the Rust checks.
        #[arg(long)]
        rust_only: bool,
    },
    /// Exactly what CI runs (the same as `test`).
    Ci,
    /// Benchmarks of the core, the handler's peak memory, binary sizes and start-up times.
    Bench {
        /// Shorter measurements.
        #[arg(long)]
        quick: bool,
    },
    /// The main job: a sample batch through the pipeline's core, printing what it writes.
    Demo {
        #[arg(long, default_value_t = 2000)]
        events: usize,
        #[arg(long, default_value_t = 0.01)]
        invalid_ratio: f64,
    },
    /// Builds the Lambda binaries.
    Build {
        #[arg(long, value_enum, default_value_t = Arch::host())]
        arch: Arch,
        /// Cargo profile (default: `release` for AWS, `local` for the host).
        #[arg(long)]
        profile: Option<String>,
    },
    /// Builds and zips the Lambda binaries with an artifact manifest.
    Package {
        #[arg(long, value_enum, default_value_t = Arch::host())]
        arch: Arch,
        #[arg(long)]
        profile: Option<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Test { rust_only } => test::run_all(test::Options { rust_only }),
        Cmd::Ci => test::run_all(test::Options::default()),
        Cmd::Bench { quick } => bench::bench(quick),
        Cmd::Demo {
            events,
            invalid_ratio,
        } => demo::offline(events, invalid_ratio),
        Cmd::Build { arch, profile } => build::build(arch, profile.as_deref()).map(drop),
        Cmd::Package { arch, profile } => package::package(arch, profile.as_deref()).map(drop),
    }
}
