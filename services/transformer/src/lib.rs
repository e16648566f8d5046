//! The transformer: S3 ObjectCreated notification for a raw object → enriched Parquet objects in
//! the processed bucket, and the metadata item moved to `PROCESSED`.
//!
//! **Invariant:** after a successful run, the processed objects of a raw key are exactly the
//! outputs of the raw object's current content, and the metadata item refers to an output set
//! (page items beside it, see `pipeline_core::metadata`) that lists exactly them. An output is
//! always in the set the item refers to before it is written, so a run that dies leaves no
//! output nobody knows about. Duplicate and out-of-order notifications are harmless: the object's
//! current content is always what is processed, a per-key lease keeps concurrent runs apart, and
//! a content hash tells a duplicate from a rewrite.

mod events;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_lambda_events::event::s3::S3Event;
use futures_util::future::try_join_all;
use pipeline_aws::emf::{Event, Metrics};
use pipeline_aws::store::Status;
use pipeline_aws::{
    Lease, LeaseOutcome, MarkOutcome, MetadataItem, MetadataStore, ObjectStore, OutputSet,
    OutputsOutcome, ProcessedUpdate, RawItem, RecordOutcome, StoreError, StoredObject,
    delete_output_set, read_output_set, write_output_set,
};
use pipeline_core::event::fmt_time;
use pipeline_core::keys::{RAW_PREFIX, RAW_SHA256_METADATA, decode_s3_key, seq_cmp};
use pipeline_core::owner;
use pipeline_core::transform::{self, Pseudonymizer, TransformError};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How often one run re-reads a raw object that was rewritten while it was being processed.
const MAX_PASSES: usize = 3;
/// Outputs written in parallel.
const PUT_CONCURRENCY: usize = 8;
/// `registered_by` of an item the transformer registered.
pub const REGISTERED_BY: &str = "transformer";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Env(#[from] pipeline_aws::env::EnvError),
    #[error(
        "the pii hmac secret `{secret}` could not be read: {message}; create it and put a value (see docs/deployment.md)"
    )]
    Secret { secret: String, message: String },
    #[error("the event is neither an s3 notification nor an s3:TestEvent: {0}")]
    BadEvent(serde_json::Error),
    #[error("key `{0}` in the notification is not valid url-encoded utf-8")]
    BadKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("raw object s3://{bucket}/{key}: {source}")]
    Transform {
        bucket: String,
        key: String,
        #[source]
        source: TransformError,
    },
    #[error(
        "raw object {key}: the stream processor wrote it but has not recorded it after {waited:?}; its batch's retry or redrive records it, retry later"
    )]
    NotRecorded { key: String, waited: Duration },
    #[error("raw object {key}: another run holds its lease; retry later")]
    Leased { key: String },
    #[error("raw object {key} was rewritten {passes} times while being processed; retry later")]
    Superseded { key: String, passes: usize },
}

impl Error {
    /// Whether the platform's retry can help: true for everything but configuration errors.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Error::Env(_) | Error::Secret { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub processed_bucket: String,
    pub metadata_table: String,
    pub metadata_ttl_days: u32,
    pub hmac_secret_id: String,
    pub function_name: String,
    /// How long to wait for the stream processor's metadata item of a new raw object.
    pub item_wait: Duration,
    /// How long a lease is held at most: a little longer than the function's timeout, so that a
    /// crashed run's lease expires before the platform's retries are used up.
    pub lease: Duration,
    /// The transformer's version (the deployed artifact's SHA-256, `TRANSFORM_VERSION`): recorded
    /// with every processed object, so that a replay re-transforms only what an earlier version
    /// produced.
    pub version: String,
}

impl Settings {
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = pipeline_aws::env::Env(get);
        Ok(Settings {
            processed_bucket: env.required("PROCESSED_BUCKET")?,
            metadata_table: env.required("METADATA_TABLE")?,
            metadata_ttl_days: env.number("METADATA_TTL_DAYS", 30, "a whole number of days")?,
            hmac_secret_id: env.required("HMAC_SECRET_ID")?,
            function_name: env.or("AWS_LAMBDA_FUNCTION_NAME", "transformer"),
            item_wait: Duration::from_millis(env.number("ITEM_WAIT_MS", 10_000, "milliseconds")?),
            lease: Duration::from_secs(env.number("LEASE_SECONDS", 905, "seconds")?),
            version: env.required("TRANSFORM_VERSION")?,
        })
    }
}

/// What happened to one notification record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ignored {
        key: String,
        why: &'static str,
    },
    Duplicate {
        key: String,
    },
    Processed {
        key: String,
        rows: u64,
        duplicates: u64,
        outputs: Vec<String>,
        deleted: Vec<String>,
        max_ingest_lag_ms: Option<i64>,
        /// The stream processor's request id, from the raw object's metadata.
        upstream_correlation_id: Option<String>,
        /// Whether this run registered the object (the stream processor had not recorded it).
        registered: bool,
        /// Lines whose record an overlapping raw object of the shard owns (`pipeline_core::owner`).
        owned_elsewhere: u64,
        /// Raw objects starting inside this one that were processed again because this one
        /// owns some of their records now.
        reprocessed: Vec<String>,
    },
}

/// What one invocation did: the function's response.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// The metrics its events reported (the invocation's own are added by
    /// [`pipeline_aws::emf::Invocations::run`]).
    #[serde(skip)]
    pub metrics: Metrics,
}

pub use pipeline_aws::Clock;

pub struct Transformer<O, M> {
    objects: O,
    metadata: M,
    pii: Pseudonymizer,
    settings: Settings,
    clock: Clock,
}

impl<O: std::fmt::Debug, M: std::fmt::Debug> std::fmt::Debug for Transformer<O, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("objects", &self.objects)
            .field("metadata", &self.metadata)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<O: ObjectStore, M: MetadataStore> Transformer<O, M> {
    /// A transformer on the wall clock.
    pub fn new(objects: O, metadata: M, pii: Pseudonymizer, settings: Settings) -> Self {
        Self::with_clock(objects, metadata, pii, settings, pipeline_aws::wall_clock())
    }

    /// A transformer that reads the time (leases, processing and registration times) from
    /// `clock`.
    pub fn with_clock(
        objects: O,
        metadata: M,
        pii: Pseudonymizer,
        settings: Settings,
        clock: Clock,
    ) -> Self {
        Transformer {
            objects,
            metadata,
            pii,
            settings,
            clock,
        }
    }

    /// Handles one invocation's payload: an S3 event, or the `s3:TestEvent` S3 sends when a
    /// notification is configured. The first failing record fails the invocation (records before
    /// it are done and idempotent).
    pub async fn handle(&self, payload: &Value, correlation_id: &str) -> Result<Report, Error> {
        let mut report = Report::default();
        if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            let outcome = Outcome::Ignored {
                key: String::new(),
                why: "s3:TestEvent",
            };
            events::RecordDone {
                outcome: &outcome,
                correlation_id,
            }
            .emit(&mut report.metrics);
            report.outcomes.push(outcome);
            return Ok(report);
        }
        let event: S3Event = serde_json::from_value(payload.clone()).map_err(Error::BadEvent)?;
        let replay = lambda_payloads::s3::is_replay(payload);
        for record in &event.records {
            let name = record.event_name.as_deref().unwrap_or_default();
            let bucket = record.s3.bucket.name.as_deref().unwrap_or_default();
            let raw_key = record.s3.object.key.as_deref().unwrap_or_default();
            let key = decode_s3_key(raw_key).map_err(|_| Error::BadKey(raw_key.to_owned()))?;
            let outcome = if !name.starts_with("ObjectCreated:") {
                Outcome::Ignored {
                    key,
                    why: "not an ObjectCreated event",
                }
            } else if !key.starts_with(RAW_PREFIX) {
                Outcome::Ignored {
                    key,
                    why: "key outside raw/",
                }
            } else {
                match self
                    .process(
                        bucket,
                        &key,
                        record.s3.object.sequencer.as_deref(),
                        correlation_id,
                        replay,
                    )
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        events::RecordFailed {
                            key: &key,
                            error: &error,
                            correlation_id,
                        }
                        .emit(&mut report.metrics);
                        return Err(error);
                    }
                }
            };
            events::RecordDone {
                outcome: &outcome,
                correlation_id,
            }
            .emit(&mut report.metrics);
            report.outcomes.push(outcome);
        }
        Ok(report)
    }

    /// Processes the current content of one raw object.
    ///
    /// Each pass: read the object, wait for its metadata item, transform in memory, take the
    /// lease, re-read the item under the lease, make sure the output set it refers to holds every
    /// key about to be written (writing a new set and switching the item to it if not), write the
    /// outputs, delete stale ones, and mark the item with a set of exactly the outputs. A rewrite
    /// of the raw object during the pass makes the mark fail, and the next pass processes the new
    /// content. A `replay` also re-transforms content that is processed already, unless this
    /// version of the transformer processed it.
    pub async fn process(
        &self,
        bucket: &str,
        key: &str,
        sequencer: Option<&str>,
        owner: &str,
        replay: bool,
    ) -> Result<Outcome, Error> {
        let pass = if replay { Pass::Replay } else { Pass::Notified };
        let result = self
            .process_passes(bucket, key, sequencer, owner, pass)
            .await;
        if result.is_err() {
            // Best effort: an unreleased lease expires by itself.
            let _ = self.metadata.release_lease(key, owner).await;
        }
        result
    }

    fn lease(&self, key: &str, owner: &str) -> Lease {
        let now = (self.clock)();
        Lease {
            raw_key: key.to_owned(),
            owner: owner.to_owned(),
            now_ms: now.timestamp_millis(),
            until_ms: now.timestamp_millis() + self.settings.lease.as_millis() as i64,
            expires_at: now.timestamp() + i64::from(self.settings.metadata_ttl_days) * 86_400,
        }
    }

    async fn process_passes(
        &self,
        bucket: &str,
        key: &str,
        sequencer: Option<&str>,
        owner: &str,
        pass_kind: Pass,
    ) -> Result<Outcome, Error> {
        let transform_error = |source| Error::Transform {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            source,
        };
        let mut written: BTreeSet<String> = BTreeSet::new();
        let mut registered = false;
        for pass in 0..MAX_PASSES {
            let Some(object) = self.objects.get(bucket, key).await? else {
                return Ok(Outcome::Ignored {
                    key: key.to_owned(),
                    why: "object no longer exists",
                });
            };
            let sha = hex::encode(Sha256::digest(&object.body));
            let mut transformed = None;
            let item = match self.wait_for_item(key, &sha, &object).await? {
                Recorded::Item(item) => *item,
                // Written by a restore, a backfill or another writer: recorded here, from its own
                // lines, only if the item still holds what was read, so a recording made
                // meanwhile always wins.
                Recorded::Missing { previous_sha256 } => {
                    let output = transform::transform(key, &object.body, &self.pii)
                        .map_err(transform_error)?;
                    let raw = self.registration(key, &sha, &object, &output, owner);
                    if self
                        .metadata
                        .register_raw(&raw, previous_sha256.as_deref())
                        .await?
                        == RecordOutcome::Changed
                    {
                        continue;
                    }
                    events::Registered {
                        key,
                        lines: output.lines,
                        replaced: previous_sha256.as_deref(),
                        correlation_id: owner,
                    }
                    // Counted with the record's outcome (`RawObjectsRegistered`).
                    .emit(&mut Metrics::new());
                    registered = true;
                    transformed = Some(output);
                    match self.metadata.get(key).await? {
                        Some(item) if item.raw_sha256.as_deref() == Some(sha.as_str()) => item,
                        _ => continue,
                    }
                }
            };
            // A content recorded again after another content (A, B, then A) is `RAW_WRITTEN`
            // with `processed_sha256` still naming it: processed again, so that it is marked.
            let current = item.status == Some(Status::Processed)
                && item.processed_sha256.as_deref() == Some(sha.as_str())
                && match pass_kind {
                    Pass::Notified => true,
                    Pass::Replay => {
                        item.processed_version.as_deref() == Some(&self.settings.version)
                    }
                    Pass::Owners => false,
                };
            if pass == 0 && current {
                return Ok(Outcome::Duplicate {
                    key: key.to_owned(),
                });
            }
            let output = match transformed {
                Some(output) => output,
                None => {
                    transform::transform(key, &object.body, &self.pii).map_err(transform_error)?
                }
            };
            let lease = self.lease(key, owner);
            if self.metadata.acquire_lease(&lease).await? == LeaseOutcome::HeldByAnother {
                return Err(Error::Leased {
                    key: key.to_owned(),
                });
            }
            // Under the lease nobody else writes this raw object's outputs: this read is current.
            let item = self.metadata.get(key).await?.unwrap_or_default();
            if item.raw_sha256.as_deref() != Some(sha.as_str()) {
                continue;
            }
            // Under the lease, after this object entered the ledger: any object entered later
            // processes this one again if it owns some of its records.
            let ledger = Ledger::enter(&self.metadata, key, &output, lease.expires_at).await?;
            let owners = self.owners(bucket, key, &object.body, &ledger).await?;
            let output = if owners.skip.is_empty() {
                output
            } else {
                transform::transform_skipping(key, &object.body, &self.pii, &owners.skip)
                    .map_err(transform_error)?
            };
            let encoded = transform::encode(&output).map_err(transform_error)?;
            let new_keys: BTreeSet<String> = encoded.iter().map(|(k, _)| k.clone()).collect();
            // Every output of this raw key that may exist.
            let known = self.listed_outputs(key, &item).await?;
            // Recorded before written: the item must refer to a set holding every key to write.
            let mut current = item.outputs;
            let mut exact = false;
            if !new_keys.is_subset(&known) {
                let all: Vec<String> = known.union(&new_keys).cloned().collect();
                let set = write_output_set(
                    &self.metadata,
                    key,
                    OutputSet::next_generation(current.as_ref()),
                    &all,
                    lease.expires_at,
                )
                .await?;
                let previous = current.map(|s| s.generation);
                if self
                    .metadata
                    .record_outputs(key, owner, previous, &set)
                    .await?
                    == OutputsOutcome::Superseded
                {
                    continue;
                }
                if let Some(old) = &current {
                    delete_output_set(&self.metadata, key, old).await?;
                }
                exact = all.len() == new_keys.len();
                current = Some(set);
            }
            self.put_outputs(encoded, key, &sha, owner).await?;
            written.extend(new_keys.iter().cloned());
            let stale: Vec<String> = known
                .iter()
                .chain(&written)
                .filter(|k| !new_keys.contains(*k))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for k in &stale {
                self.objects
                    .delete(&self.settings.processed_bucket, k)
                    .await?;
            }
            // Objects that start inside this one may hold records this one owns: they drop
            // them before this one is marked, so a retry of this run does it again.
            let reprocessed = if pass_kind == Pass::Owners {
                Vec::new()
            } else {
                let emitted: transform::RecordIds = output
                    .objects
                    .iter()
                    .flat_map(|o| &o.rows)
                    .map(|r| (r.kinesis_seq.clone(), r.kinesis_subseq as u64))
                    .collect();
                self.reprocess_followers(bucket, key, &ledger, owner, &emitted)
                    .await?
            };
            let new_keys: Vec<String> = new_keys.into_iter().collect();
            // The set the processed item refers to: exactly the outputs, written in this pass
            // (so that its pages expire no earlier than the item).
            let outputs = match current {
                Some(set) if exact => set,
                _ => {
                    write_output_set(
                        &self.metadata,
                        key,
                        OutputSet::next_generation(current.as_ref()),
                        &new_keys,
                        lease.expires_at,
                    )
                    .await?
                }
            };
            let update = ProcessedUpdate {
                raw_key: key.to_owned(),
                lease_owner: owner.to_owned(),
                raw_sha256: sha,
                outputs,
                previous_generation: current.map(|s| s.generation),
                rows: output.rows,
                duplicates: output.duplicates,
                sequencer: sequencer.map(str::to_owned),
                processed_at: fmt_time((self.clock)()),
                correlation_id: owner.to_owned(),
                version: self.settings.version.clone(),
                owners: owners.digest,
            };
            match self.metadata.mark_processed(&update).await? {
                MarkOutcome::Marked => {
                    if let Some(old) = current.filter(|c| *c != outputs) {
                        delete_output_set(&self.metadata, key, &old).await?;
                    }
                    return Ok(Outcome::Processed {
                        key: key.to_owned(),
                        rows: output.rows,
                        duplicates: output.duplicates,
                        outputs: new_keys,
                        deleted: stale,
                        max_ingest_lag_ms: output.max_ingest_lag_ms,
                        upstream_correlation_id: object.metadata.get("correlation-id").cloned(),
                        registered,
                        owned_elsewhere: output.owned_elsewhere,
                        reprocessed,
                    });
                }
                // Rewritten while we worked, or the lease ran out: process the new content. A set
                // written for the mark is referred to by nothing; the next one written replaces
                // its pages, and the TTL removes any left over.
                MarkOutcome::Superseded => {}
            }
        }
        Err(Error::Superseded {
            key: key.to_owned(),
            passes: MAX_PASSES,
        })
    }

    /// The records of this raw object that an overlapping raw object of the shard owns: those
    /// that the candidates the ledger names in this object's minutes (objects that start before
    /// it and reach it) emitted, read from their outputs. Outputs are what an object emitted,
    /// whatever its raw object holds now (a rewrite its batch never recorded changes the raw
    /// object, not its outputs). The digest names exactly the records skipped, so a run that
    /// finds the same digest would make the same outputs.
    async fn owners(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        ledger: &Ledger,
    ) -> Result<Owners, Error> {
        let mut owners = Owners::default();
        let Some(first) = &ledger.first else {
            return Ok(owners);
        };
        let mut candidates = BTreeSet::new();
        for entries in ledger.minutes.values() {
            candidates.extend(owner::holders_before(entries, first));
        }
        if candidates.is_empty() {
            return Ok(owners);
        }
        let transform_error = |key: &str, source| Error::Transform {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            source,
        };
        let ours = transform::record_ids(body).map_err(|e| transform_error(key, e))?;
        for candidate in &candidates {
            let candidate = candidate.raw_key(&ledger.shard);
            let Some(item) = self.metadata.get(&candidate).await? else {
                continue;
            };
            for output in &self.listed_outputs(&candidate, &item).await? {
                let Some(object) = self
                    .objects
                    .get(&self.settings.processed_bucket, output)
                    .await?
                else {
                    continue;
                };
                // An output that is no Parquet file (nothing this pipeline wrote) holds no rows.
                let Ok(rows) = pipeline_core::parquet_io::read_rows(object.body) else {
                    continue;
                };
                for row in rows {
                    let id = (row.kinesis_seq, row.kinesis_subseq as u64);
                    if ours.contains(&id) {
                        owners.skip.insert(id);
                    }
                }
            }
        }
        if !owners.skip.is_empty() {
            let mut skipped: Vec<&(String, u64)> = owners.skip.iter().collect();
            skipped.sort_by(|a, b| seq_cmp(&a.0, &b.0).then(a.1.cmp(&b.1)));
            let mut digest = Sha256::new();
            for (seq, subseq) in skipped {
                digest.update(format!("{seq} {subseq}\n"));
            }
            owners.digest = hex::encode(digest.finalize());
        }
        Ok(owners)
    }

    /// Processes again the raw objects that start inside this one (in any content it had), so
    /// that each drops the records this one owns. Returns their keys.
    async fn reprocess_followers(
        &self,
        bucket: &str,
        key: &str,
        ledger: &Ledger,
        owner: &str,
        emitted: &transform::RecordIds,
    ) -> Result<Vec<String>, Error> {
        let Some(first) = &ledger.first else {
            return Ok(Vec::new());
        };
        // The minute of the first record, where every content the object had has its entry.
        // Content without lines (every record quarantined) has no minute: its earlier contents'
        // entries are in one of the minutes of its key's hour.
        let mut own_minutes: Vec<i64> = ledger.minutes.keys().next().copied().into_iter().collect();
        if own_minutes.is_empty() {
            let hour = pipeline_core::keys::parse_raw_key(key).and_then(|k| {
                chrono::NaiveDateTime::parse_from_str(
                    &format!("{}T{}:00:00", k.date, k.hour),
                    "%Y-%m-%dT%H:%M:%S",
                )
                .ok()
            });
            if let Some(hour) = hour {
                let start = owner::minute_of(hour.and_utc());
                own_minutes.extend(start..start + 60);
            }
        }
        // Read now, after this run's outputs are written: an object that entered the ledger
        // after this run's owners were read may have read this object's outputs before they
        // were written, and must be found here.
        let mut read = std::collections::BTreeMap::new();
        for minute in own_minutes {
            let entries =
                Ledger::read(&self.metadata, &owner::ledger_key(&ledger.shard, minute)).await?;
            read.insert(minute, entries);
        }
        let Some(first_minute) = read
            .iter()
            .find(|(_, entries)| entries.iter().any(|e| &e.first == first))
            .map(|(minute, _)| *minute)
        else {
            return Ok(Vec::new());
        };
        let Some((last, last_minute)) = owner::Entry::span_of(read.values().flatten(), first)
        else {
            return Ok(Vec::new());
        };
        let mut followers = BTreeSet::new();
        for minute in first_minute..=last_minute {
            if let std::collections::btree_map::Entry::Vacant(slot) = read.entry(minute) {
                slot.insert(
                    Ledger::read(&self.metadata, &owner::ledger_key(&ledger.shard, minute)).await?,
                );
            }
            followers.extend(owner::starting_within(&read[&minute], first, &last));
        }
        // In order of their first record: each one's share depends on the outputs of those that
        // start before it, which are then already settled.
        let mut followers: Vec<owner::Named> = followers.into_iter().collect();
        followers.sort_by(|a, b| seq_cmp(&a.first, &b.first));
        let mut reprocessed = Vec::new();
        for follower in &followers {
            let follower = follower.raw_key(&ledger.shard);
            // Once a follower changed, the ones after it may hold records it emits now: only
            // this object's own rows are known, so those are checked in full.
            let shortcut = reprocessed.is_empty();
            if follower != key
                && self
                    .recheck(bucket, &follower, owner, emitted, shortcut)
                    .await?
            {
                reprocessed.push(follower);
            }
        }
        Ok(reprocessed)
    }

    /// Processes a processed raw object again if the records other objects own are not those
    /// its outputs were made without. One whose current content is not processed (its run is to
    /// come, or died, or its content was rewritten by a batch that never recorded it) may have
    /// outputs of an earlier run: the rows of the records `emitted` (the records the object that
    /// starts before it now emits) are removed from them. Its own run, if one comes, takes the
    /// lease after this one and reads the ledger as it is now.
    ///
    /// With `shortcut`, a processed object that skipped no record and holds none of `emitted`
    /// is left alone without taking its lease (with a `ParallelizationFactor`, the objects of
    /// other lanes overlap every range).
    async fn recheck(
        &self,
        bucket: &str,
        key: &str,
        owner: &str,
        emitted: &transform::RecordIds,
        shortcut: bool,
    ) -> Result<bool, Error> {
        let Some(object) = self.objects.get(bucket, key).await? else {
            return Ok(false);
        };
        let sha = hex::encode(Sha256::digest(&object.body));
        if shortcut
            && let (Some(item), Ok(ids)) = (
                self.metadata.get(key).await?,
                transform::record_ids(&object.body),
            )
        {
            // Processed, nothing skipped, nothing the caller emits: no record of it can change
            // owner, whatever the caller's outputs held before.
            let whole = item.raw_sha256.as_deref() == Some(sha.as_str())
                && item.processed_sha256.as_deref() == Some(sha.as_str())
                && item.processed_owners.as_deref() == Some("");
            if whole && ids.is_disjoint(emitted) {
                return Ok(false);
            }
        }
        self.acquire_waiting(key, owner).await?;
        let lease = self.lease(key, owner);
        let stale = async {
            let Some(item) = self.metadata.get(key).await? else {
                return Ok(Recheck::Current);
            };
            if item.raw_sha256.as_deref() != Some(sha.as_str())
                || item.processed_sha256.as_deref() != Some(sha.as_str())
            {
                return Ok(if self.prune(key, owner, &item, emitted).await? {
                    Recheck::Pruned
                } else {
                    Recheck::Current
                });
            }
            let output = transform::transform(key, &object.body, &self.pii).map_err(|source| {
                Error::Transform {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    source,
                }
            })?;
            let ledger = Ledger::enter(&self.metadata, key, &output, lease.expires_at).await?;
            let owners = self.owners(bucket, key, &object.body, &ledger).await?;
            Ok::<_, Error>(
                if item.processed_owners.unwrap_or_default() == owners.digest {
                    Recheck::Current
                } else {
                    Recheck::Stale
                },
            )
        }
        .await;
        self.metadata.release_lease(key, owner).await?;
        match stale? {
            Recheck::Current => return Ok(false),
            Recheck::Pruned => return Ok(true),
            Recheck::Stale => {}
        }
        Box::pin(self.process_passes(bucket, key, None, owner, Pass::Owners)).await?;
        Ok(true)
    }

    /// Takes the lease of another raw object, waiting (up to `item_wait`) while its own run
    /// holds it: runs are short, and the caller holds a lease of an object that starts before
    /// it, so two runs never wait for each other.
    async fn acquire_waiting(&self, key: &str, owner: &str) -> Result<(), Error> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            if self.metadata.acquire_lease(&self.lease(key, owner)).await? == LeaseOutcome::Acquired
            {
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= self.settings.item_wait {
                return Err(Error::Leased {
                    key: key.to_owned(),
                });
            }
            tokio::time::sleep(delay.min(self.settings.item_wait.saturating_sub(waited))).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Every output of `key` that its item says may exist.
    async fn listed_outputs(
        &self,
        key: &str,
        item: &MetadataItem,
    ) -> Result<BTreeSet<String>, Error> {
        let mut outputs: BTreeSet<String> = item.legacy_outputs.iter().cloned().collect();
        if let Some(set) = &item.outputs {
            outputs.extend(read_output_set(&self.metadata, key, set).await?);
        }
        Ok(outputs)
    }

    /// Removes the rows of `emitted` records from the outputs `item` lists; an output left
    /// without rows is deleted (the set may list outputs that do not exist). Under the lease.
    async fn prune(
        &self,
        key: &str,
        owner: &str,
        item: &MetadataItem,
        emitted: &transform::RecordIds,
    ) -> Result<bool, Error> {
        let bucket = &self.settings.processed_bucket;
        let mut pruned = false;
        for output in &self.listed_outputs(key, item).await? {
            let Some(object) = self.objects.get(bucket, output).await? else {
                continue;
            };
            let parquet_error = |e| Error::Transform {
                bucket: bucket.clone(),
                key: output.clone(),
                source: TransformError::Parquet(e),
            };
            // An output that is no Parquet file (nothing this pipeline wrote) holds no rows.
            let Ok(rows) = pipeline_core::parquet_io::read_rows(object.body) else {
                continue;
            };
            let before = rows.len();
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|r| !emitted.contains(&(r.kinesis_seq.clone(), r.kinesis_subseq as u64)))
                .collect();
            if rows.len() == before {
                continue;
            }
            if !pruned {
                // Before the first change: a later run never takes these outputs as made from
                // the content the item names.
                self.metadata.forget_processed(key, owner).await?;
                pruned = true;
            }
            if rows.is_empty() {
                self.objects.delete(bucket, output).await?;
            } else {
                let body = pipeline_core::parquet_io::write_rows(&rows).map_err(parquet_error)?;
                self.objects
                    .put(
                        bucket,
                        output,
                        body,
                        "application/vnd.apache.parquet",
                        &object.metadata,
                    )
                    .await?;
            }
        }
        Ok(pruned)
    }

    async fn put_outputs(
        &self,
        encoded: Vec<(String, Vec<u8>)>,
        raw_key: &str,
        sha: &str,
        owner: &str,
    ) -> Result<(), Error> {
        let meta = std::collections::BTreeMap::from([
            ("raw-key".to_owned(), raw_key.to_owned()),
            ("raw-sha256".to_owned(), sha.to_owned()),
            ("correlation-id".to_owned(), owner.to_owned()),
        ]);
        let mut encoded = encoded.into_iter().peekable();
        while encoded.peek().is_some() {
            let chunk: Vec<(String, Vec<u8>)> = encoded.by_ref().take(PUT_CONCURRENCY).collect();
            try_join_all(chunk.into_iter().map(|(k, body)| {
                let meta = &meta;
                async move {
                    self.objects
                        .put(
                            &self.settings.processed_bucket,
                            &k,
                            body,
                            "application/vnd.apache.parquet",
                            meta,
                        )
                        .await
                }
            }))
            .await?;
        }
        Ok(())
    }

    /// Waits until the metadata item describes this content (the stream processor writes the
    /// object first and the item right after, so a notification can overtake the item).
    ///
    /// Only an object the stream processor wrote is waited for: its `sha256` metadata names its
    /// content, and if its item is still missing after the wait the run fails retryably. Any
    /// other object (a restore without metadata, a backfill, another writer) is `Missing` at
    /// once: the caller registers it.
    async fn wait_for_item(
        &self,
        key: &str,
        sha: &str,
        object: &StoredObject,
    ) -> Result<Recorded, Error> {
        let ours = object.metadata.get(RAW_SHA256_METADATA).map(String::as_str) == Some(sha);
        let wait = if ours {
            self.settings.item_wait
        } else {
            Duration::ZERO
        };
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            let item = self.metadata.get(key).await?;
            if let Some(item) = item.as_ref()
                && item.raw_sha256.as_deref() == Some(sha)
            {
                return Ok(Recorded::Item(Box::new(item.clone())));
            }
            let waited = started.elapsed();
            if waited >= wait {
                if ours {
                    // Its batch failed after the write: the batch is retried or dead-lettered,
                    // and its retry or redrive records it. Registering it here would process
                    // records that a dead letter also references.
                    return Err(Error::NotRecorded {
                        key: key.to_owned(),
                        waited,
                    });
                }
                return Ok(Recorded::Missing {
                    previous_sha256: item.and_then(|i| i.raw_sha256),
                });
            }
            tokio::time::sleep(delay.min(wait.saturating_sub(waited))).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// The item of an object the stream processor did not record, from its lines: the batch
    /// they span and their counts (the object's quarantined units, if any, are not known).
    fn registration(
        &self,
        key: &str,
        sha: &str,
        object: &StoredObject,
        output: &transform::TransformOutput,
        owner: &str,
    ) -> RawItem {
        let now = (self.clock)();
        let parsed = pipeline_core::keys::parse_raw_key(key);
        let (first, last, first_arrival, last_arrival) = match &output.span {
            Some(span) => (
                span.first_sequence_number.clone(),
                span.last_sequence_number.clone(),
                fmt_time(span.first_arrival),
                fmt_time(span.last_arrival),
            ),
            None => {
                let first = parsed
                    .as_ref()
                    .map(|k| k.first_sequence_number.to_owned())
                    .unwrap_or_default();
                (first.clone(), first, fmt_time(now), fmt_time(now))
            }
        };
        RawItem {
            raw_key: key.to_owned(),
            raw_sha256: sha.to_owned(),
            shard_id: parsed
                .as_ref()
                .map(|k| k.shard_id.to_owned())
                .unwrap_or_default(),
            first_sequence_number: first,
            last_sequence_number: last,
            first_arrival,
            last_arrival,
            kinesis_records: output.lines,
            valid_records: output.lines,
            quarantined_records: 0,
            quarantine_key: None,
            raw_bytes: object.body.len() as u64,
            raw_uncompressed_bytes: output.uncompressed_bytes,
            correlation_id: owner.to_owned(),
            written_at: fmt_time(now),
            expires_at: now.timestamp() + i64::from(self.settings.metadata_ttl_days) * 86_400,
            registered_by: Some(REGISTERED_BY.to_owned()),
        }
    }
}

/// Why a raw object is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// An S3 notification (or the auditor's): content already processed is a duplicate.
    Notified,
    /// A replay: content is processed again unless this version processed it.
    Replay,
    /// Another object now owns a different share of its records: processed again, and the
    /// objects inside it are not revisited (its own range did not change).
    Owners,
}

/// What a recheck found.
enum Recheck {
    /// The outputs hold what they should.
    Current,
    /// Rows the object that starts before it now emits were removed from its outputs.
    Pruned,
    /// Processed, with other records owned elsewhere now: to be processed again.
    Stale,
}

/// The records of a raw object that overlapping objects own.
#[derive(Debug, Default)]
struct Owners {
    skip: transform::RecordIds,
    /// A digest of `skip`; empty when it is empty.
    digest: String,
}

/// A raw object's place in its shard's ledger: its entries, and the ledger items of the minutes
/// its records arrived in, read after it entered them.
#[derive(Debug, Default)]
struct Ledger {
    shard: String,
    /// Its key's first sequence number; `None` for an object without lines.
    first: Option<String>,
    minutes: std::collections::BTreeMap<i64, Vec<owner::Entry>>,
}

impl Ledger {
    async fn enter<M: MetadataStore>(
        metadata: &M,
        key: &str,
        output: &transform::TransformOutput,
        expires_at: i64,
    ) -> Result<Ledger, Error> {
        let mut ledger = Ledger::default();
        let Some(parsed) = pipeline_core::keys::parse_raw_key(key) else {
            return Ok(ledger);
        };
        ledger.shard = parsed.shard_id.to_owned();
        ledger.first = Some(parsed.first_sequence_number.to_owned());
        let Some(span) = &output.span else {
            return Ok(ledger);
        };
        let entry =
            owner::Entry::new(&parsed, &span.last_sequence_number, span.last_arrival).encode();
        for &minute in &output.minutes {
            let ledger_key = owner::ledger_key(parsed.shard_id, minute);
            metadata
                .add_to_ledger(&ledger_key, &entry, expires_at)
                .await?;
            ledger
                .minutes
                .insert(minute, Ledger::read(metadata, &ledger_key).await?);
        }
        Ok(ledger)
    }

    async fn read<M: MetadataStore>(
        metadata: &M,
        ledger_key: &str,
    ) -> Result<Vec<owner::Entry>, Error> {
        Ok(metadata
            .ledger(ledger_key)
            .await?
            .iter()
            .filter_map(|e| owner::Entry::parse(e))
            .collect())
    }
}

/// What the metadata table says of a raw object's current content.
enum Recorded {
    Item(Box<MetadataItem>),
    Missing { previous_sha256: Option<String> },
}

#[cfg(test)]
mod tests;
