//! `dlq redrive`: puts what the dead-letter queues reference back through the pipeline.
//!
//! - Stream DLQ: each message names a shard, a sequence range and its size (`KinesisBatchInfo`).
//!   The range is re-read from the stream (`read_range`, through empty pages, to the range's end,
//!   the shard's end or its newest record) and delivered to the stream processor under the same
//!   rules as the event-source mapping, except the maximum record age (a redriven record is old
//!   by design). The message is deleted only when every record of its range was redriven or is
//!   accounted as expired (past the stream's retention); otherwise it stays, with the reason
//!   printed (`plan`). With a `ParallelizationFactor` above 1, only the batch's lane of the range
//!   is redriven (assuming the factor has not changed since the message was written).
//! - Transform DLQ: each message carries the original S3 event (`requestPayload`); the transformer
//!   is invoked with it again; the message is deleted on success.
//!
//! Both are idempotent: the handlers overwrite the same keys with the same content.

use std::cmp::Ordering;
use std::future::Future;

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::Value;

use crate::aws::{LambdaInvoker, SqsDestination};
use crate::esm::{Invoker, Record, Settings, ShardMapping, ShardReader};
use crate::queue::{Hold, SETTLE, SqsQueue, read_all};
use crate::{Clients, Error, Stack};

pub use pipeline_core::keys::seq_cmp;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Redriven {
    /// Messages redriven: delivered, then deleted (a dry run only counts them).
    pub messages: u64,
    /// Records redriven.
    pub records: u64,
    /// Messages whose records are all past the stream's retention: nothing to redrive, so the
    /// message stays in the queue as the record of what was lost.
    pub expired: u64,
    /// Records of the messages' ranges that are past the stream's retention: accounted as
    /// expired, not redriven.
    pub expired_records: u64,
    /// Messages kept in the queue because their range could not be read whole (the reason is
    /// printed).
    pub kept: u64,
    /// Messages another reader held during the run: not seen, not redriven.
    pub held: u64,
}

/// What a redrive tells its operator, one line each on stdout as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// Messages another reader holds: not seen by this run.
    Held { count: u64, url: &'a str },
    /// A stream DLQ message whose range cannot be read whole.
    Kept {
        shard: &'a str,
        start: &'a str,
        end: &'a str,
        why: &'a str,
    },
    /// A stream DLQ message whose records are all past the stream's retention.
    Expired {
        shard: &'a str,
        start: &'a str,
        end: &'a str,
        records: u64,
    },
    /// A stream DLQ message's range delivered again (or, in a dry run, that would be).
    Redriving {
        dry_run: bool,
        shard: &'a str,
        start: &'a str,
        end: &'a str,
        records: u64,
        /// Records of the range past the stream's retention.
        expired: u64,
    },
    /// The transformer invoked again with a transform DLQ message's S3 event.
    Invoking { dry_run: bool, keys: &'a [String] },
}

impl Event<'_> {
    pub fn emit(&self) {
        println!("{self}");
    }
}

impl std::fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Held { count, url } => write!(
                f,
                "{count} messages of {url} are held by another reader: not redriven this time; run again once it is done"
            ),
            Event::Kept {
                shard,
                start,
                end,
                why,
            } => write!(
                f,
                "cannot redrive {shard} {start}..{end}: {why}; the message stays in the queue"
            ),
            Event::Expired {
                shard,
                start,
                end,
                records,
            } => write!(
                f,
                "cannot redrive {shard} {start}..{end}: its {records} records are past the stream's retention; the message stays in the queue"
            ),
            Event::Redriving {
                dry_run,
                shard,
                start,
                end,
                records,
                expired,
            } => {
                let verb = if *dry_run {
                    "would redrive"
                } else {
                    "redriving"
                };
                write!(f, "{verb} {shard} {start}..{end}: {records} records")?;
                if *expired > 0 {
                    write!(f, ", {expired} more past the stream's retention (lost)")?;
                }
                Ok(())
            }
            Event::Invoking { dry_run, keys } => {
                let verb = if *dry_run { "would invoke" } else { "invoking" };
                write!(f, "{verb} transformer for {keys:?}")
            }
        }
    }
}

struct Fixed(Vec<Record>);

impl ShardReader for Fixed {
    async fn read(&mut self) -> Result<Vec<Record>, Error> {
        Ok(std::mem::take(&mut self.0))
    }
}

/// Where a read of a shard starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    At(String),
    After(String),
}

/// One GetRecords answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<Record>,
    /// None once a closed shard has been read to its end.
    pub next_iterator: Option<String>,
    pub millis_behind_latest: Option<i64>,
}

/// What GetRecords answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Page(Page),
    /// `ExpiredIteratorException`: the iterator is older than 5 minutes; get a new one.
    ExpiredIterator,
}

/// A shard, page by page: the thin port over GetShardIterator and GetRecords.
pub trait Pages: Send {
    fn iterator(&mut self, from: &Position) -> impl Future<Output = Result<String, Error>> + Send;
    fn page(&mut self, iterator: &str) -> impl Future<Output = Result<Fetched, Error>> + Send;
}

/// Why reading a range stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The range's end sequence number was reached (or passed).
    End,
    /// The shard is closed and was read to its end (a null NextShardIterator) before the range's
    /// end.
    ShardEnd,
    /// An empty page 0 ms behind the shard's newest record, before the range's end.
    Tip,
    /// No end after this many GetRecords pages.
    PageLimit(usize),
}

/// What a shard holds of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The range's records still in the shard, in order.
    pub records: Vec<Record>,
    /// The range's first record is no longer in the shard: the trim horizon (the stream's
    /// retention) has passed the range's start.
    pub trimmed: bool,
    pub stop: Stop,
}

/// The most GetRecords pages one range may take.
pub const MAX_PAGES: usize = 10_000;

/// Reads `[start, end]` of a shard: page after page, through empty pages (GetRecords may take
/// several calls to reach the part of a shard that holds records), until the range's end, the
/// shard's end (a closed shard: no next iterator), the shard's newest record (an empty page 0 ms
/// behind latest), or `max_pages`. An expired iterator is renewed after the last record read.
pub async fn read_range(
    pages: &mut impl Pages,
    start: &str,
    end: &str,
    max_pages: usize,
) -> Result<Range, Error> {
    let mut range = Range {
        records: Vec::new(),
        trimmed: false,
        stop: Stop::PageLimit(max_pages),
    };
    let mut first = true;
    let mut iterator = pages.iterator(&Position::At(start.to_owned())).await?;
    for _ in 0..max_pages {
        let page = match pages.page(&iterator).await? {
            Fetched::Page(page) => page,
            Fetched::ExpiredIterator => {
                let from = match range.records.last() {
                    Some(r) => Position::After(r.sequence_number.clone()),
                    None => Position::At(start.to_owned()),
                };
                iterator = pages.iterator(&from).await?;
                continue;
            }
        };
        let empty = page.records.is_empty();
        for r in page.records {
            // AT_SEQUENCE_NUMBER starts at the range's first record; when the first record
            // read is a later one, the first is gone: trimmed by the stream's retention.
            if std::mem::take(&mut first) {
                range.trimmed = seq_cmp(&r.sequence_number, start) == Ordering::Greater;
            }
            match seq_cmp(&r.sequence_number, end) {
                Ordering::Greater => {
                    range.stop = Stop::End;
                    return Ok(range);
                }
                Ordering::Equal => {
                    range.records.push(r);
                    range.stop = Stop::End;
                    return Ok(range);
                }
                Ordering::Less => range.records.push(r),
            }
        }
        match page.next_iterator {
            None => {
                range.stop = Stop::ShardEnd;
                return Ok(range);
            }
            Some(_) if empty && page.millis_behind_latest == Some(0) => {
                range.stop = Stop::Tip;
                return Ok(range);
            }
            Some(next) => iterator = next,
        }
    }
    Ok(range)
}

/// The range a stream DLQ message names (`KinesisBatchInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    pub shard_id: String,
    pub start: String,
    pub end: String,
    pub batch_size: u64,
}

impl BatchInfo {
    pub fn of(body: &Value) -> Option<BatchInfo> {
        let info = &body["KinesisBatchInfo"];
        Some(BatchInfo {
            shard_id: info["shardId"].as_str()?.to_owned(),
            start: info["startSequenceNumber"].as_str()?.to_owned(),
            end: info["endSequenceNumber"].as_str()?.to_owned(),
            batch_size: info["batchSize"].as_u64()?,
        })
    }
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Deliver these records, then delete the message; `expired` more were past retention.
    Redrive { records: Vec<Record>, expired: u64 },
    /// Every record is past retention: nothing to deliver; the message stays.
    Expired { records: u64 },
    /// The range could not be read whole: the message stays.
    Keep(String),
}

/// A message is deleted only when every record of its range is redriven or accounted as expired.
/// With `lanes` > 1 (the mapping's `ParallelizationFactor`), a batch held one lane's records
/// while its range also holds the other lanes': only the lane of the range's first record (or,
/// when retention has trimmed that, its last) is the batch's.
pub fn plan(info: &BatchInfo, mut range: Range, lanes: usize) -> Plan {
    if lanes > 1 {
        let lane_of = |r: &Record| crate::esm::lane(&r.partition_key, lanes);
        let batch_lane = range
            .records
            .iter()
            .find(|r| r.sequence_number == info.start)
            .or_else(|| range.records.iter().find(|r| r.sequence_number == info.end))
            .map(lane_of);
        if let Some(l) = batch_lane {
            range.records.retain(|r| lane_of(r) == l);
        }
    }
    let found = range.records.len() as u64;
    let want = info.batch_size;
    let why = match range.stop {
        Stop::End => None,
        Stop::ShardEnd => Some(format!(
            "the shard ended after {found} of the range's {want} records"
        )),
        Stop::Tip => Some(format!(
            "the shard's newest record came after {found} of the range's {want} records, before its end"
        )),
        Stop::PageLimit(n) => Some(format!(
            "the range's end not reached in {n} GetRecords pages"
        )),
    };
    if let Some(why) = why {
        return Plan::Keep(why);
    }
    match (found.cmp(&want), range.trimmed) {
        (Ordering::Equal, _) => Plan::Redrive {
            records: range.records,
            expired: 0,
        },
        (Ordering::Less, true) if found == 0 => Plan::Expired { records: want },
        (Ordering::Less, true) => Plan::Redrive {
            records: range.records,
            expired: want - found,
        },
        _ => Plan::Keep(format!(
            "the shard holds {found} records of the range, the message names {want}"
        )),
    }
}

/// A shard of a stream through the SDK. Every call names the stream by ARN.
#[derive(Debug)]
pub struct KinesisPages {
    client: aws_sdk_kinesis::Client,
    stream_arn: String,
    shard_id: String,
}

impl KinesisPages {
    pub fn new(clients: &Clients, stream_arn: &str, shard_id: &str) -> Self {
        KinesisPages {
            client: clients.kinesis.clone(),
            stream_arn: stream_arn.to_owned(),
            shard_id: shard_id.to_owned(),
        }
    }
}

impl Pages for KinesisPages {
    async fn iterator(&mut self, from: &Position) -> Result<String, Error> {
        let (kind, seq) = match from {
            Position::At(s) => (ShardIteratorType::AtSequenceNumber, s),
            Position::After(s) => (ShardIteratorType::AfterSequenceNumber, s),
        };
        self.client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(&self.shard_id)
            .shard_iterator_type(kind)
            .starting_sequence_number(seq)
            .send()
            .await
            .map_err(|e| Error::aws("kinesis GetShardIterator", DisplayErrorContext(e)))?
            .shard_iterator
            .ok_or_else(|| Error::aws("kinesis GetShardIterator", "no iterator in the answer"))
    }

    async fn page(&mut self, iterator: &str) -> Result<Fetched, Error> {
        match self
            .client
            .get_records()
            .stream_arn(&self.stream_arn)
            .shard_iterator(iterator)
            .send()
            .await
        {
            Ok(out) => Ok(Fetched::Page(Page {
                millis_behind_latest: out.millis_behind_latest,
                next_iterator: out.next_shard_iterator,
                records: out.records.into_iter().map(crate::aws::record).collect(),
            })),
            Err(e) if e.code() == Some("ExpiredIteratorException") => Ok(Fetched::ExpiredIterator),
            Err(e) => Err(Error::aws("kinesis GetRecords", DisplayErrorContext(e))),
        }
    }
}

/// Every message of a queue (`queue::read_all`), with the receipt to delete it by: a real run
/// hides them for the 5 minutes it may work on them, a dry run only for the seconds of the read.
/// Also the number of messages another reader holds, which this run does not see.
async fn messages(
    clients: &Clients,
    url: &str,
    dry_run: bool,
) -> Result<(Vec<(String, Value)>, u64), Error> {
    let hold = if dry_run {
        Hold::Peek
    } else {
        Hold::Seconds(300)
    };
    let read = read_all(&SqsQueue::new(clients, url), hold, SETTLE).await?;
    let held = read.unseen();
    if held > 0 {
        Event::Held { count: held, url }.emit();
    }
    let all = read
        .messages
        .into_iter()
        .map(|m| {
            serde_json::from_str(&m.body)
                .map(|body| (m.receipt, body))
                .map_err(|e| {
                    Error::Reconcile(format!("message {} of {url} is not JSON: {e}", m.id))
                })
        })
        .collect::<Result<_, _>>()?;
    Ok((all, held))
}

async fn delete(clients: &Clients, url: &str, receipt: &str) -> Result<(), Error> {
    clients
        .sqs
        .delete_message()
        .queue_url(url)
        .receipt_handle(receipt)
        .send()
        .await
        .map_err(|e| Error::aws("sqs DeleteMessage", DisplayErrorContext(e)))?;
    Ok(())
}

/// Redrives the stream DLQ. With `dry_run`, only reports what it would do.
pub async fn stream_dlq(
    clients: &Clients,
    stack: &Stack,
    settings: Settings,
    dry_run: bool,
) -> Result<Redriven, Error> {
    // Records a redrive delivers are old by design: under the maximum record age they would go
    // straight back to the DLQ, undelivered.
    let settings = Settings {
        maximum_record_age_seconds: -1,
        ..settings
    };
    let (all, held) = messages(clients, &stack.stream_dlq_url, dry_run).await?;
    let mut done = Redriven {
        held,
        ..Redriven::default()
    };
    for (receipt, body) in all {
        let info = BatchInfo::of(&body).ok_or_else(|| {
            Error::Reconcile(format!(
                "a stream DLQ message is not in the event-source mapping's format: {body}"
            ))
        })?;
        let (shard, start, end) = (&info.shard_id, &info.start, &info.end);
        let mut pages = KinesisPages::new(clients, &stack.stream_arn, shard);
        let range = read_range(&mut pages, start, end, MAX_PAGES).await?;
        let (records, expired) = match plan(&info, range, settings.parallelization_factor) {
            Plan::Keep(why) => {
                Event::Kept {
                    shard,
                    start,
                    end,
                    why: &why,
                }
                .emit();
                done.kept += 1;
                continue;
            }
            Plan::Expired { records } => {
                Event::Expired {
                    shard,
                    start,
                    end,
                    records,
                }
                .emit();
                done.expired += 1;
                done.expired_records += records;
                continue;
            }
            Plan::Redrive { records, expired } => (records, expired),
        };
        Event::Redriving {
            dry_run,
            shard,
            start,
            end,
            records: records.len() as u64,
            expired,
        }
        .emit();
        done.messages += 1;
        done.records += records.len() as u64;
        done.expired_records += expired;
        if dry_run {
            continue;
        }
        let mut mapping = ShardMapping::new(
            shard.to_owned(),
            stack.stream_arn.clone(),
            stack.stream_processor_arn.clone(),
            stack.region().to_owned(),
            settings.clone(),
            Fixed(Vec::new()),
            LambdaInvoker::new(clients, &stack.stream_processor),
            SqsDestination::new(clients, &stack.stream_dlq_url),
        );
        // Failures here end in the DLQ again, as a new message: deleting this one loses nothing.
        mapping.process(records, &chrono::Utc::now).await?;
        delete(clients, &stack.stream_dlq_url, &receipt).await?;
    }
    Ok(done)
}

/// The object keys of an S3 event (a transform DLQ message's `requestPayload`), decoded from the
/// form S3 writes them in (a key that does not decode is kept as written).
pub(crate) fn event_keys(payload: &Value) -> Vec<String> {
    payload["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["s3"]["object"]["key"].as_str())
        .map(|k| pipeline_core::keys::decode_s3_key(k).unwrap_or_else(|_| k.to_owned()))
        .collect()
}

/// Redrives the transform DLQ: invokes the transformer with each original S3 event.
pub async fn transform_dlq(
    clients: &Clients,
    stack: &Stack,
    dry_run: bool,
) -> Result<Redriven, Error> {
    let (all, held) = messages(clients, &stack.transform_dlq_url, dry_run).await?;
    let mut done = Redriven {
        held,
        ..Redriven::default()
    };
    let invoker = LambdaInvoker::new(clients, &stack.transformer);
    for (receipt, body) in all {
        let payload = body.get("requestPayload").cloned().unwrap_or(Value::Null);
        let keys = event_keys(&payload);
        Event::Invoking {
            dry_run,
            keys: &keys,
        }
        .emit();
        done.messages += 1;
        done.records += keys.len() as u64;
        if dry_run {
            continue;
        }
        let inv = invoker.invoke(payload.to_string().into_bytes()).await?;
        if inv.function_error.is_none() {
            delete(clients, &stack.transform_dlq_url, &receipt).await?;
        } else {
            return Err(Error::Reconcile(format!(
                "the transformer still fails for {keys:?}: {}; the message stays in the queue",
                String::from_utf8_lossy(&inv.payload)
            )));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::*;

    fn seq(i: usize) -> String {
        format!("4959{i:052}")
    }

    #[test]
    fn an_s3_events_keys_are_read_decoded() {
        let payload = serde_json::json!({"Records": [
            {"s3": {"object": {"key": "raw/dt%3D2026-11-25/a+b%2Bc.jsonl.gz"}}},
            {"s3": {"object": {"key": "raw/%ZZ"}}},
            {"s3": {"object": {}}},
        ]});
        // What an operator reads and what the given-up check compares: keys as written to S3.
        assert_eq!(
            event_keys(&payload),
            ["raw/dt=2026-11-25/a b+c.jsonl.gz", "raw/%ZZ"]
        );
    }

    #[test]
    fn an_operator_reads_what_each_redrive_step_did() {
        let redriving = |dry_run, expired| {
            Event::Redriving {
                dry_run,
                shard: "shardId-0",
                start: "1",
                end: "9",
                records: 5,
                expired,
            }
            .to_string()
        };
        assert_eq!(
            redriving(true, 0),
            "would redrive shardId-0 1..9: 5 records"
        );
        assert_eq!(
            redriving(false, 2),
            "redriving shardId-0 1..9: 5 records, 2 more past the stream's retention (lost)"
        );
        let keys = ["raw/a".to_owned(), "raw/b".to_owned()];
        assert_eq!(
            Event::Invoking {
                dry_run: false,
                keys: &keys
            }
            .to_string(),
            r#"invoking transformer for ["raw/a", "raw/b"]"#
        );
        assert!(
            Event::Held { count: 3, url: "q" }
                .to_string()
                .starts_with("3 messages of q are held by another reader")
        );
    }

    fn rec(i: usize) -> Record {
        Record {
            sequence_number: seq(i),
            arrival: chrono::Utc::now(),
            partition_key: format!("pk{i}"),
            data: vec![b'x'],
        }
    }

    fn page(range: std::ops::Range<usize>, behind: i64) -> Fetched {
        Fetched::Page(Page {
            records: range.map(rec).collect(),
            next_iterator: Some("next".into()),
            millis_behind_latest: Some(behind),
        })
    }

    /// A shard that answers GetRecords from a script, and notes every iterator asked for.
    #[derive(Default)]
    struct Scripted {
        answers: std::collections::VecDeque<Fetched>,
        iterators: Vec<Position>,
        pages: usize,
    }

    impl Scripted {
        fn new(answers: Vec<Fetched>) -> Self {
            Scripted {
                answers: answers.into(),
                ..Scripted::default()
            }
        }
    }

    impl Pages for Scripted {
        async fn iterator(&mut self, from: &Position) -> Result<String, Error> {
            self.iterators.push(from.clone());
            Ok(format!("iterator-{}", self.iterators.len()))
        }
        async fn page(&mut self, _iterator: &str) -> Result<Fetched, Error> {
            self.pages += 1;
            // Past the script: an open shard with nothing new, at its tip.
            Ok(self.answers.pop_front().unwrap_or(Fetched::Page(Page {
                records: Vec::new(),
                next_iterator: Some("tip".into()),
                millis_behind_latest: Some(0),
            })))
        }
    }

    fn read(shard: &mut Scripted, start: usize, end: usize) -> Range {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(read_range(shard, &seq(start), &seq(end), 100))
            .unwrap()
    }

    fn info(start: usize, end: usize, batch_size: u64) -> BatchInfo {
        BatchInfo {
            shard_id: "shardId-000000000000".into(),
            start: seq(start),
            end: seq(end),
            batch_size,
        }
    }

    fn seqs(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.sequence_number.clone()).collect()
    }

    #[test]
    fn empty_pages_before_and_inside_the_range_do_not_end_it() {
        // GetRecords may answer empty pages before it reaches the part of the shard with records.
        let mut shard = Scripted::new(vec![
            page(0..0, 5_000),
            page(0..0, 5_000),
            page(0..2, 4_000),
            page(0..0, 3_000),
            page(2..4, 0),
        ]);
        let range = read(&mut shard, 0, 3);
        assert_eq!(seqs(&range.records), (0..4).map(seq).collect::<Vec<_>>());
        assert_eq!((range.trimmed, &range.stop), (false, &Stop::End));
        assert!(matches!(
            plan(&info(0, 3, 4), range, 1),
            Plan::Redrive { expired: 0, .. }
        ));
    }

    #[test]
    fn reading_stops_at_the_end_sequence_number() {
        let mut shard = Scripted::new(vec![page(1..3, 100), page(3..9, 0)]);
        let range = read(&mut shard, 1, 4);
        assert_eq!(
            seqs(&range.records),
            (1..5).map(seq).collect::<Vec<_>>()[..]
        );
        assert_eq!(range.stop, Stop::End);
        assert_eq!(shard.pages, 2);
    }

    #[test]
    fn a_closed_shard_that_ends_before_the_range_keeps_the_message() {
        let mut shard = Scripted::new(vec![
            page(0..2, 0),
            Fetched::Page(Page {
                records: vec![rec(2)],
                next_iterator: None,
                millis_behind_latest: Some(0),
            }),
        ]);
        let range = read(&mut shard, 0, 5);
        assert_eq!((range.records.len(), &range.stop), (3, &Stop::ShardEnd));
        assert!(matches!(plan(&info(0, 5, 6), range, 1), Plan::Keep(_)));
    }

    #[test]
    fn an_expired_iterator_is_renewed_after_the_last_record_read() {
        let mut shard = Scripted::new(vec![
            page(0..2, 10),
            Fetched::ExpiredIterator,
            page(2..4, 0),
        ]);
        let range = read(&mut shard, 0, 3);
        assert_eq!(seqs(&range.records), (0..4).map(seq).collect::<Vec<_>>());
        assert_eq!(
            shard.iterators,
            [Position::At(seq(0)), Position::After(seq(1))]
        );
        // Before any record: renewed at the range's start.
        let mut shard = Scripted::new(vec![Fetched::ExpiredIterator, page(0..2, 0)]);
        let range = read(&mut shard, 0, 1);
        assert_eq!(range.records.len(), 2);
        assert_eq!(
            shard.iterators,
            [Position::At(seq(0)), Position::At(seq(0))]
        );
    }

    #[test]
    fn records_past_the_trim_horizon_are_accounted_as_expired() {
        // The range 0..=3 (4 records); retention has trimmed 0 and 1.
        let mut shard = Scripted::new(vec![page(2..6, 0)]);
        let range = read(&mut shard, 0, 3);
        assert!(range.trimmed);
        assert_eq!(seqs(&range.records), [seq(2), seq(3)]);
        let Plan::Redrive { records, expired } = plan(&info(0, 3, 4), range, 1) else {
            panic!("the rest of the range is redriven")
        };
        assert_eq!((records.len(), expired), (2, 2));
        // All of it trimmed: nothing to redrive, the message stays.
        let mut shard = Scripted::new(vec![page(7..9, 0)]);
        let range = read(&mut shard, 0, 3);
        assert!(range.trimmed && range.records.is_empty());
        assert_eq!(plan(&info(0, 3, 4), range, 1), Plan::Expired { records: 4 });
    }

    #[test]
    fn the_shards_tip_before_the_range_end_keeps_the_message() {
        let mut shard = Scripted::new(vec![page(0..2, 0)]);
        let range = read(&mut shard, 0, 5);
        assert_eq!((range.records.len(), &range.stop), (2, &Stop::Tip));
        assert!(matches!(plan(&info(0, 5, 6), range, 1), Plan::Keep(_)));
    }

    #[test]
    fn endless_empty_pages_give_up_and_keep_the_message() {
        let mut shard = Scripted::new((0..200).map(|_| page(0..0, 1_000)).collect());
        let range = read(&mut shard, 0, 5);
        assert_eq!(range.stop, Stop::PageLimit(100));
        assert!(matches!(plan(&info(0, 5, 6), range, 1), Plan::Keep(_)));
    }

    #[test]
    fn with_a_parallelization_factor_only_the_batchs_lane_is_redriven() {
        // A batch is one lane's records; its range also holds the other lanes' records.
        let lanes = 3;
        let all: Vec<Record> = (0..12).map(rec).collect();
        let lane_of = |r: &Record| crate::esm::lane(&r.partition_key, lanes);
        let batch: Vec<String> = all
            .iter()
            .filter(|r| lane_of(r) == lane_of(&all[0]))
            .map(|r| r.sequence_number.clone())
            .collect();
        assert!(batch.len() > 1 && batch.len() < all.len(), "{batch:?}");
        let end = all
            .iter()
            .position(|r| Some(&r.sequence_number) == batch.last())
            .unwrap();
        let range = Range {
            records: all[..=end].to_vec(),
            trimmed: false,
            stop: Stop::End,
        };
        let Plan::Redrive { records, expired } =
            plan(&info(0, end, batch.len() as u64), range.clone(), lanes)
        else {
            panic!("the lane's records are redriven")
        };
        assert_eq!((seqs(&records), expired), (batch.clone(), 0));
        // Read as if there were one lane, the range holds more than the batch: kept.
        assert!(matches!(
            plan(&info(0, end, batch.len() as u64), range.clone(), 1),
            Plan::Keep(_)
        ));
        // The range's first record trimmed: the lane is the last record's.
        let trimmed = Range {
            records: all[1..=end].to_vec(),
            trimmed: true,
            stop: Stop::End,
        };
        let Plan::Redrive { records, expired } =
            plan(&info(0, end, batch.len() as u64), trimmed, lanes)
        else {
            panic!("the rest of the lane's records are redriven")
        };
        assert_eq!((seqs(&records), expired), (batch[1..].to_vec(), 1));
    }

    #[test]
    fn a_range_that_does_not_hold_the_messages_records_keeps_the_message() {
        let mut shard = Scripted::new(vec![page(0..4, 0)]);
        let range = read(&mut shard, 0, 3);
        assert!(matches!(plan(&info(0, 3, 5), range, 1), Plan::Keep(_)));
    }
}
