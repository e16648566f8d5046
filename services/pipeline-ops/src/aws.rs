//! The event-source mapping's ports over the official SDK clients: Kinesis ListShards and
//! GetRecords, Lambda Invoke, SQS SendMessage (the checkpoints' DynamoDB table is in
//! `checkpoint.rs`). And the loop that runs one mapping per shard, following resharding.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Utc};
use pipeline_config::StartingPosition;

use crate::checkpoint::{Checkpoint, CheckpointStore, DynamoCheckpoints};
use crate::esm::{
    FailureDestination, Invocation, Invoker, Record, Settings, ShardInfo, ShardLister,
    ShardMapping, ShardReader, Start, Stats, list_shards, ready, start,
};
use crate::{Clients, Error};

/// Reads one shard with a shard iterator, like a standard-iterator consumer. Every call names the
/// stream by ARN, GetRecords included: AWS authorises GetRecords on the iterator's stream, and an
/// emulator that cannot read the iterator authorises it on the ARN the request names.
#[derive(Debug)]
pub struct KinesisShard {
    client: aws_sdk_kinesis::Client,
    stream_arn: String,
    shard_id: String,
    iterator: Option<String>,
    start: (StartingPosition, Option<DateTime<Utc>>),
    /// Continue after this sequence number when the iterator has to be renewed.
    last: Option<String>,
    /// The shard is closed and its last record read (GetRecords answered no next iterator).
    ended: bool,
}

impl KinesisShard {
    /// A reader of the shard from `from`: after a checkpoint, at the mapping's starting
    /// position (`start`, `timestamp`), or at the shard's first record (a child shard).
    pub fn new(
        clients: &Clients,
        stream_arn: &str,
        shard_id: &str,
        from: &Start,
        start: StartingPosition,
        timestamp: Option<DateTime<Utc>>,
    ) -> Self {
        let (start, last) = match from {
            Start::After(seq) => (start, Some(seq.clone())),
            Start::StartingPosition => (start, None),
            Start::TrimHorizon | Start::Done => (StartingPosition::TrimHorizon, None),
        };
        KinesisShard {
            client: clients.kinesis.clone(),
            stream_arn: stream_arn.into(),
            shard_id: shard_id.into(),
            iterator: None,
            start: (start, timestamp),
            last,
            ended: matches!(from, Start::Done),
        }
    }

    async fn iterator(&mut self) -> Result<String, Error> {
        if let Some(it) = &self.iterator {
            return Ok(it.clone());
        }
        let mut req = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(&self.shard_id);
        req = match (&self.last, self.start) {
            (Some(seq), _) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            (None, (StartingPosition::TrimHorizon, _)) => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            (None, (StartingPosition::Latest, _)) => {
                req.shard_iterator_type(ShardIteratorType::Latest)
            }
            (None, (StartingPosition::AtTimestamp, t)) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_smithy_types::DateTime::from_millis(
                    t.unwrap_or_else(Utc::now).timestamp_millis(),
                )),
        };
        let it = req
            .send()
            .await
            .map_err(|e| Error::aws("kinesis GetShardIterator", DisplayErrorContext(e)))?
            .shard_iterator
            .unwrap_or_default();
        self.iterator = Some(it.clone());
        Ok(it)
    }
}

impl ShardReader for KinesisShard {
    fn at_shard_end(&self) -> bool {
        self.ended
    }

    async fn read(&mut self) -> Result<Vec<Record>, Error> {
        if self.ended {
            return Ok(Vec::new());
        }
        let it = self.iterator().await?;
        let out = match self
            .client
            .get_records()
            .stream_arn(&self.stream_arn)
            .shard_iterator(it)
            .limit(10_000)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                // An expired iterator is renewed after the last record read; anything else is reported.
                self.iterator = None;
                return Err(Error::aws("kinesis GetRecords", DisplayErrorContext(e)));
            }
        };
        self.iterator = out.next_shard_iterator.clone();
        self.ended = out.next_shard_iterator.is_none();
        let records: Vec<Record> = out.records.into_iter().map(record).collect();
        if let Some(r) = records.last() {
            self.last = Some(r.sequence_number.clone());
        }
        Ok(records)
    }
}

/// A record as the SDK returns it, as the mapping holds it.
pub(crate) fn record(r: aws_sdk_kinesis::types::Record) -> Record {
    Record {
        arrival: r
            .approximate_arrival_timestamp
            .and_then(|t| DateTime::from_timestamp_millis(t.to_millis().unwrap_or(0)))
            .unwrap_or_else(Utc::now),
        sequence_number: r.sequence_number,
        partition_key: r.partition_key,
        data: r.data.into_inner(),
    }
}

/// Invokes a function with the Lambda Invoke API (RequestResponse).
#[derive(Debug, Clone)]
pub struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl LambdaInvoker {
    pub fn new(clients: &Clients, function: &str) -> Self {
        LambdaInvoker {
            client: clients.lambda.clone(),
            function: function.into(),
        }
    }
}

impl Invoker for LambdaInvoker {
    async fn invoke(&self, payload: Vec<u8>) -> Result<Invocation, Error> {
        use aws_sdk_lambda::operation::RequestId;
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map_err(|e| Error::aws("lambda Invoke", DisplayErrorContext(e)))?;
        Ok(Invocation {
            request_id: out.request_id().unwrap_or_default().to_owned(),
            status_code: out.status_code,
            function_error: out.function_error.clone(),
            payload: out.payload.map(|p| p.into_inner()).unwrap_or_default(),
        })
    }
}

/// An SQS queue as the on-failure destination.
#[derive(Debug, Clone)]
pub struct SqsDestination {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsDestination {
    pub fn new(clients: &Clients, url: &str) -> Self {
        SqsDestination {
            client: clients.sqs.clone(),
            url: url.into(),
        }
    }
}

impl FailureDestination for SqsDestination {
    async fn send(&self, message: String) -> Result<(), Error> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(message)
            .send()
            .await
            .map_err(|e| Error::aws("sqs SendMessage", DisplayErrorContext(e)))?;
        Ok(())
    }
}

/// ListShards through the SDK, as the stream processor's role. Every page names the stream by
/// ARN, the ones after the first with their NextToken too (AWS refuses a stream *name* beside a
/// NextToken; the emulator needs the stream to page).
#[derive(Debug, Clone)]
pub struct KinesisShards {
    client: aws_sdk_kinesis::Client,
    stream_arn: String,
}

impl KinesisShards {
    pub fn new(clients: &Clients, stream_arn: &str) -> Self {
        KinesisShards {
            client: clients.kinesis.clone(),
            stream_arn: stream_arn.to_owned(),
        }
    }
}

impl ShardLister for KinesisShards {
    async fn page(
        &self,
        next_token: Option<String>,
    ) -> Result<(Vec<ShardInfo>, Option<String>), Error> {
        let out = self
            .client
            .list_shards()
            .stream_arn(&self.stream_arn)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| Error::aws("kinesis ListShards", DisplayErrorContext(e)))?;
        let shards = out
            .shards
            .unwrap_or_default()
            .into_iter()
            .map(|s| ShardInfo {
                shard_id: s.shard_id,
                parents: s
                    .parent_shard_id
                    .into_iter()
                    .chain(s.adjacent_parent_shard_id)
                    .collect(),
            })
            .collect();
        Ok((shards, out.next_token))
    }
}

/// Shared view of every shard's counters, for status lines.
pub type SharedStats = Arc<Mutex<Vec<(String, Stats)>>>;

/// How often the mapping lists the stream's shards, for the children of a reshard.
const SHARD_POLL: Duration = Duration::from_secs(2);

/// Runs one mapping per shard of the stream until `stop` resolves. `reader` reads the stream
/// and sends to the on-failure queue (in AWS: with the function's execution role); `invoker`
/// invokes the function (in AWS: the Lambda service itself). Each shard's mapping takes the
/// shard's lease in the checkpoint table `checkpoints` and resumes after its checkpoint; a shard
/// that comes from a reshard starts once its parents are finished (checkpointed at SHARD_END).
/// Ends with an error when another mapping takes one of its leases.
pub async fn run_mapping(
    reader: &Clients,
    invoker: &Clients,
    stack: &crate::Stack,
    settings: Settings,
    checkpoints: &str,
    stats: SharedStats,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Error> {
    // The checkpoint is the Lambda service's own, internal state, not the function's: the
    // table is read and written with the account's root credentials (`invoker`), never with
    // the stream processor's role.
    let store = DynamoCheckpoints::new(invoker, checkpoints, &stack.stream_arn);
    let owner = format!(
        "local-mapping-{}-{}",
        std::process::id(),
        Utc::now().format("%Y%m%dT%H%M%S%.6f")
    );
    let lister = KinesisShards::new(reader, &stack.stream_arn);
    let mut started: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    while !*stop.borrow() {
        match shards_to_start(&lister, &store, &started).await {
            Ok(ready) => {
                for shard in ready {
                    started.insert(shard.shard_id.clone());
                    let shard_task = ShardTask {
                        reader: reader.clone(),
                        invoker: invoker.clone(),
                        stack: stack.clone(),
                        settings: settings.clone(),
                        store: store.clone(),
                        owner: owner.clone(),
                        stats: stats.clone(),
                    };
                    tasks.spawn(shard_task.run(shard, stop.clone()));
                }
            }
            // Listed again at the next poll; no shard is passed over meanwhile.
            Err(e) => tracing::warn!(error = %e, "listing the stream's shards failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SHARD_POLL) => {}
            _ = stop.changed() => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                // A shard finished (its children may start now) or lost its lease.
                done.map_err(|e| Error::Mapping(format!("a shard mapping stopped: {e}")))??;
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| Error::Mapping(format!("a shard mapping stopped: {e}")))??;
    }
    Ok(())
}

/// The shards of the stream to start now (see [`ready`]).
async fn shards_to_start(
    lister: &KinesisShards,
    store: &DynamoCheckpoints,
    started: &HashSet<String>,
) -> Result<Vec<ShardInfo>, Error> {
    let shards = list_shards(lister).await?;
    let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    let mut finished = HashSet::new();
    for parent in shards.iter().flat_map(|s| &s.parents) {
        if listed.contains(parent.as_str())
            && !finished.contains(parent)
            && store.checkpoint(parent).await? == Some(Checkpoint::ShardEnd)
        {
            finished.insert(parent.clone());
        }
    }
    let ready = ready(&shards, started, &finished);
    Ok(shards
        .into_iter()
        .filter(|s| ready.contains(&s.shard_id))
        .collect())
}

/// What one shard's mapping needs.
struct ShardTask {
    reader: Clients,
    invoker: Clients,
    stack: crate::Stack,
    settings: Settings,
    store: DynamoCheckpoints,
    owner: String,
    stats: SharedStats,
}

impl ShardTask {
    /// Takes the shard's lease, then delivers until the shard is finished or `stop`.
    async fn run(
        self,
        shard: ShardInfo,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let id = shard.shard_id.clone();
        let mut attempt = 0u32;
        let lease = loop {
            match self.store.take(&id, &self.owner).await {
                Ok(lease) => break lease,
                Err(e @ Error::Lease(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(shard_id = %id, error = %e, "taking the shard's lease failed; retrying");
                    let delay = Duration::from_millis(200).saturating_mul(1 << attempt.min(4));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => {}
                    }
                    if *stop.borrow() {
                        return Ok(());
                    }
                    attempt += 1;
                }
            }
        };
        let from = start(&lease, !shard.parents.is_empty());
        tracing::info!(shard_id = %id, ?from, counter = lease.counter, "shard lease taken");
        let shard_reader = KinesisShard::new(
            &self.reader,
            &self.stack.stream_arn,
            &id,
            &from,
            self.settings.starting_position,
            self.settings.starting_timestamp,
        );
        let mut mapping = ShardMapping::new(
            id.clone(),
            self.stack.stream_arn.clone(),
            self.stack.stream_processor_arn.clone(),
            self.stack.region().to_owned(),
            self.settings.clone(),
            shard_reader,
            LambdaInvoker::new(&self.invoker, &self.stack.stream_processor),
            SqsDestination::new(&self.reader, &self.stack.stream_dlq_url),
        )
        .with_checkpoints(self.store.clone(), lease);
        if let Ok(mut s) = self.stats.lock() {
            s.push((id.clone(), Stats::default()));
        }
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let step = mapping.step(Utc::now).await;
            if let Ok(mut s) = self.stats.lock()
                && let Some(slot) = s.iter_mut().find(|(shard, _)| *shard == id)
            {
                slot.1 = mapping.stats.clone();
            }
            match step {
                Ok(0) if mapping.finished() => {
                    tracing::info!(shard_id = %id, "shard finished (SHARD_END checkpointed)");
                    return Ok(());
                }
                Ok(0) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok(_) => {}
                Err(e @ Error::Lease(_)) => return Err(e),
                Err(e) => {
                    // Reading the shard failed: the mapping keeps its position (its buffer
                    // and the reader's last sequence number) and reads again.
                    tracing::warn!(shard_id = %id, error = %e, "event-source mapping step failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
