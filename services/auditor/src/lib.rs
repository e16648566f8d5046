//! The auditor: on a schedule, finds the raw objects nobody will process and re-drives them to
//! the transformer, with metrics an alarm watches.
//!
//! An S3 notification can expire (the transformer's maximum event age) or, as AWS documents, be
//! dropped; a restore or another writer's object can have its notification lost too. None of
//! these shows anywhere else. Each run:
//!
//! 1. queries the pending index for objects recorded before `stuck_after` and not processed;
//! 2. lists the `raw/` hours of the last `lookback` and looks up the metadata item of every
//!    object that became old enough since about the last two runs: one without an item is stuck
//!    if another writer wrote it, and an orphan (reported, never processed) if the stream
//!    processor did, since its batch's retry or the stream dead-letter queue accounts for its
//!    records;
//! 3. re-drives the objects that became stuck in the last two periods
//!    ([`pipeline_core::audit::Window`]) by invoking the transformer asynchronously with the
//!    object's `ObjectCreated:Put` notification, as S3 would have: the transformer's lease and
//!    content hash make a re-drive of an object that is processed meanwhile harmless, and its
//!    failures end in the transform dead-letter queue like any notification's.
//!
//! **Invariant:** the auditor never writes data or metadata: it only reads and re-notifies, so it
//! cannot lose or double a record; the transformer stays the only writer of processed data.

mod events;

use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use lambda_payloads::s3::{CreatedObject, object_created};
use pipeline_aws::emf::{Event, Metrics};
use pipeline_aws::{MetadataStore, ObjectCatalog, StoreError};
use pipeline_core::audit::{Stuck, Unrecorded, Window, raw_hour_prefixes, unrecorded};
use pipeline_core::event::fmt_time;
use pipeline_core::keys::parse_raw_key;
use serde::Serialize;
use serde_json::Value;

/// Stuck objects a report names (the counts cover them all).
const NAMED: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Env(#[from] pipeline_aws::env::EnvError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "re-driving {key} to the transformer `{function}` failed: {message}; the next run tries again"
    )]
    Redrive {
        function: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub raw_bucket: String,
    pub transformer_function: String,
    pub function_name: String,
    pub region: String,
    pub stuck_after: Duration,
    pub period: Duration,
    pub lookback: Duration,
}

impl Settings {
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = pipeline_aws::env::Env(get);
        let minutes = |name, default, expected| -> Result<Duration, Error> {
            let n: u32 = env.number(name, default, expected)?;
            Ok(Duration::minutes(i64::from(n)))
        };
        Ok(Settings {
            raw_bucket: env.required("RAW_BUCKET")?,
            transformer_function: env.required("TRANSFORMER_FUNCTION")?,
            function_name: env.or("AWS_LAMBDA_FUNCTION_NAME", "auditor"),
            region: env.or("AWS_REGION", "us-east-1"),
            stuck_after: minutes("STUCK_AFTER_MINUTES", 15, "a whole number of minutes")?,
            period: minutes("AUDIT_PERIOD_MINUTES", 5, "a whole number of minutes")?,
            lookback: Duration::hours(i64::from(env.number::<u32>(
                "LOOKBACK_HOURS",
                3,
                "a whole number of hours",
            )?)),
        })
    }
}

/// The time a run audits as of: the `time` of the EventBridge scheduled event that started it
/// (so a run EventBridge retries late still covers its own slot of the schedule), or `None`
/// for an invocation without one (a manual `{}`), which audits as of the clock.
pub fn scheduled_time(event: &Value) -> Option<DateTime<Utc>> {
    let time = event.get("time")?.as_str()?;
    DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Sends the transformer a notification: an asynchronous invocation, so its retries and
/// on-failure destination apply as to S3's own notifications.
pub trait Redrive: Send + Sync {
    fn redrive(
        &self,
        key: &str,
        notification: &Value,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// [`Redrive`] over the official Lambda client: `Invoke` with `InvocationType=Event`.
#[derive(Debug, Clone)]
pub struct LambdaRedrive {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl LambdaRedrive {
    pub fn new(config: &aws_config::SdkConfig, function: &str) -> Self {
        LambdaRedrive {
            client: aws_sdk_lambda::Client::new(config),
            function: function.to_owned(),
        }
    }
}

impl Redrive for LambdaRedrive {
    async fn redrive(&self, key: &str, notification: &Value) -> Result<(), Error> {
        let failed = |message: String| Error::Redrive {
            function: self.function.clone(),
            key: key.to_owned(),
            message,
        };
        let payload = serde_json::to_vec(notification).map_err(|e| failed(e.to_string()))?;
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_smithy_types::Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                failed(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())
            })?;
        // An accepted asynchronous invocation answers 202.
        if out.status_code() != 202 {
            return Err(failed(format!(
                "the invocation was answered {}, not 202",
                out.status_code()
            )));
        }
        Ok(())
    }
}

/// A stuck object, as a report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StuckObject {
    pub key: String,
    pub why: &'static str,
    /// When it was recorded (pending) or last written (no item), RFC 3339.
    pub since: String,
    pub redriven: bool,
}

/// What one run found and did: the function's response.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Recorded objects not processed after `stuck_after`.
    pub stuck_not_processed: u64,
    /// Objects of other writers with no metadata item after `stuck_after`.
    pub stuck_no_item: u64,
    /// The stream processor's objects its batch never recorded (see [`Unrecorded::Orphan`]).
    pub orphans: u64,
    /// Objects re-driven to the transformer.
    pub redriven: u64,
    /// Objects listed under the `raw/` hours of the lookback.
    pub listed: u64,
    /// Listed objects whose metadata item was looked up.
    pub checked: u64,
    /// The first stuck objects, oldest first.
    pub stuck: Vec<StuckObject>,
    /// The metrics its events reported (the invocation's own are added by
    /// [`pipeline_aws::emf::Invocations::run`]).
    #[serde(skip)]
    pub metrics: Metrics,
}

impl Report {
    pub fn stuck_objects(&self) -> u64 {
        self.stuck_not_processed + self.stuck_no_item
    }
}

#[derive(Debug)]
pub struct Auditor<C, M, R> {
    objects: C,
    metadata: M,
    redrive: R,
    settings: Settings,
}

impl<C: ObjectCatalog, M: MetadataStore, R: Redrive> Auditor<C, M, R> {
    pub fn new(objects: C, metadata: M, redrive: R, settings: Settings) -> Self {
        Auditor {
            objects,
            metadata,
            redrive,
            settings,
        }
    }

    /// One run at `now`. A failing read fails the run (the next one repeats it); a failing
    /// re-drive is counted, named in the log and fails the run after the others were sent.
    pub async fn audit(&self, now: DateTime<Utc>, correlation_id: &str) -> Result<Report, Error> {
        let s = &self.settings;
        let window = Window::new(now, s.stuck_after, s.period);
        let mut stuck: Vec<(DateTime<Utc>, String, Stuck)> = Vec::new();
        let mut report = Report::default();

        // Recorded and not processed: the pending index, one query per bucket.
        for p in self
            .metadata
            .pending_before(&fmt_time(window.stuck_before))
            .await?
        {
            // An unparsable time sorts as the oldest: reported, not re-driven.
            let written = DateTime::parse_from_rfc3339(&p.written_at)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            stuck.push((written, p.raw_key, Stuck::NotProcessed));
        }

        // Not recorded at all: the objects that became old enough since about the last two runs.
        for prefix in raw_hour_prefixes(now, s.lookback) {
            for o in self.objects.list(&s.raw_bucket, &prefix).await? {
                report.listed += 1;
                let Some(written) = DateTime::from_timestamp_millis(o.last_modified_ms) else {
                    continue;
                };
                if parse_raw_key(&o.key).is_none() || !window.redrives(written) {
                    continue;
                }
                report.checked += 1;
                if self.metadata.get(&o.key).await?.is_some() {
                    continue;
                }
                let Some(metadata) = self.objects.head(&s.raw_bucket, &o.key).await? else {
                    continue; // deleted since it was listed
                };
                match unrecorded(&metadata) {
                    Unrecorded::Orphan => {
                        report.orphans += 1;
                        events::Orphan {
                            key: &o.key,
                            correlation_id,
                        }
                        .emit(&mut report.metrics);
                    }
                    Unrecorded::Stuck => stuck.push((written, o.key, Stuck::NoItem)),
                }
            }
        }

        stuck.sort();
        let mut failed = None;
        for (written, key, why) in stuck {
            match why {
                Stuck::NotProcessed => report.stuck_not_processed += 1,
                Stuck::NoItem => report.stuck_no_item += 1,
            }
            let mut redriven = false;
            if window.redrives(written) {
                let notification = object_created(
                    &[CreatedObject {
                        bucket: &s.raw_bucket,
                        key: &key,
                        size: 0,
                        sequencer: None,
                    }],
                    now,
                    &s.region,
                    &s.function_name,
                );
                match self.redrive.redrive(&key, &notification).await {
                    Ok(()) => {
                        report.redriven += 1;
                        redriven = true;
                    }
                    Err(error) => {
                        events::RedriveFailed {
                            key: &key,
                            error: &error,
                            correlation_id,
                        }
                        .emit(&mut report.metrics);
                        failed.get_or_insert(error);
                    }
                }
            }
            let since = if written == DateTime::<Utc>::MIN_UTC {
                String::new()
            } else {
                fmt_time(written)
            };
            events::StuckFound {
                key: &key,
                why: why.as_str(),
                since: &since,
                redriven,
                correlation_id,
            }
            .emit(&mut report.metrics);
            if report.stuck.len() < NAMED {
                report.stuck.push(StuckObject {
                    key,
                    why: why.as_str(),
                    since,
                    redriven,
                });
            }
        }
        let mut metrics = Metrics::new();
        events::Audited {
            report: &report,
            correlation_id,
        }
        .emit(&mut metrics);
        report.metrics = metrics;
        match failed {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }
}

#[cfg(test)]
mod tests;
