//! What the tests of the functions, the model and the benchmarks share, kept out of the
//! production crates: the in-memory object and metadata stores with fault injection (`memory`),
//! with the same conditional writes and item limits as the DynamoDB store, [`SetClock`],
//! [`block_on`] and [`block_on_paused`].

pub mod memory;

use std::future::Future;

/// Runs a future to completion on a fresh current-thread runtime, with timers.
pub fn block_on<F: Future>(f: F) -> F::Output {
    runtime(false).block_on(f)
}

/// [`block_on`] with the runtime's time paused: a sleep or a wait on a timer ends as soon as
/// nothing else can run, at the virtual instant it asked for. For tests of code that waits
/// (`tokio::time`) on the in-memory stores, never on real IO.
pub fn block_on_paused<F: Future>(f: F) -> F::Output {
    runtime(true).block_on(f)
}

fn runtime(paused: bool) -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(paused)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("a test runtime: {e}"),
    }
}

/// A clock a test sets: the handlers built on [`SetClock::clock`] read the time last set.
#[derive(Debug, Clone)]
pub struct SetClock(std::sync::Arc<std::sync::Mutex<chrono::DateTime<chrono::Utc>>>);

impl SetClock {
    pub fn at(time: chrono::DateTime<chrono::Utc>) -> Self {
        SetClock(std::sync::Arc::new(std::sync::Mutex::new(time)))
    }

    pub fn set(&self, time: chrono::DateTime<chrono::Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = time;
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn clock(&self) -> pipeline_aws::Clock {
        let this = self.clone();
        std::sync::Arc::new(move || this.now())
    }
}

/// The dev stream's first shard, where the functions' tests and benchmarks put their records.
pub const DEV_SHARD: lambda_payloads::kinesis::Source<'static> = lambda_payloads::kinesis::Source {
    shard_id: "shardId-000000000000",
    stream_arn: "arn:aws:kinesis:eu-west-1:123456789012:stream/eventpipe-dev-events",
    region: "eu-west-1",
    kms: true,
};

/// Kinesis records from `(partition key, sequence number, data)` triples, all arrived at
/// `arrival`.
pub fn kinesis_records(
    triples: &[(String, String, String)],
    arrival: chrono::DateTime<chrono::Utc>,
) -> Vec<lambda_payloads::kinesis::Record<'_>> {
    triples
        .iter()
        .map(|(pk, seq, data)| lambda_payloads::kinesis::Record {
            partition_key: pk,
            sequence_number: seq,
            data: data.as_bytes(),
            arrival,
        })
        .collect()
}
