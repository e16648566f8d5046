//! The event-source mapping's three ports over the official SDK clients: Kinesis GetRecords,
//! Lambda Invoke, SQS SendMessage. And the loop that runs one mapping per shard.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Utc};
use pipeline_config::StartingPosition;

use crate::esm::{
    FailureDestination, Invocation, Invoker, Record, Settings, ShardMapping, ShardReader, Stats,
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
}

impl KinesisShard {
    pub fn new(
        clients: &Clients,
        stream_arn: &str,
        shard_id: &str,
        start: StartingPosition,
        timestamp: Option<DateTime<Utc>>,
    ) -> Self {
        KinesisShard {
            client: clients.kinesis.clone(),
            stream_arn: stream_arn.into(),
            shard_id: shard_id.into(),
            iterator: None,
            start: (start, timestamp),
            last: None,
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
    async fn read(&mut self) -> Result<Vec<Record>, Error> {
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

/// Shared view of every shard's counters, for status lines.
pub type SharedStats = Arc<Mutex<Vec<(String, Stats)>>>;

/// Runs one mapping per shard of the stream until `stop` resolves. `reader` reads the stream
/// and sends to the on-failure queue (in AWS: with the function's execution role); `invoker`
/// invokes the function (in AWS: the Lambda service itself).
pub async fn run_mapping(
    reader: &Clients,
    invoker: &Clients,
    stack: &crate::provision::Stack,
    settings: Settings,
    stats: SharedStats,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Error> {
    let shards = reader
        .kinesis
        .list_shards()
        .stream_arn(&stack.stream_arn)
        .send()
        .await
        .map_err(|e| Error::aws("kinesis ListShards", DisplayErrorContext(e)))?
        .shards
        .unwrap_or_default();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, shard) in shards.into_iter().enumerate() {
        let shard_reader = KinesisShard::new(
            reader,
            &stack.stream_arn,
            &shard.shard_id,
            settings.starting_position,
            settings.starting_timestamp,
        );
        let mut mapping = ShardMapping::new(
            shard.shard_id.clone(),
            stack.stream_arn.clone(),
            stack.stream_processor_arn.clone(),
            crate::REGION.to_owned(),
            settings.clone(),
            shard_reader,
            LambdaInvoker::new(invoker, &stack.stream_processor),
            SqsDestination::new(reader, &stack.stream_dlq_url),
        );
        if let Ok(mut s) = stats.lock() {
            s.push((shard.shard_id.clone(), Stats::default()));
        }
        let stats = stats.clone();
        let mut stop = stop.clone();
        tasks.spawn(async move {
            loop {
                if *stop.borrow() {
                    return Ok::<(), Error>(());
                }
                match mapping.step(Utc::now).await {
                    Ok(0) => {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            _ = stop.changed() => {}
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Reading the shard failed: the mapping keeps its position (its buffer
                        // and the reader's last sequence number) and reads again.
                        tracing::warn!(error = %e, "event-source mapping step failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                if let Ok(mut s) = stats.lock()
                    && let Some(slot) = s.get_mut(i)
                {
                    slot.1 = mapping.stats.clone();
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| Error::Emulator(format!("a shard mapping stopped: {e}")))??;
    }
    Ok(())
}
