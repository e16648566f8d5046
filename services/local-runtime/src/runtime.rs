//! A running local stack: the emulator, the provisioned resources and the event-source mapping.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline_config::Environment;

use crate::aws::{SharedStats, run_mapping};
use crate::emulator::{Emulator, Paths};
use crate::provision::{Stack, provision};
use crate::reconcile::{Progress, progress};
use crate::{Clients, Error, esm};

#[derive(Debug)]
pub struct Local {
    pub emulator: Emulator,
    pub clients: Clients,
    pub stack: Stack,
    pub env: Environment,
    pub stats: SharedStats,
    stop: tokio::sync::watch::Sender<bool>,
    mapping: Option<tokio::task::JoinHandle<Result<(), Error>>>,
}

/// Reads `environments/<name>.toml` under the workspace root.
pub fn environment(root: &Path, name: &str) -> Result<Environment, Error> {
    let file = Environment::file_name(name).map_err(|e| Error::Provision(e.to_string()))?;
    let path = root.join("environments").join(&file);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Environment::for_stack(name, &text).map_err(|e| Error::Provision(e.to_string()))
}

impl Local {
    /// Starts the emulator, provisions the stack from the environment file with the zips in
    /// `packages`, and starts the event-source mapping.
    pub async fn up(root: &Path, env: Environment, packages: &Path) -> Result<Local, Error> {
        let emulator = Emulator::start(&Paths::for_workspace(root))?;
        let settings = esm::Settings::from(&env.event_source_mapping);
        Self::on(emulator, env, packages, settings).await
    }

    /// Provisions and starts the mapping on a running emulator, with explicit mapping settings.
    pub async fn on(
        emulator: Emulator,
        env: Environment,
        packages: &Path,
        settings: esm::Settings,
    ) -> Result<Local, Error> {
        let clients = Clients::for_endpoint(&emulator.endpoint).await;
        let stack = provision(&clients, &env, packages).await?;
        let stats: SharedStats = Arc::new(Mutex::new(Vec::new()));
        let (stop, rx) = tokio::sync::watch::channel(false);
        let mapping = {
            let (clients, stack, stats) = (clients.clone(), stack.clone(), stats.clone());
            tokio::spawn(async move { run_mapping(&clients, &stack, settings, stats, rx).await })
        };
        Ok(Local {
            emulator,
            clients,
            stack,
            env,
            stats,
            stop,
            mapping: Some(mapping),
        })
    }

    /// Polls until every unit in `expected` is accounted for and nothing is in flight, or the
    /// limit passes; returns the last progress.
    pub async fn wait_quiescent(&self, expected: u64, limit: Duration) -> Result<Progress, Error> {
        let started = Instant::now();
        let mut stable = 0;
        let mut last = Progress::default();
        loop {
            let p = progress(&self.clients, &self.stack).await?;
            let idle = self.mapping_idle();
            let done = p.accounted() >= expected && p.pending_objects == 0 && idle;
            // Nothing moved for 4 s (longer than the emulator's async retry delays): whatever is
            // left is stuck, in a dead-letter queue or leased; the caller decides.
            stable = if p == last && idle { stable + 1 } else { 0 };
            if done || stable >= 8 || started.elapsed() > limit {
                return Ok(p);
            }
            last = p;
            tokio::time::sleep(Duration::from_millis(500)).await;
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
                total.iterator_age_ms = total.iterator_age_ms.max(st.iterator_age_ms);
            }
        }
        total
    }

    /// Stops the mapping and the emulator.
    pub async fn down(mut self) {
        let _ = self.stop.send(true);
        if let Some(m) = self.mapping.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
        }
        self.emulator.stop();
    }
}
