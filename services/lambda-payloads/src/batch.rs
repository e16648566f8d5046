//! The Lambda Kinesis event, read in one pass into three buffers: every record's data decoded
//! back to back, the strings the core needs back to back, and one small entry per record. No
//! per-record allocation, and nothing the handler does not read is kept.
//!
//! It reads what [`KinesisEvent`](aws_lambda_events::event::kinesis::KinesisEvent) reads, with the
//! same required fields, types and defaults, and gives the same [`KinesisRecord`]s as
//! [`crate::kinesis::records`] over it (tested on the fixtures and generated events).

use std::fmt;
use std::ops::Range;

use aws_lambda_events::encodings::SecondTimestamp;
use aws_lambda_events::event::kinesis::KinesisEncryptionType;
use chrono::{DateTime, Utc};
use pipeline_core::KinesisRecord;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::kinesis::UNKNOWN_SHARD;

/// A Kinesis event as Lambda delivers it, read for the stream processor.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KinesisBatch {
    data: Vec<u8>,
    strings: String,
    records: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `None`: [`UNKNOWN_SHARD`].
    shard: Option<Range<usize>>,
    sequence_number: Range<usize>,
    partition_key: Range<usize>,
    data: Range<usize>,
    arrival: DateTime<Utc>,
}

impl KinesisBatch {
    /// The records, borrowing from the batch.
    pub fn records(&self) -> Vec<KinesisRecord<'_>> {
        self.records
            .iter()
            .map(|e| KinesisRecord {
                shard_id: e.shard.clone().map_or(UNKNOWN_SHARD, |r| &self.strings[r]),
                sequence_number: &self.strings[e.sequence_number.clone()],
                arrival: e.arrival,
                partition_key: &self.strings[e.partition_key.clone()],
                data: &self.data[e.data.clone()],
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[derive(Default)]
struct Buffers {
    data: Vec<u8>,
    strings: String,
}

impl Buffers {
    fn push_str(&mut self, s: &str) -> Range<usize> {
        let start = self.strings.len();
        self.strings.push_str(s);
        start..self.strings.len()
    }
}

impl<'de> Deserialize<'de> for KinesisBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct("KinesisEvent", &["Records"], EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = KinesisBatch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct KinesisEvent")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KinesisBatch, A::Error> {
        let mut batch: Option<KinesisBatch> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.0 != "Records" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if batch.is_some() {
                return Err(de::Error::duplicate_field("Records"));
            }
            let mut buffers = Buffers::default();
            let records = map.next_value_seed(RecordsSeed(&mut buffers))?;
            batch = Some(KinesisBatch {
                data: buffers.data,
                strings: buffers.strings,
                records,
            });
        }
        batch.ok_or_else(|| de::Error::missing_field("Records"))
    }
}

struct RecordsSeed<'b>(&'b mut Buffers);

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = Vec<Entry>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Entry>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = Vec<Entry>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Entry>, A::Error> {
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(entry) = seq.next_element_seed(RecordSeed(&mut *self.0))? {
            records.push(entry);
        }
        Ok(records)
    }
}

/// One `Records` element: `eventID` and `kinesis`; the other string fields are checked for type.
struct RecordSeed<'b>(&'b mut Buffers);

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Entry;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Entry, D::Error> {
        d.deserialize_struct("KinesisEventRecord", RECORD_FIELDS, self)
    }
}

const RECORD_FIELDS: &[&str] = &[
    "awsRegion",
    "eventID",
    "eventName",
    "eventSource",
    "eventSourceARN",
    "eventVersion",
    "invokeIdentityArn",
    "kinesis",
];

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct KinesisEventRecord")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let buffers = self.0;
        let mut seen = [false; RECORD_FIELDS.len()];
        let mut shard: Option<Range<usize>> = None;
        let mut kinesis: Option<Kinesis> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let Some(index) = RECORD_FIELDS.iter().position(|f| *f == key.0) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(de::Error::duplicate_field(RECORD_FIELDS[index]));
            }
            match RECORD_FIELDS[index] {
                "eventID" => {
                    shard = map
                        .next_value::<Option<Key<'de>>>()?
                        .and_then(|id| id.0.split_once(':').map(|(s, _)| buffers.push_str(s)));
                }
                "kinesis" => kinesis = Some(map.next_value_seed(KinesisSeed(&mut *buffers))?),
                _ => {
                    map.next_value::<Option<Key<'de>>>()?;
                }
            }
        }
        let kinesis = kinesis.ok_or_else(|| de::Error::missing_field("kinesis"))?;
        Ok(Entry {
            shard,
            sequence_number: kinesis.sequence_number,
            partition_key: kinesis.partition_key,
            data: kinesis.data,
            arrival: kinesis.arrival,
        })
    }
}

struct Kinesis {
    sequence_number: Range<usize>,
    partition_key: Range<usize>,
    data: Range<usize>,
    arrival: DateTime<Utc>,
}

struct KinesisSeed<'b>(&'b mut Buffers);

const KINESIS_FIELDS: &[&str] = &[
    "approximateArrivalTimestamp",
    "data",
    "encryptionType",
    "partitionKey",
    "sequenceNumber",
    "kinesisSchemaVersion",
];

impl<'de> DeserializeSeed<'de> for KinesisSeed<'_> {
    type Value = Kinesis;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Kinesis, D::Error> {
        d.deserialize_struct("KinesisRecord", KINESIS_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for KinesisSeed<'_> {
    type Value = Kinesis;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct KinesisRecord")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kinesis, A::Error> {
        let buffers = self.0;
        let mut seen = [false; KINESIS_FIELDS.len()];
        let (mut arrival, mut data) = (None, None);
        let (mut partition_key, mut sequence_number) = (None, None);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let Some(index) = KINESIS_FIELDS.iter().position(|f| *f == key.0) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(de::Error::duplicate_field(KINESIS_FIELDS[index]));
            }
            match KINESIS_FIELDS[index] {
                "approximateArrivalTimestamp" => {
                    arrival = Some(map.next_value::<SecondTimestamp>()?.0);
                }
                "data" => data = Some(map.next_value_seed(DataSeed(&mut buffers.data))?),
                "encryptionType" => {
                    map.next_value::<KinesisEncryptionType>()?;
                }
                "partitionKey" => {
                    let k = map.next_value::<Key<'de>>()?;
                    partition_key = Some(buffers.push_str(&k.0));
                }
                "sequenceNumber" => {
                    let k = map.next_value::<Key<'de>>()?;
                    sequence_number = Some(buffers.push_str(&k.0));
                }
                _ => {
                    map.next_value::<Option<Key<'de>>>()?;
                }
            }
        }
        let empty = buffers.strings.len()..buffers.strings.len();
        Ok(Kinesis {
            arrival: arrival
                .ok_or_else(|| de::Error::missing_field("approximateArrivalTimestamp"))?,
            data: data.ok_or_else(|| de::Error::missing_field("data"))?,
            partition_key: partition_key.unwrap_or(empty.clone()),
            sequence_number: sequence_number.unwrap_or(empty),
        })
    }
}

/// A base64 string, decoded onto the end of the data buffer.
struct DataSeed<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = Range<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Range<usize>, D::Error> {
        d.deserialize_string(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = Range<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Range<usize>, E> {
        let start = self.0.len();
        pipeline_core::ingest::decode_base64_into(v.as_bytes(), self.0).map_err(E::custom)?;
        Ok(start..self.0.len())
    }
}

/// A string, borrowed from the input when it has no escapes.
struct Key<'a>(std::borrow::Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_string(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use aws_lambda_events::event::kinesis::KinesisEvent;

    use super::*;

    type Flat = Vec<(String, String, DateTime<Utc>, String, Vec<u8>)>;

    fn flat(records: &[KinesisRecord<'_>]) -> Flat {
        records
            .iter()
            .map(|r| {
                (
                    r.shard_id.to_owned(),
                    r.sequence_number.to_owned(),
                    r.arrival,
                    r.partition_key.to_owned(),
                    r.data.to_vec(),
                )
            })
            .collect()
    }

    /// Both readers on one text: the same records, or both refuse it.
    fn same(text: &str) -> bool {
        let reference = serde_json::from_str::<KinesisEvent>(text);
        let fast = serde_json::from_str::<KinesisBatch>(text);
        let from_slice = serde_json::from_slice::<KinesisBatch>(text.as_bytes());
        match (reference, fast, from_slice) {
            (Ok(r), Ok(f), Ok(s)) => {
                assert_eq!(
                    flat(&crate::kinesis::records(&r)),
                    flat(&f.records()),
                    "{text}"
                );
                assert_eq!(f, s);
                true
            }
            (Err(_), Err(_), Err(_)) => false,
            (r, f, _) => panic!("{text}: reference {r:?}, fast {f:?}"),
        }
    }

    #[test]
    fn fixtures_read_as_the_lambda_event_type_reads_them() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stream-processor/fixtures");
        for name in [
            "kinesis-event.json",
            "kinesis-event-mixed.json",
            "kinesis-event-two-shards.json",
        ] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            assert!(same(&text), "{name}");
        }
    }

    fn record(kinesis: &str, outer: &str) -> String {
        format!(r#"{{"Records":[{{{outer}"kinesis":{{{kinesis}}}}}]}}"#)
    }

    #[test]
    fn fields_types_and_defaults_are_the_lambda_event_types() {
        let full = r#""approximateArrivalTimestamp":1764064800.123,"data":"eyJhIjoxfQ==","partitionKey":"p\u00e9","sequenceNumber":"4959","encryptionType":"KMS","kinesisSchemaVersion":"1.0","x":[1]"#;
        let accepted = [
            record(
                full,
                r#""eventID":"shardId-000000000001:4959","awsRegion":"eu-west-1","#,
            ),
            record(full, r#""eventID":null,"eventName":null,"#),
            record(full, r#""eventID":"no-colon","other":{"a":[1,2]},"#),
            record(full, r#""eventID":"shard\/x:1","#),
            record(r#""approximateArrivalTimestamp":1764064800,"data":"""#, ""),
            record(
                r#""approximateArrivalTimestamp":"1764064800.5","data":"QQ==""#,
                "",
            ),
            r#"{"Records":[],"other":1}"#.to_owned(),
        ];
        for text in &accepted {
            assert!(same(text), "{text}");
        }
        let refused = [
            r#"{}"#.to_owned(),
            r#"{"Records":[],"Records":[]}"#.to_owned(),
            record(r#""data":"QQ==""#, ""),
            record(r#""approximateArrivalTimestamp":1764064800"#, ""),
            record(r#""approximateArrivalTimestamp":1,"data":"QQ=""#, ""),
            record(r#""approximateArrivalTimestamp":1,"data":"QR==""#, ""),
            record(r#""approximateArrivalTimestamp":1,"data":null"#, ""),
            record(
                r#""approximateArrivalTimestamp":1,"data":"QQ==","encryptionType":"AES""#,
                "",
            ),
            record(
                r#""approximateArrivalTimestamp":1,"data":"QQ==","partitionKey":null"#,
                "",
            ),
            record(
                r#""approximateArrivalTimestamp":1,"data":"QQ==","data":"QQ==""#,
                "",
            ),
            record(
                r#""approximateArrivalTimestamp":1,"data":"QQ==""#,
                r#""awsRegion":5,"#,
            ),
            record(
                r#""approximateArrivalTimestamp":1,"data":"QQ==""#,
                r#""eventID":"a","eventID":"b","#,
            ),
            r#"{"Records":[{"eventID":"s:1"}]}"#.to_owned(),
        ];
        for text in &refused {
            assert!(!same(text), "{text}");
        }
    }
}
