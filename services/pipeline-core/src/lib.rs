//! The pipeline's functional core: the event contract and everything computed from it.
//!
//! **Invariant:** this crate does no IO: no AWS SDK, no tokio, no files, no clock. Time comes in as
//! arguments (a record's arrival time), keys and outputs are pure functions of the input, and every
//! per-record problem is a value ([`Rejection`]) rather than a panic or an early return.

pub mod audit;
pub mod backfill;
pub mod event;
pub mod ingest;
pub mod keys;
pub mod kpl;
pub mod metadata;
pub mod owner;
pub mod parquet_io;
pub mod reason;
pub mod stats;
pub mod transform;

pub use event::{Event, validate};
pub use ingest::{EncodedObject, KinesisRecord, ShardOutput, ingest};
pub use reason::{Reason, Rejection};
pub use transform::{Pseudonymizer, TransformError, TransformOutput, transform};
