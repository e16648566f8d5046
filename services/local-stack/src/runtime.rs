//! A running local stack: the emulator, the provisioned resources and the event-source mapping.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline_config::Environment;

use pipeline_ops::aws::{SharedStats, run_mapping};
use pipeline_ops::reconcile::{self, Progress, progress};
use pipeline_ops::{Clients, Stack, esm};

use crate::authz::{Access, Model, Policies, principal};
use crate::emulator::{self, Emulator, Paths};
use crate::faults::{self, FaultProxy};
use crate::provision::{checkpoint_table, provision};
use crate::{Error, admin_clients};

#[derive(Debug)]
pub struct Local {
    pub emulator: Emulator,
    /// The operator's clients: what `xtask smoke`, reconciliation and redrive act as.
    pub clients: Clients,
    /// The producer's clients: what sends events to the stream.
    pub producer: Clients,
    /// The account's root (the deployer): provisioning, and the faults tests inject.
    pub admin: Clients,
    pub stack: Stack,
    pub access: Access,
    /// The authorisation model the stack was provisioned with.
    pub model: Option<Model>,
    pub env: Environment,
    /// The counters of the running mapping, one entry per shard.
    pub stats: SharedStats,
    /// The running event-source mapping (none once stopped).
    mapping: Mutex<Option<Mapping>>,
    /// What the mapping reads the stream and sends to its on-failure queue as.
    reader: Clients,
    /// The mapping's lease and checkpoint table (root's: the checkpoint is Lambda's own state).
    pub checkpoint_table: String,
    /// The fault injector in front of the emulator, when faults are on (it stops when dropped).
    pub faults: Option<FaultProxy>,
}

/// A running event-source mapping.
#[derive(Debug)]
struct Mapping {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), pipeline_ops::Error>>,
}

impl Mapping {
    /// Starts `run_mapping`: reads as `reader`, invokes as `invoker` (the Lambda service: root).
    fn start(
        reader: &Clients,
        invoker: &Clients,
        stack: &Stack,
        settings: esm::Settings,
        checkpoints: &str,
        stats: &SharedStats,
    ) -> Mapping {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let (reader, invoker, stack, stats) = (
            reader.clone(),
            invoker.clone(),
            stack.clone(),
            stats.clone(),
        );
        let checkpoints = checkpoints.to_owned();
        let task = tokio::spawn(async move {
            run_mapping(&reader, &invoker, &stack, settings, &checkpoints, stats, rx).await
        });
        Mapping { stop, task }
    }

    /// Asks the mapping to stop after the batches in flight and waits up to `limit` for it;
    /// then aborts it (its records not yet checkpointed are delivered again by the next one).
    async fn stop(self, limit: Duration) -> Result<(), Error> {
        let _ = self.stop.send(true);
        let mut task = self.task;
        match tokio::time::timeout(limit, &mut task).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(e)) => Err(Error::Emulator(format!(
                "the event-source mapping stopped abnormally: {e}"
            ))),
            Err(_) => {
                task.abort();
                Err(Error::Emulator(format!(
                    "the event-source mapping did not stop within {limit:?}; aborted"
                )))
            }
        }
    }
}

/// How to run the local stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// Whose policies the emulator enforces; `None` turns authorisation off (debugging only).
    pub policies: Option<Policies>,
    /// Append every authorisation decision to this file (see `emulator/launch.py`).
    pub record: Option<PathBuf>,
    /// Changes the rendered model before it is provisioned: tests of what a missing grant does.
    pub adjust: Option<fn(&mut Model)>,
    /// Faults injected between the pipeline (functions and tools) and the emulator.
    pub faults: Option<faults::Plan>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policies: Some(Policies::Dev),
            record: std::env::var_os(RECORD_ENV).map(PathBuf::from),
            adjust: None,
            faults: None,
        }
    }
}

/// When set, every local stack records its authorisation decisions to this file.
pub const RECORD_ENV: &str = "EVENTPIPE_AUTHZ_RECORD";

/// The wall clock in Unix milliseconds, as the transformer stamps its leases.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether nothing more may happen without an operator, by the counters: the mapping has read
/// the stream to its tip and delivered or dead-lettered every record it read, no transformer
/// run holds a lease, and there are at least as many transform dead-letter messages as pending
/// objects (each given up leaves one). Cheap; the wait then asks the queue which objects its
/// messages name ([`reconcile::pending_given_up`]).
fn settled(p: &Progress, mapping_idle: bool, now_ms: i64) -> bool {
    mapping_idle && !p.leased_at(now_ms) && p.pending_objects <= p.transform_dlq_messages
}

/// Set by `cargo xtask test`, which packages the functions before it runs the tests.
pub const PACKAGED_ENV: &str = "EVENTPIPE_PACKAGED";

/// The host's function zips under `target` (`target/package/<arch>`), packaged first with
/// `cargo xtask package` when `package` (the tests do unless [`PACKAGED_ENV`] says the caller
/// just did): a plain `cargo test` then neither fails for a missing zip nor runs functions older
/// than the code. Packaging is incremental (seconds when nothing changed).
pub fn host_packages(root: &Path, target: &Path, package: bool) -> Result<PathBuf, Error> {
    let dir = target
        .join("package")
        .join(if cfg!(target_arch = "aarch64") {
            "arm64"
        } else {
            "x86_64"
        });
    if package {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(&cargo)
            .args(["xtask", "package"])
            .current_dir(root)
            .env("CARGO_TARGET_DIR", target)
            .status()
            .map_err(|e| Error::io(Path::new(&cargo), e))?;
        if !status.success() {
            return Err(Error::Emulator(format!(
                "`cargo xtask package` failed ({status}): the end-to-end tests need the functions' zips"
            )));
        }
    }
    if dir.join("stream-processor.zip").is_file() {
        Ok(dir)
    } else {
        Err(Error::Emulator(format!(
            "{} has no zips: run `cargo xtask package`",
            dir.display()
        )))
    }
}

impl Local {
    /// Starts the emulator, provisions the stack from the environment file with the zips in
    /// `packages`, and starts the event-source mapping; authorisation enforced with dev's policies.
    pub async fn up(root: &Path, env: Environment, packages: &Path) -> Result<Local, Error> {
        Self::up_with(root, env, packages, &Options::default()).await
    }

    pub async fn up_with(
        root: &Path,
        env: Environment,
        packages: &Path,
        options: &Options,
    ) -> Result<Local, Error> {
        // With faults, the functions and the tools reach the emulator through the injector.
        let proxy_port = match options.faults {
            Some(_) if options.policies.is_none() => {
                return Err(Error::Emulator(
                    "fault injection needs the emulator's TLS: do not combine it with --no-authz"
                        .into(),
                ));
            }
            Some(_) => Some(emulator::free_port()?),
            None => None,
        };
        let emulator = Emulator::start(
            &Paths::for_workspace(root),
            &emulator::Options {
                authorization: options.policies.is_some(),
                record: options.record.clone(),
                workers_endpoint: proxy_port.map(|p| format!("https://127.0.0.1:{p}")),
            },
        )?;
        let proxy = match (options.faults, proxy_port, &emulator.tls) {
            (Some(plan), Some(port), Some(tls)) => Some(
                FaultProxy::start(
                    port,
                    &emulator.endpoint,
                    &tls.certificate,
                    &tls.key,
                    &tls.ca_certificate,
                    plan,
                )
                .await?,
            ),
            _ => None,
        };
        let settings = esm::Settings::from(&env.event_source_mapping);
        let mut model = options.policies.map(|p| Model::load(root, p)).transpose()?;
        if let (Some(m), Some(adjust)) = (model.as_mut(), options.adjust) {
            adjust(m);
        }
        Self::on(
            emulator,
            env,
            packages,
            settings,
            options.policies,
            model,
            proxy,
        )
        .await
    }

    /// Provisions and starts the mapping on a running emulator, with explicit mapping settings.
    /// `model` is the rendering of `policies` (or none when authorisation is off).
    pub async fn on(
        emulator: Emulator,
        env: Environment,
        packages: &Path,
        settings: esm::Settings,
        policies: Option<Policies>,
        model: Option<Model>,
        faults: Option<FaultProxy>,
    ) -> Result<Local, Error> {
        let ca = emulator.ca_certificate.as_deref();
        let admin = admin_clients(&emulator.endpoint, ca).await?;
        let (mut stack, roles) = provision(&admin, &env, packages, model.clone()).await?;
        let checkpoint_table = checkpoint_table(&admin, &env).await?;
        let access = Access {
            ca_certificate: emulator.ca_certificate.clone(),
            roles,
            policies,
        };
        // The pipeline's principals reach the emulator through the fault injector, when there is
        // one; provisioning and the faults tests inject on purpose do not.
        let via = match &faults {
            Some(proxy) => {
                stack.endpoint = proxy.endpoint.clone();
                admin_clients(&proxy.endpoint, ca).await?
            }
            None => admin.clone(),
        };
        let clients = act_as(&via, &access, principal::OPERATOR).await;
        let producer = act_as(&via, &access, principal::PRODUCER).await;
        // In AWS the mapping reads the stream and sends to its on-failure queue with the
        // function's execution role; its invocations are Lambda's own (root here).
        let reader = act_as(&via, &access, principal::STREAM_PROCESSOR).await;
        let stats: SharedStats = Arc::new(Mutex::new(Vec::new()));
        let mapping = Mapping::start(&reader, &admin, &stack, settings, &checkpoint_table, &stats);
        Ok(Local {
            emulator,
            clients,
            producer,
            admin,
            stack,
            access,
            model,
            env,
            stats,
            mapping: Mutex::new(Some(mapping)),
            reader,
            checkpoint_table,
            faults,
        })
    }

    /// Stops the event-source mapping (after its batches in flight) and starts a new one with
    /// `settings` on the same stack, as a restart of `local up` would; its counters start at 0.
    pub async fn restart_mapping(&self, settings: esm::Settings) -> Result<(), Error> {
        let running = self.mapping.lock().ok().and_then(|mut m| m.take());
        if let Some(m) = running {
            m.stop(Duration::from_secs(30)).await?;
        }
        if let Ok(mut s) = self.stats.lock() {
            s.clear();
        }
        let next = Mapping::start(
            &self.reader,
            &self.admin,
            &self.stack,
            settings,
            &self.checkpoint_table,
            &self.stats,
        );
        let mut slot = self
            .mapping
            .lock()
            .map_err(|_| Error::Emulator("the mapping's lock is poisoned".into()))?;
        *slot = Some(next);
        Ok(())
    }

    /// Provisions the stack again (idempotent), as it was first provisioned.
    pub async fn reprovision(&self, packages: &Path) -> Result<(), Error> {
        provision(&self.admin, &self.env, packages, self.model.clone()).await?;
        Ok(())
    }

    /// Polls until every unit in `expected` is accounted for and the mapping has read the
    /// stream to its tip since the wait began, or until the pipeline has settled short of that
    /// (see [`settled`], and every pending object named by a dead-letter message sent after it
    /// was written: what is left waits for an operator, the caller decides), or the limit
    /// passes; returns the last progress.
    pub async fn wait_quiescent(&self, expected: u64, limit: Duration) -> Result<Progress, Error> {
        let started = Instant::now();
        let tips = self.reads_at_tip();
        loop {
            let p = progress(&self.clients, &self.stack).await?;
            let idle = self.mapping_idle() && self.read_to_tip_since(&tips);
            if p.accounted() >= expected && p.pending_objects == 0 && idle {
                return Ok(p);
            }
            if settled(&p, idle, now_ms())
                && reconcile::pending_given_up(&self.clients, &self.stack).await?
            {
                // The counters again: nothing moved while the queue was read.
                let again = progress(&self.clients, &self.stack).await?;
                if again == p && self.mapping_idle() {
                    return Ok(p);
                }
            }
            if started.elapsed() > limit {
                return Ok(p);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Each shard's count of reads that reached its tip.
    fn reads_at_tip(&self) -> Vec<(String, u64)> {
        self.stats
            .lock()
            .map(|s| {
                s.iter()
                    .map(|(shard, st)| (shard.clone(), st.reads_at_tip))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the mapping has read every shard to its tip since `before` was taken: every
    /// record put before then has been read.
    fn read_to_tip_since(&self, before: &[(String, u64)]) -> bool {
        let now = self.reads_at_tip();
        !now.is_empty()
            && now.iter().all(|(shard, n)| {
                let then = before
                    .iter()
                    .find(|(s, _)| s == shard)
                    .map_or(0, |(_, n)| *n);
                *n > then
            })
    }

    /// Waits until no transformer holds a lease on a raw object, as the metadata table says
    /// (a run that died keeps its lease until it expires; then a redrive can take the object).
    pub async fn wait_leases_expired(&self, limit: Duration) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            let p = progress(&self.clients, &self.stack).await?;
            let now = now_ms();
            match p.lease_until_ms {
                Some(until) if until > now => {
                    if started.elapsed() > limit {
                        return Err(Error::Emulator(format!(
                            "a transformer still holds a lease {} ms after {limit:?}",
                            until - now
                        )));
                    }
                    let left = Duration::from_millis(u64::try_from(until - now).unwrap_or(0) + 10);
                    tokio::time::sleep(left.min(Duration::from_secs(1))).await;
                }
                _ => return Ok(()),
            }
        }
    }

    /// No records read but not delivered, on any shard.
    pub fn mapping_idle(&self) -> bool {
        self.stats
            .lock()
            .map(|s| {
                s.iter().all(|(_, st)| {
                    st.iterator_age_ms == 0
                        && st.records_read == st.records_delivered + st.records_sent_to_destination
                })
            })
            .unwrap_or(false)
    }

    /// Sum of every shard's counters.
    pub fn mapping_stats(&self) -> esm::Stats {
        let mut total = esm::Stats::default();
        if let Ok(s) = self.stats.lock() {
            for (_, st) in s.iter() {
                total.records_read += st.records_read;
                total.records_delivered += st.records_delivered;
                total.invocations += st.invocations;
                total.function_errors += st.function_errors;
                total.partial_failures += st.partial_failures;
                total.bisections += st.bisections;
                total.records_sent_to_destination += st.records_sent_to_destination;
                total.destination_messages += st.destination_messages;
                total.destination_failures += st.destination_failures;
                total.iterator_age_ms = total.iterator_age_ms.max(st.iterator_age_ms);
            }
        }
        total
    }

    /// Stops the mapping and the emulator.
    pub async fn down(mut self) {
        let running = self.mapping.get_mut().ok().and_then(Option::take);
        if let Some(m) = running
            && let Err(e) = m.stop(Duration::from_secs(5)).await
        {
            // Stopping anyway: what it had not checkpointed is read again by the next mapping.
            tracing::warn!(error = %e, "stopping the event-source mapping");
        }
        self.emulator.stop();
    }
}

/// Clients acting as principal `id` of the stack, or as root when authorisation is off.
pub async fn act_as(admin: &Clients, access: &Access, id: &str) -> Clients {
    match access.roles.get(id) {
        Some(role) => admin.assume(role, &format!("local-{id}")).await,
        None => admin.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_is_settled_only_when_nothing_is_in_flight() {
        let quiet = Progress {
            pending_objects: 2,
            transform_dlq_messages: 2,
            lease_until_ms: Some(1_000),
            ..Progress::default()
        };
        assert!(settled(&quiet, true, 1_000));
        assert!(!settled(&quiet, false, 1_000), "the mapping holds records");
        assert!(
            !settled(&quiet, true, 999),
            "a transformer run holds a lease"
        );
        let retrying = Progress {
            transform_dlq_messages: 1,
            ..quiet
        };
        assert!(
            !settled(&retrying, true, 1_000),
            "an object waits for its retry"
        );
    }

    #[test]
    fn the_packages_are_found_where_xtask_puts_them_and_missing_ones_say_how_to_make_them() {
        let target =
            std::env::temp_dir().join(format!("eventpipe-packages-{}", std::process::id()));
        let err = host_packages(Path::new("."), &target, false).unwrap_err();
        assert!(err.to_string().contains("cargo xtask package"), "{err}");
        let arch = if cfg!(target_arch = "aarch64") {
            "arm64"
        } else {
            "x86_64"
        };
        let dir = target.join("package").join(arch);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stream-processor.zip"), b"zip").unwrap();
        assert_eq!(host_packages(Path::new("."), &target, false).unwrap(), dir);
        std::fs::remove_dir_all(&target).unwrap();
    }
}
