//! Object keys. Every key is a pure function of its inputs, so retries overwrite instead of duplicating.

use chrono::{DateTime, NaiveDate, Timelike, Utc};

pub const RAW_PREFIX: &str = "raw/";
pub const QUARANTINE_PREFIX: &str = "quarantine/";
pub const PROCESSED_PREFIX: &str = "processed/";

/// The raw object metadata in which the stream processor names its content's SHA-256 (the
/// transformer waits for the item of such an object, and registers any other).
pub const RAW_SHA256_METADATA: &str = "sha256";

/// Kinesis sequence numbers are decimal strings of up to 56 digits without leading zeros:
/// compare them as numbers.
pub fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// `raw/dt=YYYY-MM-DD/hour=HH/shard=<shard-id>/<first-sequence-number>.jsonl.gz`
pub fn raw_key(
    shard_id: &str,
    first_sequence_number: &str,
    first_arrival: DateTime<Utc>,
) -> String {
    batch_key(RAW_PREFIX, shard_id, first_sequence_number, first_arrival)
}

/// `quarantine/dt=YYYY-MM-DD/hour=HH/shard=<shard-id>/<first-sequence-number>.jsonl.gz`
pub fn quarantine_key(
    shard_id: &str,
    first_sequence_number: &str,
    first_arrival: DateTime<Utc>,
) -> String {
    batch_key(
        QUARANTINE_PREFIX,
        shard_id,
        first_sequence_number,
        first_arrival,
    )
}

fn batch_key(prefix: &str, shard_id: &str, seq: &str, arrival: DateTime<Utc>) -> String {
    format!(
        "{prefix}dt={}/hour={:02}/shard={shard_id}/{seq}.jsonl.gz",
        arrival.format("%Y-%m-%d"),
        arrival.hour()
    )
}

/// `processed/event_type=<t>/dt=YYYY-MM-DD/hour=HH/<shard-id>-<first-sequence-number>.parquet`
pub fn processed_key(
    event_type: &str,
    date: NaiveDate,
    hour: u32,
    shard_id: &str,
    first_sequence_number: &str,
) -> String {
    format!(
        "{PROCESSED_PREFIX}event_type={event_type}/dt={}/hour={hour:02}/{shard_id}-{first_sequence_number}.parquet",
        date.format("%Y-%m-%d")
    )
}

/// The parts of a raw object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawKey<'a> {
    pub date: &'a str,
    pub hour: &'a str,
    pub shard_id: &'a str,
    pub first_sequence_number: &'a str,
}

/// Parses a raw object key; `None` for anything this pipeline did not write under `raw/`.
pub fn parse_raw_key(key: &str) -> Option<RawKey<'_>> {
    let rest = key.strip_prefix(RAW_PREFIX)?;
    let mut parts = rest.split('/');
    let date = parts.next()?.strip_prefix("dt=")?;
    let hour = parts.next()?.strip_prefix("hour=")?;
    let shard_id = parts.next()?.strip_prefix("shard=")?;
    let first_sequence_number = parts.next()?.strip_suffix(".jsonl.gz")?;
    let ok = parts.next().is_none()
        && NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
        && hour.len() == 2
        && hour.parse::<u32>().is_ok_and(|h| h < 24)
        && !shard_id.is_empty()
        && !first_sequence_number.is_empty()
        && first_sequence_number.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(RawKey {
        date,
        hour,
        shard_id,
        first_sequence_number,
    })
}

/// `raw/dt=YYYY-MM-DD/hour=HH/`: the prefix of the raw objects whose first record arrived in the
/// hour of `t`.
pub fn raw_hour_prefix(t: DateTime<Utc>) -> String {
    format!(
        "{RAW_PREFIX}dt={}/hour={}/",
        t.format("%Y-%m-%d"),
        t.format("%H")
    )
}

/// The raw hour prefixes from the hour of `from` up to, not including, the hour of `to`, oldest
/// first (none when `to` is not after `from`'s hour).
pub fn raw_hour_range(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let hour = |t: DateTime<Utc>| {
        t.date_naive()
            .and_hms_opt(t.hour(), 0, 0)
            .map(|n| n.and_utc())
    };
    let (Some(mut t), Some(end)) = (hour(from), hour(to)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while t < end {
        out.push(raw_hour_prefix(t));
        t += chrono::Duration::hours(1);
    }
    out
}

/// What S3 leaves as it is in a notification's key: unreserved characters, `/`, and the space
/// (which becomes `+`).
const S3_KEY_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/')
    .remove(b' ');

/// Encodes a key as S3 event notifications carry it (form encoding: a space is `+`, `=` is `%3D`):
/// the inverse of [`decode_s3_key`].
pub fn encode_s3_key(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, S3_KEY_KEEP)
        .to_string()
        .replace(' ', "+")
}

/// Decodes an S3 event notification key: `+` is a space, then `%xx` escapes.
pub fn decode_s3_key(key: &str) -> Result<String, std::str::Utf8Error> {
    let plus_decoded = key.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_hour_range_lists_each_hour_from_the_first_up_to_the_last() {
        let t = |d: u32, h: u32, m: u32| Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
        assert_eq!(
            raw_hour_range(
                t(30, 22, 30),
                Utc.with_ymd_and_hms(2026, 12, 1, 1, 0, 0).unwrap()
            ),
            [
                "raw/dt=2026-11-30/hour=22/",
                "raw/dt=2026-11-30/hour=23/",
                "raw/dt=2026-12-01/hour=00/",
            ]
        );
        assert_eq!(
            raw_hour_range(t(30, 0, 0), t(30, 0, 59)),
            Vec::<String>::new()
        );
        assert_eq!(
            raw_hour_range(t(30, 6, 0), t(30, 0, 0)),
            Vec::<String>::new()
        );
        assert_eq!(raw_hour_prefix(t(30, 6, 59)), "raw/dt=2026-11-30/hour=06/");
        // Every raw key of an hour falls under that hour's prefix.
        let key = raw_key("shardId-000000000000", "49", t(30, 6, 59));
        assert!(key.starts_with(&raw_hour_prefix(t(30, 6, 0))), "{key}");
    }

    #[test]
    fn keys_are_encoded_as_s3_notifications_carry_them() {
        assert_eq!(
            encode_s3_key("raw/dt=2026-11-30/hour=08/shard=shardId-000000000000/49.jsonl.gz"),
            "raw/dt%3D2026-11-30/hour%3D08/shard%3DshardId-000000000000/49.jsonl.gz"
        );
        assert_eq!(encode_s3_key("a b+c"), "a+b%2Bc");
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(seq_cmp("9", "10"), std::cmp::Ordering::Less);
        assert_eq!(
            seq_cmp(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            std::cmp::Ordering::Less
        );
        assert_eq!(seq_cmp("123", "123"), std::cmp::Ordering::Equal);
    }

    #[test]
    fn keys_have_the_documented_layout() {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            raw_key("shardId-000000000001", "4959", t),
            "raw/dt=2026-01-02/hour=03/shard=shardId-000000000001/4959.jsonl.gz"
        );
        assert_eq!(
            quarantine_key("s", "1", t),
            "quarantine/dt=2026-01-02/hour=03/shard=s/1.jsonl.gz"
        );
        assert_eq!(
            processed_key("page_view", t.date_naive(), 3, "s", "1"),
            "processed/event_type=page_view/dt=2026-01-02/hour=03/s-1.parquet"
        );
    }

    #[test]
    fn raw_keys_parse_back() {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 23, 0, 0).unwrap();
        let key = raw_key(
            "shardId-000000000007",
            "49590338271490256608559692538361571095921575989136588898",
            t,
        );
        let parsed = parse_raw_key(&key).unwrap();
        assert_eq!(parsed.shard_id, "shardId-000000000007");
        assert_eq!(parsed.hour, "23");
        for bad in [
            "raw/dt=2026-01-02/hour=03/shard=s/1.jsonl",
            "quarantine/dt=2026-01-02/hour=03/shard=s/1.jsonl.gz",
            "raw/dt=2026-13-02/hour=03/shard=s/1.jsonl.gz",
            "raw/dt=2026-01-02/hour=24/shard=s/1.jsonl.gz",
            "raw/dt=2026-01-02/hour=03/shard=s/x/1.jsonl.gz",
            "raw/dt=2026-01-02/hour=03/shard=s/abc.jsonl.gz",
            "raw/",
        ] {
            assert_eq!(parse_raw_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn s3_keys_are_url_decoded() {
        assert_eq!(
            decode_s3_key("raw/dt%3D2026-01-02/a+b%2Bc.jsonl.gz").unwrap(),
            "raw/dt=2026-01-02/a b+c.jsonl.gz"
        );
        assert_eq!(decode_s3_key("caf%C3%A9").unwrap(), "café");
        assert!(decode_s3_key("%FF").is_err());
    }
}
