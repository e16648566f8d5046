//! KPL aggregated records: `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the MD5 of the protobuf.
//!
//! The message definitions follow the Kinesis Producer Library's `messages.proto`.

use md5::{Digest, Md5};
use prost::Message;

use crate::reason::{Reason, Rejection};

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Record {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// One user record inside an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// Where Kinesis puts a record: the MD5 of its partition key as a 128-bit unsigned integer (big
/// endian), unless an explicit hash key overrides it. A shard owns a closed range of these.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// One shard's closed range of hash keys, as ListShards reports it (decimal strings there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    pub shard_id: String,
    pub starting_hash_key: u128,
    pub ending_hash_key: u128,
}

impl ShardRange {
    /// From ListShards' decimal strings; `None` when one is not a 128-bit decimal.
    pub fn parse(shard_id: &str, starting: &str, ending: &str) -> Option<ShardRange> {
        Some(ShardRange {
            shard_id: shard_id.to_owned(),
            starting_hash_key: starting.parse().ok()?,
            ending_hash_key: ending.parse().ok()?,
        })
    }

    pub fn contains(&self, hash: u128) -> bool {
        self.starting_hash_key <= hash && hash <= self.ending_hash_key
    }
}

/// The index of the open shard (of `shards`) whose range holds `hash`, if any.
pub fn shard_of(shards: &[ShardRange], hash: u128) -> Option<usize> {
    shards.iter().position(|s| s.contains(hash))
}

/// Whether the data starts with the KPL magic bytes. Such data is decoded as an aggregate or
/// rejected: it is never treated as a plain event.
pub fn is_aggregated(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// Decodes an aggregated record into its sub-records, in order.
pub fn deaggregate(data: &[u8]) -> Result<Vec<SubRecord>, Rejection> {
    let body = data.strip_prefix(&MAGIC).ok_or_else(|| {
        Rejection::new(
            Reason::KplMalformed,
            "data does not start with the KPL magic bytes f3899ac2",
        )
    })?;
    if body.len() < DIGEST_LEN {
        return Err(Rejection::new(
            Reason::KplMalformed,
            format!(
                "aggregated record is {} bytes, too short for the 16-byte md5 trailer",
                data.len()
            ),
        ));
    }
    let (message, digest) = body.split_at(body.len() - DIGEST_LEN);
    let actual = Md5::digest(message);
    if actual.as_slice() != digest {
        return Err(Rejection::new(
            Reason::KplChecksumMismatch,
            format!(
                "md5 of the aggregated payload is {}, the trailer says {}",
                hex::encode(actual),
                hex::encode(digest)
            ),
        ));
    }
    let agg = AggregatedRecord::decode(message).map_err(|e| {
        Rejection::new(
            Reason::KplMalformed,
            format!("aggregated record protobuf: {e}"),
        )
    })?;
    if agg.records.is_empty() {
        return Err(Rejection::new(
            Reason::KplMalformed,
            "aggregated record holds no sub-records",
        ));
    }
    let lookup = |table: &[String], index: u64, what: &str, i: usize| {
        usize::try_from(index)
            .ok()
            .and_then(|ix| table.get(ix))
            .cloned()
            .ok_or_else(|| {
                Rejection::new(
                    Reason::KplMalformed,
                    format!(
                        "sub-record {i}: {what} index {index} is outside the table of {} entries",
                        table.len()
                    ),
                )
            })
    };
    let AggregatedRecord {
        partition_key_table,
        explicit_hash_key_table,
        records,
    } = agg;
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(SubRecord {
                partition_key: lookup(
                    &partition_key_table,
                    r.partition_key_index,
                    "partition key",
                    i,
                )?,
                explicit_hash_key: r
                    .explicit_hash_key_index
                    .map(|ix| lookup(&explicit_hash_key_table, ix, "explicit hash key", i))
                    .transpose()?,
                data: r.data,
            })
        })
        .collect()
}

/// Builds an aggregated record, deduplicating partition and explicit hash keys into the tables.
pub fn aggregate(records: &[SubRecord]) -> Vec<u8> {
    let mut agg = AggregatedRecord::default();
    let index = |table: &mut Vec<String>, key: &str| -> u64 {
        let pos = table.iter().position(|k| k == key).unwrap_or_else(|| {
            table.push(key.to_owned());
            table.len() - 1
        });
        pos as u64
    };
    for r in records {
        let partition_key_index = index(&mut agg.partition_key_table, &r.partition_key);
        let explicit_hash_key_index = r
            .explicit_hash_key
            .as_deref()
            .map(|k| index(&mut agg.explicit_hash_key_table, k));
        agg.records.push(Record {
            partition_key_index,
            explicit_hash_key_index,
            data: r.data.clone(),
            tags: Vec::new(),
        });
    }
    let message = agg.encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + message.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&message);
    out.extend_from_slice(&Md5::digest(&message));
    out
}

/// The size an aggregate of these records will have, to keep it under a Kinesis record's limit.
pub fn aggregated_size(records: &[SubRecord]) -> usize {
    // Exact: encoding is cheap next to a network round trip, and exactness keeps producers simple.
    aggregate(records).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(pk: &str, data: &str) -> SubRecord {
        SubRecord {
            partition_key: pk.into(),
            explicit_hash_key: None,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn hash_keys_are_the_md5_of_the_partition_key_and_route_to_the_shard_that_owns_them() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661.
        assert_eq!(hash_key("a"), 0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661);
        let half = u128::MAX / 2;
        let shards = [
            ShardRange::parse("shardId-0", "0", &half.to_string()).unwrap(),
            ShardRange::parse("shardId-1", &(half + 1).to_string(), &u128::MAX.to_string())
                .unwrap(),
        ];
        assert_eq!(shard_of(&shards, hash_key("a")), Some(0));
        assert_eq!(shard_of(&shards, u128::MAX), Some(1));
        assert_eq!(shard_of(&shards[..1], u128::MAX), None);
        assert!(ShardRange::parse("s", "-1", "2").is_none());
    }

    #[test]
    fn round_trip_dedups_keys() {
        let records = vec![sub("a", "1"), sub("b", "2"), sub("a", "3")];
        let bytes = aggregate(&records);
        assert!(is_aggregated(&bytes));
        let agg = AggregatedRecord::decode(&bytes[4..bytes.len() - 16]).unwrap();
        assert_eq!(agg.partition_key_table, ["a", "b"]);
        assert_eq!(deaggregate(&bytes).unwrap(), records);
    }

    #[test]
    fn rejects_broken_aggregates() {
        let mut bytes = aggregate(&[sub("a", "1")]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            deaggregate(&bytes).unwrap_err().reason,
            Reason::KplChecksumMismatch
        );
        assert_eq!(
            deaggregate(&MAGIC).unwrap_err().reason,
            Reason::KplMalformed
        );
        // A well-formed trailer over a message that is not an AggregatedRecord.
        let garbage = [0xFFu8, 0xFF, 0xFF];
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&garbage);
        bad.extend_from_slice(&Md5::digest(garbage));
        assert_eq!(deaggregate(&bad).unwrap_err().reason, Reason::KplMalformed);
        // An index outside the table.
        let msg = AggregatedRecord {
            partition_key_table: vec!["a".into()],
            explicit_hash_key_table: vec![],
            records: vec![Record {
                partition_key_index: 3,
                explicit_hash_key_index: None,
                data: vec![],
                tags: vec![],
            }],
        }
        .encode_to_vec();
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&msg);
        bad.extend_from_slice(&Md5::digest(&msg));
        let err = deaggregate(&bad).unwrap_err();
        assert_eq!(err.reason, Reason::KplMalformed);
        assert!(err.detail.contains("index 3"), "{}", err.detail);
    }
}
