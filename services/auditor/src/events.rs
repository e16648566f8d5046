//! Every log line and every metric the auditor writes is one of these typed events (besides what
//! every invocation records, see [`pipeline_aws::emf::Invocations`]). The run's counts are its
//! summary's, [`Audited`]: a failed run reports none (a zero would read as "nothing stuck").

use pipeline_aws::emf::{Event, Metrics};

use crate::{Error, Report};

/// A stuck object, re-driven or not.
#[derive(Debug)]
pub struct StuckFound<'a> {
    pub key: &'a str,
    pub why: &'static str,
    pub since: &'a str,
    pub redriven: bool,
    pub correlation_id: &'a str,
}

impl Event for StuckFound<'_> {
    fn emit(&self, _: &mut Metrics) {
        tracing::warn!(
            message = if self.redriven {
                "stuck raw object re-driven to the transformer"
            } else {
                "stuck raw object (re-driven by an earlier run; see the transform dead-letter queue)"
            },
            key = %self.key,
            why = self.why,
            since = self.since,
            correlation_id = self.correlation_id,
        );
    }
}

/// A raw object of the stream processor that its batch never recorded.
#[derive(Debug)]
pub struct Orphan<'a> {
    pub key: &'a str,
    pub correlation_id: &'a str,
}

impl Event for Orphan<'_> {
    fn emit(&self, _: &mut Metrics) {
        tracing::info!(
            message = "orphan raw object: the stream processor wrote it and its batch never recorded it; its records were written again or dead-lettered, so it is not processed",
            key = %self.key,
            correlation_id = self.correlation_id,
        );
    }
}

#[derive(Debug)]
pub struct RedriveFailed<'a> {
    pub key: &'a str,
    pub error: &'a Error,
    pub correlation_id: &'a str,
}

impl Event for RedriveFailed<'_> {
    fn emit(&self, _: &mut Metrics) {
        tracing::error!(
            message = "re-drive failed; the run fails and the next one tries again",
            key = %self.key,
            error = %self.error,
            correlation_id = self.correlation_id,
        );
    }
}

/// The run's summary.
#[derive(Debug)]
pub struct Audited<'a> {
    pub report: &'a Report,
    pub correlation_id: &'a str,
}

impl Event for Audited<'_> {
    fn emit(&self, m: &mut Metrics) {
        let r = self.report;
        tracing::info!(
            message = "audit done",
            stuck = r.stuck_objects(),
            stuck_not_processed = r.stuck_not_processed,
            stuck_no_item = r.stuck_no_item,
            orphans = r.orphans,
            redriven = r.redriven,
            listed = r.listed,
            checked = r.checked,
            correlation_id = self.correlation_id,
        );
        m.count("StuckObjects", r.stuck_objects())
            .count("StuckNotProcessed", r.stuck_not_processed)
            .count("StuckNoItem", r.stuck_no_item)
            .count("OrphanObjects", r.orphans)
            .count("Redriven", r.redriven)
            .count("RawObjectsListed", r.listed);
    }
}
