//! The two stores the handlers need, as small traits. The AWS SDK clients implement them
//! ([`crate::s3`], [`crate::dynamodb`]); so does [`crate::memory`] for tests and models.

use std::collections::BTreeMap;
use std::future::Future;

use crate::StoreError;

/// An object as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub body: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
}

pub trait ObjectStore: Send + Sync {
    /// Puts an object, replacing any previous version. `metadata` becomes `x-amz-meta-*`.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        metadata: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads an object; `Ok(None)` when it does not exist.
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<StoredObject>, StoreError>> + Send;

    /// Deletes an object; deleting a missing object succeeds.
    fn delete(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// Unix milliseconds.
    pub last_modified_ms: i64,
}

/// Listing and HEAD: what the auditor needs to find the objects nobody recorded.
pub trait ObjectCatalog: Send + Sync {
    /// Every object under `prefix`, following the listing's continuation (S3 returns at most
    /// 1,000 keys a page), in key order.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ListedObject>, StoreError>> + Send;

    /// An object's user metadata without its body; `Ok(None)` when it does not exist.
    fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, StoreError>> + Send;
}

/// What the stream processor records about a raw object it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawItem {
    pub raw_key: String,
    pub raw_sha256: String,
    pub shard_id: String,
    pub first_sequence_number: String,
    pub last_sequence_number: String,
    pub first_arrival: String,
    pub last_arrival: String,
    pub kinesis_records: u64,
    pub valid_records: u64,
    pub quarantined_records: u64,
    pub quarantine_key: Option<String>,
    pub raw_bytes: u64,
    pub raw_uncompressed_bytes: u64,
    pub correlation_id: String,
    /// RFC 3339 UTC: also the sort key of the pending index.
    pub written_at: String,
    /// Unix seconds: the table's TTL attribute.
    pub expires_at: i64,
    /// Who recorded an object the stream processor did not (the transformer, for an object written
    /// by a restore, a backfill or another writer); `None` for the stream processor's own.
    pub registered_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The item now describes this content, status `RAW_WRITTEN`.
    Recorded,
    /// The item already described exactly this content (a retry): nothing changed.
    AlreadyRecorded,
    /// The transformer had registered exactly this content: the batch's own facts (counts,
    /// sequence range, request id) replaced those read from its lines; status unchanged.
    Adopted,
    /// A registration found the item changed since it was read (the stream processor recorded
    /// the object meanwhile, or another run registered it): nothing changed; read it again.
    Changed,
}

/// A set of output keys, held in page items of the metadata table
/// ([`pipeline_core::metadata::output_page_key`]) rather than in the raw object's item, so that
/// the item's size does not depend on how many outputs the object has. The item refers to one
/// set by its generation; a new set always gets a new generation, so a set the item refers to is
/// never overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSet {
    pub generation: u64,
    pub pages: u32,
    pub count: u64,
}

impl OutputSet {
    /// The generation of the set that replaces the one an item refers to (`None`: none yet).
    pub fn next_generation(current: Option<&OutputSet>) -> u64 {
        current.map_or(1, |s| s.generation + 1)
    }
}

/// One page of an output set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPage {
    pub raw_key: String,
    pub generation: u64,
    pub index: u32,
    pub keys: Vec<String>,
    /// Unix seconds: the table's TTL attribute, never earlier than the raw object's item's.
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputsOutcome {
    /// The item now refers to the new output set.
    Recorded,
    /// The lease was lost, or the item refers to another set than the one expected: process again.
    Superseded,
}

/// What the transformer records after writing a raw object's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedUpdate {
    pub raw_key: String,
    /// The lease holder: the update only applies while it still holds the lease, and releases it.
    pub lease_owner: String,
    /// The content that was processed: the update only applies if the item still describes it.
    pub raw_sha256: String,
    /// Exactly the outputs of that content, already written.
    pub outputs: OutputSet,
    /// The generation of the set the item refers to now (`None`: none): the update only applies
    /// if it still does, and replaces it with `outputs`.
    pub previous_generation: Option<u64>,
    pub rows: u64,
    pub duplicates: u64,
    pub sequencer: Option<String>,
    pub processed_at: String,
    pub correlation_id: String,
    /// The transformer's version that produced the outputs.
    pub version: String,
    /// The overlapping raw objects that owned some of the content's records when the outputs
    /// were made ([`pipeline_core::owner`]): a digest of their keys and contents, empty for none.
    pub owners: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOutcome {
    /// Status moved to `PROCESSED` with these outputs.
    Marked,
    /// The item describes other content now (the raw object was rewritten), or the lease was
    /// lost: process again.
    Superseded,
}

/// A per-raw-object lease: one transformer at a time writes a raw object's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub raw_key: String,
    pub owner: String,
    /// Unix milliseconds.
    pub now_ms: i64,
    /// Unix milliseconds; past this, another transformer may take the lease.
    pub until_ms: i64,
    /// Unix seconds: TTL of an item created by the lease alone.
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    Acquired,
    HeldByAnother,
}

/// The metadata item of one raw object, as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataItem {
    pub raw_key: String,
    /// `None` for an item that only a lease created, or a value this version does not know.
    pub status: Option<Status>,
    pub raw_sha256: Option<String>,
    pub processed_sha256: Option<String>,
    /// The transformer's version that processed it (absent on items processed before versions
    /// were recorded).
    pub processed_version: Option<String>,
    /// [`ProcessedUpdate::owners`] of the processing (absent on items processed before owners
    /// were recorded: none then).
    pub processed_owners: Option<String>,
    /// The output set the item refers to: every output key of the raw object that may exist.
    /// Exactly the outputs of `processed_sha256` once processed; a superset while a run is under
    /// way or after one died.
    pub outputs: Option<OutputSet>,
    /// Output keys an item written before output pages existed lists in its own `outputs` and
    /// `written_outputs` attributes: outputs that may exist too, until the item is next recorded.
    pub legacy_outputs: Vec<String>,
    pub valid_records: u64,
    pub quarantined_records: u64,
    pub processed_rows: Option<u64>,
    pub duplicates: Option<u64>,
    pub written_at: Option<String>,
    pub processed_at: Option<String>,
    pub correlation_id: Option<String>,
    /// In the pending index: written and not processed yet.
    pub pending: bool,
    /// The end of the latest transformer lease on the object (Unix milliseconds), expired or not.
    pub lease_until_ms: Option<i64>,
}

/// A raw object not processed yet, as the pending index holds it (keys only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingObject {
    pub raw_key: String,
    pub written_at: String,
}

pub use pipeline_core::metadata::Status;

pub trait MetadataStore: Send + Sync {
    /// Records a raw object: status `RAW_WRITTEN`, unless the item already describes this content.
    fn record_raw(
        &self,
        item: &RawItem,
    ) -> impl Future<Output = Result<RecordOutcome, StoreError>> + Send;

    /// Registers a raw object the stream processor did not record: like [`Self::record_raw`],
    /// but only if the item still describes `previous_sha256` (`None`: no content at all), so
    /// that a registration never overwrites what the stream processor or another run recorded
    /// after the item was read.
    fn register_raw(
        &self,
        item: &RawItem,
        previous_sha256: Option<&str>,
    ) -> impl Future<Output = Result<RecordOutcome, StoreError>> + Send;

    fn get(
        &self,
        raw_key: &str,
    ) -> impl Future<Output = Result<Option<MetadataItem>, StoreError>> + Send;

    /// Takes the lease of a raw object (or renews one this owner holds).
    fn acquire_lease(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<LeaseOutcome, StoreError>> + Send;

    /// Gives a lease back early (on an error path); a lease held by another owner is left alone.
    fn release_lease(
        &self,
        raw_key: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes one page of an output set (its own item), replacing a page of the same key.
    fn put_output_page(
        &self,
        page: &OutputPage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads one page of an output set, strongly consistent; `Ok(None)` when it does not exist.
    fn output_page(
        &self,
        raw_key: &str,
        generation: u64,
        index: u32,
    ) -> impl Future<Output = Result<Option<Vec<String>>, StoreError>> + Send;

    /// Deletes one page of an output set; deleting a missing page succeeds.
    fn delete_output_page(
        &self,
        raw_key: &str,
        generation: u64,
        index: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes the item refer to `set` instead of the set of generation `previous` (`None`: none),
    /// conditional on the lease still being `owner`'s and the item still referring to `previous`.
    /// Also drops the legacy output attributes, which `set` must cover.
    fn record_outputs(
        &self,
        raw_key: &str,
        owner: &str,
        previous: Option<u64>,
        set: &OutputSet,
    ) -> impl Future<Output = Result<OutputsOutcome, StoreError>> + Send;

    /// `RAW_WRITTEN → PROCESSED` and lease released, conditional on the item still describing
    /// `raw_sha256`, the lease still being the updater's and the item still referring to the
    /// output set of `previous_generation`.
    fn mark_processed(
        &self,
        update: &ProcessedUpdate,
    ) -> impl Future<Output = Result<MarkOutcome, StoreError>> + Send;

    /// Forgets which content the item's outputs were made from (`processed_sha256`), while
    /// `owner` holds the lease: after its outputs were changed by another object's run, the next
    /// run for any content processes it in full.
    fn forget_processed(
        &self,
        raw_key: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds `entry` ([`pipeline_core::owner::Entry::encode`]) to the ledger item of `ledger_key`
    /// ([`pipeline_core::owner::ledger_key`]), created if absent; adding an entry it holds changes
    /// nothing. Its TTL becomes `expires_at`.
    fn add_to_ledger(
        &self,
        ledger_key: &str,
        entry: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The entries of a ledger item, strongly consistent; none when it does not exist.
    fn ledger(
        &self,
        ledger_key: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Raw objects written before `written_before` (RFC 3339) and not processed yet: one query
    /// per pending bucket on the sparse pending index, each a range condition on
    /// `raw_written_at`; oldest first.
    fn pending_before(
        &self,
        written_before: &str,
    ) -> impl Future<Output = Result<Vec<PendingObject>, StoreError>> + Send;
}

/// Writes `keys` as the output set of generation `generation`, page by page
/// ([`pipeline_core::metadata::paginate`]).
pub async fn write_output_set<M: MetadataStore>(
    store: &M,
    raw_key: &str,
    generation: u64,
    keys: &[String],
    expires_at: i64,
) -> Result<OutputSet, StoreError> {
    let pages = pipeline_core::metadata::paginate(raw_key, keys);
    for (index, page) in pages.iter().enumerate() {
        store
            .put_output_page(&OutputPage {
                raw_key: raw_key.to_owned(),
                generation,
                index: index as u32,
                keys: page.to_vec(),
                expires_at,
            })
            .await?;
    }
    Ok(OutputSet {
        generation,
        pages: pages.len() as u32,
        count: keys.len() as u64,
    })
}

/// Reads every key of an output set. A page the set counts that does not exist is an error no
/// retry can fix: the outputs it listed could no longer be found.
pub async fn read_output_set<M: MetadataStore>(
    store: &M,
    raw_key: &str,
    set: &OutputSet,
) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    for index in 0..set.pages {
        match store.output_page(raw_key, set.generation, index).await? {
            Some(page) => keys.extend(page),
            None => {
                return Err(StoreError::new(
                    "GetItem",
                    pipeline_core::metadata::output_page_key(raw_key, set.generation, index),
                    false,
                    "the output page the metadata item refers to is missing (deleted or expired \
                     out of band), so the outputs it listed cannot be cleaned up; see \
                     docs/operations.md, missing output pages",
                ));
            }
        }
    }
    Ok(keys)
}

/// Deletes every page of an output set the item no longer refers to.
pub async fn delete_output_set<M: MetadataStore>(
    store: &M,
    raw_key: &str,
    set: &OutputSet,
) -> Result<(), StoreError> {
    for index in 0..set.pages {
        store
            .delete_output_page(raw_key, set.generation, index)
            .await?;
    }
    Ok(())
}
