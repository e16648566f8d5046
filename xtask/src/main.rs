//! `cargo xtask`: the one front door for building, testing, packaging, running and deploying.
//! Each task is a module; CI calls these commands and nothing else.

mod artifact;
mod authz;
mod backfill;
mod bench;
mod build;
#[cfg(test)]
mod contract;
mod cost;
mod demo;
mod deploy;
mod local;
mod monitor;
mod package;
mod pulumi;
mod replay;
mod test;
mod tidy;
mod util;
mod workflows;

use std::path::PathBuf;

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
    /// The main job: the whole pipeline on this machine, events produced, reconciled, lost = 0.
    Demo {
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        /// Events per second.
        #[arg(long, default_value_t = 2_000.0)]
        rate: f64,
        #[arg(long, default_value_t = 0.01)]
        invalid_ratio: f64,
        /// Share of events sent inside KPL aggregates.
        #[arg(long, default_value_t = 0.1)]
        aggregate_share: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Give up waiting for quiescence after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Instead: run the core on a sample batch, without the emulator.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// The local stack: `up [--detach]`, `status`, `down`.
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
    /// The producer against an environment's stream (`--env local`); other flags go to the producer.
    Produce {
        #[arg(long)]
        env: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Sends the records of a file or directory into an environment's stream through the contract
    /// (JSON lines of events, or the raw and quarantine objects the pipeline wrote, plain or gzip),
    /// then waits for the pipeline and reconciles: lost and duplicated must be 0.
    Backfill {
        #[arg(long)]
        env: String,
        #[arg(long)]
        from: PathBuf,
        /// Records per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Give up waiting for the pipeline after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Re-transforms the raw objects of a range of hours after a transformer fix; each record is
    /// then once in processed, in the deployed transformer's form.
    Replay {
        #[arg(long)]
        env: String,
        /// The first hour (UTC), e.g. 2026-11-30T00.
        #[arg(long)]
        from: String,
        /// The hour after the last one, e.g. 2026-11-30T06 (exclusive).
        #[arg(long)]
        to: String,
        /// Only list and count the raw objects.
        #[arg(long)]
        dry_run: bool,
        /// Give up waiting for the pipeline after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Dead-letter queues.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Canary events through the pipeline; verdict on processed rows and empty DLQs.
    Smoke {
        #[arg(long)]
        env: String,
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
    /// Deploys the arm64 package to a stack (`dev`, `prod`, `pr-<n>`), then smoke-tests it.
    Deploy {
        #[arg(long)]
        env: String,
    },
    /// What `deploy` would change in a stack (diff and policies, on stdout).
    Preview {
        #[arg(long)]
        env: String,
        /// Instead: what changed in the cloud outside Pulumi; fails on any change.
        #[arg(long)]
        drift: bool,
    },
    /// Deploys to `--to` the artifact that `--from` runs and smoke-tested.
    Promote {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// `auditor=<sha256>,stream-processor=<sha256>,transformer=<sha256>`: promote these instead of what `--from` runs.
        #[arg(long)]
        digests: Option<String>,
        /// `<owner>/<name>`: first verify each zip's build-provenance attestation from that repository.
        #[arg(long)]
        attestation_repo: Option<String>,
        /// Only preview `--to` and save the plan to this file (deploy nothing).
        #[arg(long, conflicts_with = "plan")]
        save_plan: Option<PathBuf>,
        /// Deploy exactly this plan (from `--save-plan`).
        #[arg(long)]
        plan: Option<PathBuf>,
    },
    /// Destroys a preview stack (`pr-<n>`) and removes it.
    Destroy {
        #[arg(
            long,
            required_unless_present = "closed_previews",
            conflicts_with = "closed_previews"
        )]
        env: Option<String>,
        /// Instead: every preview stack whose pull request is closed (asks `gh`).
        #[arg(long)]
        closed_previews: bool,
    },
    /// The offline authorisation gate: every request the pipeline makes against an environment's
    /// policies, least privilege both ways (`--render`: the local emulator's renderings instead).
    Authz {
        #[arg(long, default_value = "dev", value_parser = ["dev", "prod", "preview"])]
        env: String,
        #[arg(long)]
        render: bool,
    },
    /// Monthly cost estimate of an environment at a steady event rate.
    Cost {
        #[arg(long)]
        env: String,
        /// Events per second.
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 400)]
        event_bytes: u64,
        /// Measured stream-processor duration per invocation at the file's batch size.
        #[arg(long)]
        duration_ms: Option<f64>,
    },
    /// Live view of a stack: traffic, functions, DLQs, alarms (`--once`: one frame).
    Monitor {
        #[arg(long)]
        env: String,
        #[arg(long)]
        once: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DlqAction {
    /// Re-process what the dead-letter queues reference: the stream DLQ's sequence ranges (re-read
    /// from the stream) and the transform DLQ's S3 events. Idempotent.
    Redrive {
        #[arg(long)]
        env: String,
        /// Only show what would be redriven.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LocalAction {
    /// Build, package, start the emulator, provision, run the event-source mapping.
    Up {
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        stack: StackArgs,
    },
    Status,
    Down,
}

/// How the local stack authorises requests.
#[derive(Debug, clap::Args)]
struct StackArgs {
    /// Whose policies the local emulator enforces, as the Pulumi program renders them.
    #[arg(long, default_value = "dev", value_parser = ["dev", "prod", "preview"])]
    policies: String,
    /// Turn authorisation off (plain HTTP, every request as the account's root): debugging only.
    #[arg(long)]
    no_authz: bool,
    /// Fail this share of the functions' and tools' AWS calls (0–1): throttling, server errors,
    /// connection resets and responses lost after the write took effect.
    #[arg(long)]
    faults: Option<f64>,
}

impl StackArgs {
    fn options(&self) -> Result<local::StackOptions> {
        if let Some(rate) = self.faults
            && !(0.0..=1.0).contains(&rate)
        {
            anyhow::bail!("--faults {rate}: give a share between 0 and 1, e.g. 0.1");
        }
        Ok(local::StackOptions {
            policies: if self.no_authz {
                None
            } else {
                Some(self.policies.parse().map_err(anyhow::Error::msg)?)
            },
            faults: self.faults,
        })
    }
}

fn local_only(env: &str) -> Result<()> {
    if env != "local" {
        anyhow::bail!(
            "`--env {env}` needs the deployed stack's outputs: use `cargo xtask deploy --env {env}` (which smoke-tests), or `--env local`"
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Test { rust_only } => test::run_all(test::Options { rust_only }),
        Cmd::Ci => test::run_all(test::Options::default()),
        Cmd::Bench { quick } => bench::bench(quick),
        Cmd::Demo {
            offline: true,
            events,
            invalid_ratio,
            ..
        } => demo::offline(events as usize, invalid_ratio),
        Cmd::Demo {
            events,
            rate,
            invalid_ratio,
            aggregate_share,
            seed,
            timeout,
            offline: false,
            stack,
        } => local::demo(local::DemoOptions {
            events,
            rate,
            invalid_ratio,
            aggregate_share,
            seed,
            timeout: std::time::Duration::from_secs(timeout),
            stack: stack.options()?,
        }),
        Cmd::Local {
            action: LocalAction::Up { detach, stack },
        } => local::up(detach, &stack.options()?),
        Cmd::Local {
            action: LocalAction::Status,
        } => local::status(),
        Cmd::Local {
            action: LocalAction::Down,
        } => local::down(),
        Cmd::Produce { env, args } => local_only(&env).and_then(|()| local::produce_local(&args)),
        Cmd::Backfill {
            env,
            from,
            rate,
            timeout,
        } => backfill::backfill(&env, &from, rate, std::time::Duration::from_secs(timeout)),
        Cmd::Replay {
            env,
            from,
            to,
            dry_run,
            timeout,
        } => replay::replay(
            &env,
            &from,
            &to,
            dry_run,
            std::time::Duration::from_secs(timeout),
        ),
        Cmd::Dlq {
            action: DlqAction::Redrive { env, dry_run },
        } => local_only(&env).and_then(|()| local::redrive(dry_run)),
        Cmd::Smoke { env } if env != "local" => deploy::smoke(&env),
        Cmd::Smoke { env } => local_only(&env).and_then(|()| local::smoke_local()),
        Cmd::Build { arch, profile } => build::build(arch, profile.as_deref()).map(drop),
        Cmd::Package { arch, profile } => package::package(arch, profile.as_deref()).map(drop),
        Cmd::Authz { render: true, .. } => authz::render(),
        Cmd::Authz { env, render: false } => authz::gate(&env),
        Cmd::Deploy { env } => deploy::deploy(&env),
        Cmd::Preview { env, drift } => deploy::preview(&env, drift),
        Cmd::Promote {
            from,
            to,
            digests,
            attestation_repo,
            save_plan,
            plan,
        } => {
            let step = match (&save_plan, &plan) {
                (Some(path), _) => deploy::PromoteStep::SavePlan(path),
                (None, Some(path)) => deploy::PromoteStep::ApplyPlan(path),
                (None, None) => deploy::PromoteStep::Deploy,
            };
            deploy::promote(
                &from,
                &to,
                digests.as_deref(),
                attestation_repo.as_deref(),
                step,
            )
        }
        Cmd::Destroy {
            closed_previews: true,
            ..
        } => deploy::destroy_closed_previews(),
        Cmd::Destroy { env, .. } => deploy::destroy(env.as_deref().unwrap_or_default()),
        Cmd::Cost {
            env,
            rate,
            event_bytes,
            duration_ms,
        } => cost::cost(&env, rate, event_bytes, duration_ms),
        Cmd::Monitor { env, once } => monitor::monitor(&env, once),
    }
}
