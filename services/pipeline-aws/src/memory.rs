//! In-memory stores with the same semantics as S3 and the metadata table, plus fault injection:
//! a call can fail before it takes effect, or take effect and still report a failure (a timeout
//! after the write landed). Used by handler tests and the pipeline model; never in production.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::{STATUS_PROCESSED, STATUS_RAW_WRITTEN};
use crate::{
    Lease, LeaseOutcome, MarkOutcome, MetadataItem, MetadataStore, ObjectStore, ProcessedUpdate,
    RawItem, RecordOutcome, StoreError, StoredObject,
};

/// When calls fail. Deterministic for a seed.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Probability that a call fails without effect.
    pub fail_before: f64,
    /// Probability that a call takes effect and then reports a failure.
    pub fail_after: f64,
    state: u64,
}

impl Faults {
    pub fn none() -> Self {
        Faults {
            fail_before: 0.0,
            fail_after: 0.0,
            state: 1,
        }
    }

    pub fn new(seed: u64, fail_before: f64, fail_after: f64) -> Self {
        Faults {
            fail_before,
            fail_after,
            state: seed | 1,
        }
    }

    fn next(&mut self) -> f64 {
        // xorshift64*: small, deterministic, good enough to pick failures.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn roll(&mut self) -> Fault {
        let x = self.next();
        if x < self.fail_before {
            Fault::Before
        } else if x < self.fail_before + self.fail_after {
            Fault::After
        } else {
            Fault::None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Before,
    After,
}

fn injected(operation: &'static str, target: &str) -> StoreError {
    StoreError::new(operation, target, true, "injected fault: throttled")
}

/// A put under a prefix, as an S3 event notification would announce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutNotice {
    pub bucket: String,
    pub key: String,
    /// Increases with every put, like S3's `sequencer`, as a fixed-width hex string.
    pub sequencer: String,
}

#[derive(Debug, Default)]
struct Objects {
    data: BTreeMap<(String, String), StoredObject>,
    notices: Vec<PutNotice>,
    puts: u64,
}

/// An object store in memory.
#[derive(Debug, Clone)]
pub struct MemoryObjectStore {
    inner: Arc<Mutex<Objects>>,
    faults: Arc<Mutex<Faults>>,
}

impl Default for MemoryObjectStore {
    fn default() -> Self {
        Self::new(Faults::none())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryObjectStore {
    pub fn new(faults: Faults) -> Self {
        MemoryObjectStore {
            inner: Arc::default(),
            faults: Arc::new(Mutex::new(faults)),
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// Every put since the last call, in order.
    pub fn take_notices(&self) -> Vec<PutNotice> {
        std::mem::take(&mut lock(&self.inner).notices)
    }

    /// Keys in a bucket under a prefix, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        lock(&self.inner)
            .data
            .keys()
            .filter(|(b, k)| b == bucket && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .collect()
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        lock(&self.inner)
            .data
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }

    fn roll(&self) -> Fault {
        lock(&self.faults).roll()
    }
}

impl ObjectStore for MemoryObjectStore {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        _content_type: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let fault = self.roll();
        if fault == Fault::Before {
            return Err(injected("PutObject", key));
        }
        let mut inner = lock(&self.inner);
        inner.puts += 1;
        let sequencer = format!("{:016X}", inner.puts);
        inner.data.insert(
            (bucket.to_owned(), key.to_owned()),
            StoredObject {
                body,
                metadata: metadata.clone(),
            },
        );
        inner.notices.push(PutNotice {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            sequencer,
        });
        drop(inner);
        if fault == Fault::After {
            Err(injected("PutObject", key))
        } else {
            Ok(())
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<StoredObject>, StoreError> {
        if self.roll() != Fault::None {
            return Err(injected("GetObject", key));
        }
        Ok(self.object(bucket, key))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        let fault = self.roll();
        if fault == Fault::Before {
            return Err(injected("DeleteObject", key));
        }
        lock(&self.inner)
            .data
            .remove(&(bucket.to_owned(), key.to_owned()));
        if fault == Fault::After {
            Err(injected("DeleteObject", key))
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Item {
    status: String,
    pending: bool,
    raw: Option<RawItem>,
    processed_sha256: Option<String>,
    outputs: Vec<String>,
    rows: Option<u64>,
    duplicates: Option<u64>,
    processed_at: Option<String>,
    lease: Option<(String, i64)>,
    written_outputs: std::collections::BTreeSet<String>,
}

/// The metadata table in memory, with the same conditional writes as [`crate::dynamodb`].
#[derive(Debug, Clone)]
pub struct MemoryMetadataStore {
    items: Arc<Mutex<HashMap<String, Item>>>,
    faults: Arc<Mutex<Faults>>,
}

impl Default for MemoryMetadataStore {
    fn default() -> Self {
        Self::new(Faults::none())
    }
}

impl MemoryMetadataStore {
    pub fn new(faults: Faults) -> Self {
        MemoryMetadataStore {
            items: Arc::default(),
            faults: Arc::new(Mutex::new(faults)),
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    pub fn all(&self) -> Vec<MetadataItem> {
        let items = lock(&self.items);
        let mut v: Vec<MetadataItem> = items.iter().map(|(k, i)| to_item(k, i)).collect();
        v.sort_by(|a, b| a.raw_key.cmp(&b.raw_key));
        v
    }

    fn roll(&self) -> Fault {
        lock(&self.faults).roll()
    }
}

fn to_item(key: &str, i: &Item) -> MetadataItem {
    MetadataItem {
        raw_key: key.to_owned(),
        status: i.status.clone(),
        raw_sha256: i.raw.as_ref().map(|r| r.raw_sha256.clone()),
        processed_sha256: i.processed_sha256.clone(),
        outputs: i.outputs.clone(),
        written_outputs: i.written_outputs.iter().cloned().collect(),
        valid_records: i.raw.as_ref().map_or(0, |r| r.valid_records),
        processed_rows: i.rows,
        duplicates: i.duplicates,
        written_at: i.raw.as_ref().map(|r| r.written_at.clone()),
        processed_at: i.processed_at.clone(),
        correlation_id: i.raw.as_ref().map(|r| r.correlation_id.clone()),
    }
}

impl MetadataStore for MemoryMetadataStore {
    async fn record_raw(&self, raw: &RawItem) -> Result<RecordOutcome, StoreError> {
        let fault = self.roll();
        if fault == Fault::Before {
            return Err(injected("UpdateItem", &raw.raw_key));
        }
        let outcome = {
            let mut items = lock(&self.items);
            let item = items.entry(raw.raw_key.clone()).or_default();
            if item
                .raw
                .as_ref()
                .is_some_and(|r| r.raw_sha256 == raw.raw_sha256)
            {
                RecordOutcome::AlreadyRecorded
            } else {
                item.status = STATUS_RAW_WRITTEN.to_owned();
                item.pending = true;
                item.raw = Some(raw.clone());
                RecordOutcome::Recorded
            }
        };
        if fault == Fault::After {
            Err(injected("UpdateItem", &raw.raw_key))
        } else {
            Ok(outcome)
        }
    }

    async fn get(&self, raw_key: &str) -> Result<Option<MetadataItem>, StoreError> {
        if self.roll() != Fault::None {
            return Err(injected("GetItem", raw_key));
        }
        Ok(lock(&self.items).get(raw_key).map(|i| to_item(raw_key, i)))
    }

    async fn mark_processed(&self, u: &ProcessedUpdate) -> Result<MarkOutcome, StoreError> {
        let fault = self.roll();
        if fault == Fault::Before {
            return Err(injected("UpdateItem", &u.raw_key));
        }
        let outcome = {
            let mut items = lock(&self.items);
            match items.get_mut(&u.raw_key) {
                Some(item)
                    if item
                        .raw
                        .as_ref()
                        .is_some_and(|r| r.raw_sha256 == u.raw_sha256)
                        && item
                            .lease
                            .as_ref()
                            .is_some_and(|(owner, _)| *owner == u.lease_owner) =>
                {
                    item.lease = None;
                    item.written_outputs.clear();
                    item.status = STATUS_PROCESSED.to_owned();
                    item.pending = false;
                    item.processed_sha256 = Some(u.raw_sha256.clone());
                    item.outputs = u.outputs.clone();
                    item.rows = Some(u.rows);
                    item.duplicates = Some(u.duplicates);
                    item.processed_at = Some(u.processed_at.clone());
                    MarkOutcome::Marked
                }
                _ => MarkOutcome::Superseded,
            }
        };
        if fault == Fault::After {
            Err(injected("UpdateItem", &u.raw_key))
        } else {
            Ok(outcome)
        }
    }

    async fn acquire_lease(&self, lease: &Lease) -> Result<LeaseOutcome, StoreError> {
        let fault = self.roll();
        if fault == Fault::Before {
            return Err(injected("UpdateItem", &lease.raw_key));
        }
        let outcome = {
            let mut items = lock(&self.items);
            let item = items.entry(lease.raw_key.clone()).or_default();
            match &item.lease {
                Some((owner, until)) if *until >= lease.now_ms && *owner != lease.owner => {
                    LeaseOutcome::HeldByAnother
                }
                _ => {
                    item.lease = Some((lease.owner.clone(), lease.until_ms));
                    item.written_outputs.extend(lease.outputs.iter().cloned());
                    LeaseOutcome::Acquired
                }
            }
        };
        if fault == Fault::After {
            Err(injected("UpdateItem", &lease.raw_key))
        } else {
            Ok(outcome)
        }
    }

    async fn release_lease(&self, raw_key: &str, owner: &str) -> Result<(), StoreError> {
        if self.roll() == Fault::Before {
            return Err(injected("UpdateItem", raw_key));
        }
        if let Some(item) = lock(&self.items).get_mut(raw_key)
            && item.lease.as_ref().is_some_and(|(o, _)| o == owner)
        {
            item.lease = None;
        }
        Ok(())
    }

    async fn pending_before(&self, written_before: &str) -> Result<Vec<MetadataItem>, StoreError> {
        if self.roll() != Fault::None {
            return Err(injected("Query", "pending index"));
        }
        let items = lock(&self.items);
        let mut v: Vec<MetadataItem> = items
            .iter()
            .filter(|(_, i)| {
                i.pending
                    && i.raw
                        .as_ref()
                        .is_some_and(|r| r.written_at.as_str() < written_before)
            })
            .map(|(k, i)| to_item(k, i))
            .collect();
        v.sort_by(|a, b| a.written_at.cmp(&b.written_at));
        Ok(v)
    }
}
