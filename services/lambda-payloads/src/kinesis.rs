//! The Kinesis event Lambda delivers to the stream processor: read into the core's records
//! ([`records`], and in one pass by [`crate::KinesisBatch`]), and built from a shard's records
//! ([`event`]) by our event-source mapping, the offline tools and the tests.

use aws_lambda_events::encodings::SecondTimestamp;
use aws_lambda_events::event::kinesis::{
    KinesisEncryptionType, KinesisEvent, KinesisEventRecord, KinesisRecord as LambdaRecord,
};
use chrono::{DateTime, Utc};
use pipeline_core::KinesisRecord;
use serde_json::Value;

/// The shard of a record whose `eventID` does not name one.
pub const UNKNOWN_SHARD: &str = "shardId-unknown";

/// Converts the event's records, taking the shard id from `eventID` (`shardId-…:<sequence>`).
pub fn records(event: &KinesisEvent) -> Vec<KinesisRecord<'_>> {
    event
        .records
        .iter()
        .map(|r| KinesisRecord {
            shard_id: r
                .event_id
                .as_deref()
                .and_then(|id| id.split_once(':'))
                .map_or(UNKNOWN_SHARD, |(shard, _)| shard),
            sequence_number: &r.kinesis.sequence_number,
            arrival: r.kinesis.approximate_arrival_timestamp.0,
            partition_key: &r.kinesis.partition_key,
            data: &r.kinesis.data.0,
        })
        .collect()
}

/// One record of a shard, as an event is built from it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub partition_key: &'a str,
    pub sequence_number: &'a str,
    pub data: &'a [u8],
    pub arrival: DateTime<Utc>,
}

/// Where a batch comes from: its shard, stream and region, and whether the stream is encrypted.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub shard_id: &'a str,
    pub stream_arn: &'a str,
    pub region: &'a str,
    /// Server-side encryption with KMS (the stream's `encryptionType`).
    pub kms: bool,
}

/// The event Lambda delivers for a batch of one shard's records.
pub fn event(batch: &[Record<'_>], source: &Source<'_>) -> KinesisEvent {
    let account = source.stream_arn.split(':').nth(4).unwrap_or_default();
    let mut event = KinesisEvent::default();
    event.records = batch
        .iter()
        .map(|r| {
            let mut kinesis = LambdaRecord::default();
            kinesis.kinesis_schema_version = Some("1.0".to_owned());
            kinesis.partition_key = r.partition_key.to_owned();
            kinesis.sequence_number = r.sequence_number.to_owned();
            kinesis.data.extend_from_slice(r.data);
            kinesis.approximate_arrival_timestamp = SecondTimestamp(r.arrival);
            kinesis.encryption_type = if source.kms {
                KinesisEncryptionType::Kms
            } else {
                KinesisEncryptionType::None
            };
            let mut record = KinesisEventRecord::default();
            record.kinesis = kinesis;
            record.event_source = Some("aws:kinesis".to_owned());
            record.event_version = Some("1.0".to_owned());
            record.event_id = Some(format!("{}:{}", source.shard_id, r.sequence_number));
            record.event_name = Some("aws:kinesis:record".to_owned());
            record.invoke_identity_arn =
                Some(format!("arn:aws:iam::{account}:role/event-source-mapping"));
            record.aws_region = Some(source.region.to_owned());
            record.event_source_arn = Some(source.stream_arn.to_owned());
            record
        })
        .collect();
    event
}

/// [`event`] as Lambda puts it on the wire. `aws_lambda_events` writes
/// `approximateArrivalTimestamp` as a string (`"1795600800.123"`); Lambda sends a number
/// (`1795600800.123`), which is what this gives.
pub fn payload_json(batch: &[Record<'_>], source: &Source<'_>) -> Value {
    // Serialising plain structs of strings and numbers cannot fail.
    let mut value = serde_json::to_value(event(batch, source)).unwrap_or_default();
    if let Some(records) = value.get_mut("Records").and_then(Value::as_array_mut) {
        for (json, r) in records.iter_mut().zip(batch) {
            json["kinesis"]["approximateArrivalTimestamp"] =
                Value::from(r.arrival.timestamp_millis() as f64 / 1000.0);
        }
    }
    value
}

/// [`payload_json`] as the bytes of an invocation's payload.
pub fn payload(batch: &[Record<'_>], source: &Source<'_>) -> Vec<u8> {
    serde_json::to_vec(&payload_json(batch, source)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_built_event_reads_back_as_the_same_records_in_both_readers() {
        let arrival = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
            + chrono::Duration::milliseconds(123);
        let batch = [
            Record {
                partition_key: "user-1",
                sequence_number: "49590338271490256608559692538361571095921575989136588898",
                data: br#"{"event_id":"a"}"#,
                arrival,
            },
            Record {
                partition_key: "user-2",
                sequence_number: "49590338271490256608559692538361571095921575989136588899",
                data: b"\x00\xff not json",
                arrival,
            },
        ];
        let source = Source {
            shard_id: "shardId-000000000003",
            stream_arn: "arn:aws:kinesis:eu-west-1:123456789012:stream/s",
            region: "eu-west-1",
            kms: true,
        };
        let bytes = payload(&batch, &source);
        let wire: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            wire["Records"][0]["kinesis"]["approximateArrivalTimestamp"],
            Value::from(1_795_600_800.123),
            "a number, as Lambda sends it"
        );
        let event: KinesisEvent = serde_json::from_slice(&bytes).unwrap();
        let read = records(&event);
        assert_eq!(read.len(), 2);
        for (r, b) in read.iter().zip(&batch) {
            assert_eq!(r.shard_id, "shardId-000000000003");
            assert_eq!(r.sequence_number, b.sequence_number);
            assert_eq!(r.partition_key, b.partition_key);
            assert_eq!(r.data, b.data);
            assert_eq!(r.arrival, arrival);
        }
        let fast: crate::KinesisBatch = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(fast.records().len(), 2);
        assert_eq!(fast.records()[1].data, batch[1].data);
        assert_eq!(
            event.records[0].invoke_identity_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/event-source-mapping")
        );
        assert_eq!(
            event.records[0].kinesis.encryption_type,
            KinesisEncryptionType::Kms
        );
    }
}
