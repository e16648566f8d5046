//! In-memory stores with the same semantics as S3 and the metadata table, plus fault injection:
//! a call can fail before it takes effect, or take effect and still report a failure (a timeout
//! after the write landed). Used by handler tests and the pipeline model; never in production.
//!
//! The metadata table enforces DynamoDB's item size limit as DynamoDB computes it
//! ([`pipeline_core::metadata::item_size`]) over the attributes [`pipeline_aws::dynamodb`] writes, and
//! answers an oversized write as DynamoDB does: a `ValidationException`, which no retry can fix.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use pipeline_core::metadata::{
    AttributeValue, MAX_ITEM_SIZE, PENDING_BUCKETS, item_size, output_page_item, output_page_key,
    pending_bucket, pending_value_of,
};
use pipeline_core::owner::ledger_item_size;

use pipeline_aws::store::Status;
use pipeline_aws::{
    Lease, LeaseOutcome, ListedObject, MarkOutcome, MetadataItem, MetadataStore, ObjectCatalog,
    ObjectStore, OutputPage, OutputSet, OutputsOutcome, PendingObject, ProcessedUpdate, RawItem,
    RecordOutcome, StoreError, StoredObject,
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
    /// Unix milliseconds of each object's last put (S3's `LastModified`).
    modified: HashMap<(String, String), i64>,
    notices: Vec<PutNotice>,
    puts: u64,
    /// What the store's clock says: set by the test, never read from the system.
    now_ms: i64,
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

    /// Sets the time the next puts are stamped with (`LastModified` in listings).
    pub fn set_now_ms(&self, now_ms: i64) {
        lock(&self.inner).now_ms = now_ms;
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
        let now_ms = inner.now_ms;
        inner
            .modified
            .insert((bucket.to_owned(), key.to_owned()), now_ms);
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

impl ObjectCatalog for MemoryObjectStore {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, StoreError> {
        if self.roll() != Fault::None {
            return Err(injected("ListObjectsV2", prefix));
        }
        let inner = lock(&self.inner);
        Ok(inner
            .data
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((b, k), o)| ListedObject {
                key: k.clone(),
                size: o.body.len() as u64,
                last_modified_ms: inner
                    .modified
                    .get(&(b.clone(), k.clone()))
                    .copied()
                    .unwrap_or(0),
            })
            .collect())
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        if self.roll() != Fault::None {
            return Err(injected("HeadObject", key));
        }
        Ok(self.object(bucket, key).map(|o| o.metadata))
    }
}

#[derive(Debug, Clone, Default)]
struct Item {
    status: Option<Status>,
    pending: bool,
    raw: Option<RawItem>,
    /// `created_at`: the first `written_at` (`if_not_exists`).
    created_at: Option<String>,
    /// `expires_at` set by a lease on an item the stream processor has not written.
    lease_expires_at: Option<i64>,
    processed_sha256: Option<String>,
    processed_version: Option<String>,
    processed_owners: Option<String>,
    rows: Option<u64>,
    duplicates: Option<u64>,
    processed_at: Option<String>,
    processed_correlation_id: Option<String>,
    /// `processed_sequencer`: a string, or DynamoDB's NULL.
    processed_sequencer: Option<Option<String>>,
    lease: Option<(String, i64)>,
    outputs: Option<OutputSet>,
    /// The `outputs` list of an item written before output pages ([`MemoryMetadataStore::seed_legacy_outputs`]).
    legacy_outputs: Vec<String>,
}

impl Item {
    /// The item's attributes as [`pipeline_aws::dynamodb`] writes them, names and types included.
    fn attributes<'a>(
        &'a self,
        key: &'a str,
        pending: &'a str,
    ) -> Vec<(&'static str, AttributeValue<'a>)> {
        use AttributeValue as V;
        let mut a: Vec<(&'static str, V<'a>)> = vec![("raw_key", V::S(key))];
        if let Some(status) = self.status {
            a.push(("status", V::S(status.as_str())));
        }
        if self.pending {
            a.push(("pending", V::S(pending)));
        }
        if let Some(r) = &self.raw {
            a.extend([
                ("raw_written_at", V::S(&r.written_at)),
                ("raw_sha256", V::S(&r.raw_sha256)),
                ("shard_id", V::S(&r.shard_id)),
                ("first_sequence_number", V::S(&r.first_sequence_number)),
                ("last_sequence_number", V::S(&r.last_sequence_number)),
                ("first_arrival", V::S(&r.first_arrival)),
                ("last_arrival", V::S(&r.last_arrival)),
                ("kinesis_records", V::number(r.kinesis_records)),
                ("valid_records", V::number(r.valid_records)),
                ("quarantined_records", V::number(r.quarantined_records)),
                ("raw_bytes", V::number(r.raw_bytes)),
                (
                    "raw_uncompressed_bytes",
                    V::number(r.raw_uncompressed_bytes),
                ),
                ("correlation_id", V::S(&r.correlation_id)),
                ("expires_at", V::number(r.expires_at)),
            ]);
            if let Some(q) = &r.quarantine_key {
                a.push(("quarantine_key", V::S(q)));
            }
            if let Some(by) = &r.registered_by {
                a.push(("registered_by", V::S(by)));
            }
        } else if let Some(e) = self.lease_expires_at {
            a.push(("expires_at", V::number(e)));
        }
        if let Some(c) = &self.created_at {
            a.push(("created_at", V::S(c)));
        }
        if let Some(s) = &self.processed_sha256 {
            a.push(("processed_sha256", V::S(s)));
        }
        if let Some(v) = &self.processed_version {
            a.push(("processed_version", V::S(v)));
        }
        if let Some(o) = &self.processed_owners {
            a.push(("processed_owners", V::S(o)));
        }
        if let Some(o) = &self.outputs {
            a.push(("output_generation", V::number(o.generation)));
            a.push(("output_pages", V::number(o.pages)));
            a.push(("output_count", V::number(o.count)));
        }
        if !self.legacy_outputs.is_empty() {
            a.push((
                "outputs",
                V::L(self.legacy_outputs.iter().map(|k| V::S(k)).collect()),
            ));
        }
        if let Some(n) = self.rows {
            a.push(("processed_rows", V::number(n)));
        }
        if let Some(n) = self.duplicates {
            a.push(("duplicates", V::number(n)));
        }
        if let Some(t) = &self.processed_at {
            a.push(("processed_at", V::S(t)));
        }
        if let Some(c) = &self.processed_correlation_id {
            a.push(("processed_correlation_id", V::S(c)));
        }
        if let Some(s) = &self.processed_sequencer {
            a.push(("processed_sequencer", s.as_deref().map_or(V::Null, V::S)));
        }
        if let Some((owner, until)) = &self.lease {
            a.push(("lease_owner", V::S(owner)));
            a.push(("lease_until", V::number(until)));
        }
        a
    }

    fn size(&self, key: &str) -> usize {
        item_size(&self.attributes(key, &pending_value_of(key)))
    }

    fn refers_to(&self, generation: Option<u64>) -> bool {
        self.outputs.map(|o| o.generation) == generation
    }

    fn leased_by(&self, owner: &str) -> bool {
        self.lease.as_ref().is_some_and(|(o, _)| o == owner)
    }
}

/// One page of an output set, an item of its own.
#[derive(Debug, Clone)]
struct Page {
    raw_key: String,
    keys: Vec<String>,
    expires_at: i64,
}

impl Page {
    fn size(&self, key: &str) -> usize {
        item_size(&output_page_item(
            key,
            &self.raw_key,
            &self.keys,
            self.expires_at,
        ))
    }
}

/// What DynamoDB answers an UpdateItem whose result would exceed the item size limit.
fn too_large(key: &str, size: usize) -> StoreError {
    StoreError::new(
        "UpdateItem",
        format!("{key} ({size} bytes)"),
        false,
        "ValidationException: Item size to update has exceeded the maximum allowed size",
    )
}

/// Applies `update` to a copy of the item (created if absent, as UpdateItem does) and stores it
/// only if the result fits DynamoDB's item size limit.
fn update_checked<T>(
    items: &mut HashMap<String, Item>,
    key: &str,
    update: impl FnOnce(&mut Item) -> T,
) -> Result<T, StoreError> {
    let mut next = items.get(key).cloned().unwrap_or_default();
    let out = update(&mut next);
    let size = next.size(key);
    if size > MAX_ITEM_SIZE {
        return Err(too_large(key, size));
    }
    items.insert(key.to_owned(), next);
    Ok(out)
}

/// The table: raw objects' items, output pages and ledger items, which share it in DynamoDB.
#[derive(Debug, Default)]
struct Table {
    items: HashMap<String, Item>,
    pages: HashMap<String, Page>,
    /// Ledger items: entries and TTL.
    ledgers: HashMap<String, (BTreeSet<String>, i64)>,
}

/// The metadata table in memory, with the same conditional writes as [`pipeline_aws::dynamodb`].
#[derive(Debug, Clone)]
pub struct MemoryMetadataStore {
    table: Arc<Mutex<Table>>,
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
            table: Arc::default(),
            faults: Arc::new(Mutex::new(faults)),
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// Every raw object's item, by key (output pages are not raw objects' items).
    pub fn all(&self) -> Vec<MetadataItem> {
        let table = lock(&self.table);
        let mut v: Vec<MetadataItem> = table.items.iter().map(|(k, i)| to_item(k, i)).collect();
        v.sort_by(|a, b| a.raw_key.cmp(&b.raw_key));
        v
    }

    /// The keys of every output page item, sorted.
    pub fn page_keys(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.table).pages.keys().cloned().collect();
        v.sort();
        v
    }

    /// The size DynamoDB would give the item (a raw object's, or an output page's) of `key`.
    pub fn item_size(&self, key: &str) -> Option<usize> {
        let table = lock(&self.table);
        table
            .items
            .get(key)
            .map(|i| i.size(key))
            .or_else(|| table.pages.get(key).map(|p| p.size(key)))
    }

    /// The string and number attributes of `raw_key`'s item as [`pipeline_aws::dynamodb`] writes them,
    /// numbers as their decimal text.
    pub fn attributes(&self, raw_key: &str) -> Option<BTreeMap<String, String>> {
        let table = lock(&self.table);
        let item = table.items.get(raw_key)?;
        let pending = pending_value_of(raw_key);
        Some(
            item.attributes(raw_key, &pending)
                .into_iter()
                .filter_map(|(name, value)| match value {
                    AttributeValue::S(v) => Some((name.to_owned(), v.to_owned())),
                    AttributeValue::N(v) => Some((name.to_owned(), v)),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Removes `raw_key`'s item, as if nothing had recorded the object.
    pub fn delete_item(&self, raw_key: &str) {
        lock(&self.table).items.remove(raw_key);
    }

    /// Gives the item of `raw_key` the `outputs` list an item written before output pages had,
    /// as the table holds such items after an upgrade.
    pub fn seed_legacy_outputs(&self, raw_key: &str, keys: Vec<String>) -> Result<(), StoreError> {
        update_checked(&mut lock(&self.table).items, raw_key, |item| {
            item.legacy_outputs = keys;
            item.outputs = None;
        })
    }

    fn roll(&self) -> Fault {
        lock(&self.faults).roll()
    }

    /// Runs `f` under the fault model: a failure before it has no effect, one after it takes effect.
    fn faulty<T>(
        &self,
        operation: &'static str,
        target: &str,
        f: impl FnOnce(&mut Table) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let fault = self.roll();
        if fault == Fault::Before {
            return Err(injected(operation, target));
        }
        let out = f(&mut lock(&self.table))?;
        if fault == Fault::After {
            Err(injected(operation, target))
        } else {
            Ok(out)
        }
    }
}

/// A raw object's item as `record_raw` and `register_raw` write it: status `RAW_WRITTEN`, pending.
fn write_raw(t: &mut Table, raw: &RawItem) -> Result<(), StoreError> {
    update_checked(&mut t.items, &raw.raw_key, |item| {
        item.status = Some(Status::RawWritten);
        item.pending = true;
        item.created_at
            .get_or_insert_with(|| raw.written_at.clone());
        item.raw = Some(raw.clone());
    })
}

fn to_item(key: &str, i: &Item) -> MetadataItem {
    MetadataItem {
        raw_key: key.to_owned(),
        status: i.status,
        raw_sha256: i.raw.as_ref().map(|r| r.raw_sha256.clone()),
        processed_sha256: i.processed_sha256.clone(),
        processed_version: i.processed_version.clone(),
        processed_owners: i.processed_owners.clone(),
        outputs: i.outputs,
        legacy_outputs: i.legacy_outputs.clone(),
        valid_records: i.raw.as_ref().map_or(0, |r| r.valid_records),
        quarantined_records: i.raw.as_ref().map_or(0, |r| r.quarantined_records),
        processed_rows: i.rows,
        duplicates: i.duplicates,
        written_at: i.raw.as_ref().map(|r| r.written_at.clone()),
        processed_at: i.processed_at.clone(),
        correlation_id: i.raw.as_ref().map(|r| r.correlation_id.clone()),
        pending: i.pending,
        lease_until_ms: i.lease.as_ref().map(|(_, until)| *until),
    }
}

impl MetadataStore for MemoryMetadataStore {
    async fn record_raw(&self, raw: &RawItem) -> Result<RecordOutcome, StoreError> {
        self.faulty("UpdateItem", &raw.raw_key, |t| {
            if let Some(current) = t
                .items
                .get_mut(&raw.raw_key)
                .and_then(|i| i.raw.as_mut())
                .filter(|r| r.raw_sha256 == raw.raw_sha256)
            {
                if current.registered_by.is_none() {
                    return Ok(RecordOutcome::AlreadyRecorded);
                }
                // The batch's own facts replace those registered from the lines.
                current.first_sequence_number = raw.first_sequence_number.clone();
                current.last_sequence_number = raw.last_sequence_number.clone();
                current.first_arrival = raw.first_arrival.clone();
                current.last_arrival = raw.last_arrival.clone();
                current.kinesis_records = raw.kinesis_records;
                current.valid_records = raw.valid_records;
                current.quarantined_records = raw.quarantined_records;
                current.correlation_id = raw.correlation_id.clone();
                current.registered_by = None;
                return Ok(RecordOutcome::Adopted);
            }
            write_raw(t, raw)?;
            Ok(RecordOutcome::Recorded)
        })
    }

    async fn register_raw(
        &self,
        raw: &RawItem,
        previous_sha256: Option<&str>,
    ) -> Result<RecordOutcome, StoreError> {
        self.faulty("UpdateItem", &raw.raw_key, |t| {
            let current = t
                .items
                .get(&raw.raw_key)
                .and_then(|i| i.raw.as_ref())
                .map(|r| r.raw_sha256.as_str());
            if current != previous_sha256 {
                return Ok(RecordOutcome::Changed);
            }
            write_raw(t, raw)?;
            Ok(RecordOutcome::Recorded)
        })
    }

    async fn get(&self, raw_key: &str) -> Result<Option<MetadataItem>, StoreError> {
        if self.roll() != Fault::None {
            return Err(injected("GetItem", raw_key));
        }
        Ok(lock(&self.table)
            .items
            .get(raw_key)
            .map(|i| to_item(raw_key, i)))
    }

    async fn mark_processed(&self, u: &ProcessedUpdate) -> Result<MarkOutcome, StoreError> {
        self.faulty("UpdateItem", &u.raw_key, |t| {
            let applies = t.items.get(&u.raw_key).is_some_and(|item| {
                item.raw
                    .as_ref()
                    .is_some_and(|r| r.raw_sha256 == u.raw_sha256)
                    && item.leased_by(&u.lease_owner)
                    && item.refers_to(u.previous_generation)
            });
            if !applies {
                return Ok(MarkOutcome::Superseded);
            }
            update_checked(&mut t.items, &u.raw_key, |item| {
                item.lease = None;
                item.status = Some(Status::Processed);
                item.pending = false;
                item.processed_sha256 = Some(u.raw_sha256.clone());
                item.processed_version = Some(u.version.clone());
                item.processed_owners = Some(u.owners.clone());
                item.outputs = Some(u.outputs);
                item.legacy_outputs.clear();
                item.rows = Some(u.rows);
                item.duplicates = Some(u.duplicates);
                item.processed_at = Some(u.processed_at.clone());
                item.processed_correlation_id = Some(u.correlation_id.clone());
                item.processed_sequencer = Some(u.sequencer.clone());
            })?;
            Ok(MarkOutcome::Marked)
        })
    }

    async fn record_outputs(
        &self,
        raw_key: &str,
        owner: &str,
        previous: Option<u64>,
        set: &OutputSet,
    ) -> Result<OutputsOutcome, StoreError> {
        self.faulty("UpdateItem", raw_key, |t| {
            let applies = t
                .items
                .get(raw_key)
                .is_some_and(|item| item.leased_by(owner) && item.refers_to(previous));
            if !applies {
                return Ok(OutputsOutcome::Superseded);
            }
            update_checked(&mut t.items, raw_key, |item| {
                item.outputs = Some(*set);
                item.legacy_outputs.clear();
            })?;
            Ok(OutputsOutcome::Recorded)
        })
    }

    async fn put_output_page(&self, page: &OutputPage) -> Result<(), StoreError> {
        let key = output_page_key(&page.raw_key, page.generation, page.index);
        self.faulty("UpdateItem", &key, |t| {
            let item = Page {
                raw_key: page.raw_key.clone(),
                keys: page.keys.clone(),
                expires_at: page.expires_at,
            };
            let size = item.size(&key);
            if size > MAX_ITEM_SIZE {
                return Err(too_large(&key, size));
            }
            t.pages.insert(key.clone(), item);
            Ok(())
        })
    }

    async fn output_page(
        &self,
        raw_key: &str,
        generation: u64,
        index: u32,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let key = output_page_key(raw_key, generation, index);
        if self.roll() != Fault::None {
            return Err(injected("GetItem", &key));
        }
        Ok(lock(&self.table).pages.get(&key).map(|p| p.keys.clone()))
    }

    async fn delete_output_page(
        &self,
        raw_key: &str,
        generation: u64,
        index: u32,
    ) -> Result<(), StoreError> {
        let key = output_page_key(raw_key, generation, index);
        self.faulty("DeleteItem", &key, |t| {
            t.pages.remove(&key);
            Ok(())
        })
    }

    async fn acquire_lease(&self, lease: &Lease) -> Result<LeaseOutcome, StoreError> {
        self.faulty("UpdateItem", &lease.raw_key, |t| {
            if let Some((owner, until)) = t.items.get(&lease.raw_key).and_then(|i| i.lease.as_ref())
                && *until >= lease.now_ms
                && *owner != lease.owner
            {
                return Ok(LeaseOutcome::HeldByAnother);
            }
            update_checked(&mut t.items, &lease.raw_key, |item| {
                item.lease = Some((lease.owner.clone(), lease.until_ms));
                if item.raw.is_none() {
                    item.lease_expires_at.get_or_insert(lease.expires_at);
                }
            })?;
            Ok(LeaseOutcome::Acquired)
        })
    }

    async fn release_lease(&self, raw_key: &str, owner: &str) -> Result<(), StoreError> {
        if self.roll() == Fault::Before {
            return Err(injected("UpdateItem", raw_key));
        }
        if let Some(item) = lock(&self.table).items.get_mut(raw_key)
            && item.leased_by(owner)
        {
            item.lease = None;
        }
        Ok(())
    }

    async fn forget_processed(&self, raw_key: &str, owner: &str) -> Result<(), StoreError> {
        self.faulty("UpdateItem", raw_key, |t| match t.items.get_mut(raw_key) {
            Some(item) if item.leased_by(owner) => {
                item.processed_sha256 = None;
                Ok(())
            }
            _ => Err(StoreError::new(
                "UpdateItem",
                raw_key,
                true,
                "the lease was lost",
            )),
        })
    }

    async fn add_to_ledger(
        &self,
        ledger_key: &str,
        entry: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.faulty("UpdateItem", ledger_key, |t| {
            let mut next = t.ledgers.get(ledger_key).cloned().unwrap_or_default();
            next.0.insert(entry.to_owned());
            next.1 = expires_at;
            let size = ledger_item_size(ledger_key, &next.0, next.1);
            if size > MAX_ITEM_SIZE {
                return Err(too_large(ledger_key, size));
            }
            t.ledgers.insert(ledger_key.to_owned(), next);
            Ok(())
        })
    }

    async fn ledger(&self, ledger_key: &str) -> Result<Vec<String>, StoreError> {
        self.faulty("GetItem", ledger_key, |t| {
            Ok(t.ledgers
                .get(ledger_key)
                .map(|(entries, _)| entries.iter().cloned().collect())
                .unwrap_or_default())
        })
    }

    async fn pending_before(&self, written_before: &str) -> Result<Vec<PendingObject>, StoreError> {
        let mut objects = Vec::new();
        // One query per bucket, as on the index.
        for bucket in 0..PENDING_BUCKETS {
            if self.roll() != Fault::None {
                return Err(injected("Query", "pending index"));
            }
            let table = lock(&self.table);
            let mut found: Vec<PendingObject> = table
                .items
                .iter()
                .filter(|(k, i)| i.pending && pending_bucket(k) == bucket)
                .filter_map(|(k, i)| {
                    let written_at = &i.raw.as_ref()?.written_at;
                    (written_at.as_str() < written_before).then(|| PendingObject {
                        raw_key: k.clone(),
                        written_at: written_at.clone(),
                    })
                })
                .collect();
            found.sort_by(|a, b| a.written_at.cmp(&b.written_at));
            objects.extend(found);
        }
        objects.sort_by(|a, b| (&a.written_at, &a.raw_key).cmp(&(&b.written_at, &b.raw_key)));
        Ok(objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::block_on;

    const AT: &str = "2026-11-25T10:00:00.000000Z";

    fn raw(sha: char, correlation_id: String) -> RawItem {
        RawItem {
            raw_key: "raw/k".into(),
            raw_sha256: sha.to_string().repeat(64),
            shard_id: "s".into(),
            first_sequence_number: "1".into(),
            last_sequence_number: "1".into(),
            first_arrival: AT.into(),
            last_arrival: AT.into(),
            kinesis_records: 0,
            valid_records: 0,
            quarantined_records: 0,
            quarantine_key: None,
            raw_bytes: 0,
            raw_uncompressed_bytes: 0,
            correlation_id,
            written_at: AT.into(),
            expires_at: 0,
            registered_by: None,
        }
    }

    #[test]
    fn an_item_is_sized_as_dynamodb_sizes_it() {
        let store = MemoryMetadataStore::default();
        block_on(store.record_raw(&raw('a', "x".into()))).unwrap();
        // Attribute name bytes plus value bytes; a number 0 is 1 byte.
        let by_hand: usize = [
            ("raw_key", "raw/k".len()),
            ("status", Status::RawWritten.as_str().len()),
            ("pending", "PENDING#00".len()),
            ("raw_written_at", AT.len()),
            ("raw_sha256", 64),
            ("shard_id", 1),
            ("first_sequence_number", 1),
            ("last_sequence_number", 1),
            ("first_arrival", AT.len()),
            ("last_arrival", AT.len()),
            ("kinesis_records", 1),
            ("valid_records", 1),
            ("quarantined_records", 1),
            ("raw_bytes", 1),
            ("raw_uncompressed_bytes", 1),
            ("correlation_id", 1),
            ("expires_at", 1),
            ("created_at", AT.len()),
        ]
        .iter()
        .map(|(name, value)| name.len() + value)
        .sum();
        assert_eq!(store.item_size("raw/k"), Some(by_hand));
    }

    #[test]
    fn an_item_over_400_kb_is_refused_as_dynamodb_refuses_it() {
        let store = MemoryMetadataStore::default();
        block_on(store.record_raw(&raw('a', "x".into()))).unwrap();
        let base = store.item_size("raw/k").unwrap();
        // Exactly the limit fits.
        let fits = "x".repeat(1 + MAX_ITEM_SIZE - base);
        assert_eq!(
            block_on(store.record_raw(&raw('b', fits))).unwrap(),
            RecordOutcome::Recorded
        );
        assert_eq!(store.item_size("raw/k"), Some(MAX_ITEM_SIZE));
        // One byte more is a ValidationException: permanent, and nothing changes.
        let over = "x".repeat(2 + MAX_ITEM_SIZE - base);
        let err = block_on(store.record_raw(&raw('c', over))).unwrap_err();
        assert!(!err.retryable, "{err}");
        assert_eq!(err.operation, "UpdateItem");
        assert_eq!(
            err.message,
            "ValidationException: Item size to update has exceeded the maximum allowed size"
        );
        assert_eq!(store.item_size("raw/k"), Some(MAX_ITEM_SIZE));
        let item = block_on(store.get("raw/k")).unwrap().unwrap();
        assert_eq!(item.raw_sha256, Some("b".repeat(64)));
    }

    #[test]
    fn an_output_page_over_400_kb_is_refused_too() {
        let store = MemoryMetadataStore::default();
        let page = |n: usize| OutputPage {
            raw_key: "raw/k".into(),
            generation: 1,
            index: 0,
            keys: vec!["k".repeat(n)],
            expires_at: 0,
        };
        let key = output_page_key("raw/k", 1, 0);
        block_on(store.put_output_page(&page(1))).unwrap();
        let base = store.item_size(&key).unwrap();
        block_on(store.put_output_page(&page(1 + MAX_ITEM_SIZE - base))).unwrap();
        assert_eq!(store.item_size(&key), Some(MAX_ITEM_SIZE));
        let err = block_on(store.put_output_page(&page(2 + MAX_ITEM_SIZE - base))).unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.starts_with("ValidationException: "), "{err}");
        assert_eq!(store.item_size(&key), Some(MAX_ITEM_SIZE));
    }

    #[test]
    fn outputs_are_recorded_only_under_the_lease_and_over_the_expected_set() {
        let store = MemoryMetadataStore::default();
        let lease = Lease {
            raw_key: "raw/k".into(),
            owner: "me".into(),
            now_ms: 0,
            until_ms: 1_000,
            expires_at: 0,
        };
        let set = |generation| OutputSet {
            generation,
            pages: 0,
            count: 0,
        };
        let record = |owner: &str, previous, s: OutputSet| {
            block_on(store.record_outputs("raw/k", owner, previous, &s)).unwrap()
        };
        assert_eq!(
            record("me", None, set(1)),
            OutputsOutcome::Superseded,
            "no lease"
        );
        block_on(store.acquire_lease(&lease)).unwrap();
        assert_eq!(record("other", None, set(1)), OutputsOutcome::Superseded);
        assert_eq!(record("me", None, set(1)), OutputsOutcome::Recorded);
        assert_eq!(
            record("me", None, set(2)),
            OutputsOutcome::Superseded,
            "not the set it refers to"
        );
        assert_eq!(record("me", Some(1), set(2)), OutputsOutcome::Recorded);
        let item = block_on(store.get("raw/k")).unwrap().unwrap();
        assert_eq!(item.outputs, Some(set(2)));
    }

    #[test]
    fn pending_objects_are_found_bucket_by_bucket_oldest_first() {
        let store = MemoryMetadataStore::default();
        let mut keys = Vec::new();
        for i in 0..40 {
            let mut r = raw('a', "x".into());
            r.raw_key = format!("raw/dt=2026-11-25/hour=10/shard=s/{i}.jsonl.gz");
            r.written_at = format!("2026-11-25T10:00:{:02}.000000Z", 59 - i);
            block_on(store.record_raw(&r)).unwrap();
            keys.push(r.raw_key);
        }
        let found = block_on(store.pending_before("2026-11-25T10:00:30.000000Z")).unwrap();
        // Written at :20 … :29 (i = 30 … 39), oldest first, whatever their bucket.
        let want: Vec<String> = keys[30..].iter().rev().cloned().collect();
        assert_eq!(
            found.iter().map(|p| p.raw_key.clone()).collect::<Vec<_>>(),
            want
        );
        let buckets: BTreeSet<u32> = keys.iter().map(|k| pending_bucket(k)).collect();
        assert!(
            buckets.len() > 8,
            "the keys spread over the buckets: {buckets:?}"
        );
    }
}
