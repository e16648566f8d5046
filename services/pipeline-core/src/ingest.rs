//! The stream processor's core: a batch of Kinesis records in, per shard one raw object and one
//! quarantine object out, with exact accounting. Every input unit (a record, or each sub-record of
//! a KPL aggregate) ends in exactly one of the two objects.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::{self, fmt_time};
use crate::keys;
use crate::kpl;
use crate::reason::{Reason, Rejection};

/// gzip level of raw and quarantine objects: the fastest level, as they are read exactly once.
pub const GZIP_LEVEL: u32 = 1;

/// One Kinesis record as the event source delivers it, with `data` already base64-decoded.
#[derive(Debug, Clone, Copy)]
pub struct KinesisRecord<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    pub arrival: DateTime<Utc>,
    pub partition_key: &'a str,
    pub data: &'a [u8],
}

/// A gzip JSON-lines object, ready to put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedObject {
    pub key: String,
    pub body: Vec<u8>,
    pub lines: u64,
    pub uncompressed_bytes: u64,
    /// Hex SHA-256 of `body`: identifies this exact content in the metadata table.
    pub sha256: String,
}

/// What one shard's records of one invocation become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardOutput {
    pub shard_id: String,
    pub first_sequence_number: String,
    pub last_sequence_number: String,
    pub first_arrival: DateTime<Utc>,
    pub last_arrival: DateTime<Utc>,
    /// Kinesis records (an aggregate counts once).
    pub kinesis_records: u64,
    /// Units: plain records plus KPL sub-records (a rejected aggregate counts once).
    pub units: u64,
    pub valid: u64,
    pub quarantined: BTreeMap<Reason, u64>,
    /// Largest `arrival - occurred_at` among valid units, in milliseconds.
    pub max_ingest_lag_ms: Option<i64>,
    /// Always present, possibly with no lines: a redelivered batch that starts at the same record
    /// must replace whatever an earlier attempt wrote under this key.
    pub raw: EncodedObject,
    /// Present when some unit was rejected. When absent, the shell deletes `quarantine_key`, which
    /// an earlier, larger attempt of the same batch may have written.
    pub quarantine: Option<EncodedObject>,
    pub quarantine_key: String,
}

impl ShardOutput {
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }
}

/// One line of a raw object, as read back.
#[derive(Debug, Clone, Deserialize)]
pub struct RawLine<'a> {
    #[serde(borrow)]
    pub shard: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub seq: std::borrow::Cow<'a, str>,
    pub subseq: u64,
    #[serde(borrow)]
    pub arrival: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub partition_key: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub event: &'a serde_json::value::RawValue,
}

/// One line of a quarantine object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineLine {
    pub shard: String,
    pub seq: String,
    pub subseq: u64,
    pub arrival: String,
    pub partition_key: String,
    pub reason: Reason,
    pub detail: String,
    pub data_base64: String,
}

/// Validates and encodes a batch. Records are grouped by shard in order of first appearance.
pub fn ingest(records: &[KinesisRecord<'_>]) -> Vec<ShardOutput> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_shard: BTreeMap<&str, Vec<&KinesisRecord<'_>>> = BTreeMap::new();
    for r in records {
        let group = by_shard.entry(r.shard_id).or_default();
        if group.is_empty() {
            order.push(r.shard_id);
        }
        group.push(r);
    }
    order
        .into_iter()
        .map(|shard| ingest_shard(&by_shard[shard]))
        .collect()
}

fn ingest_shard(records: &[&KinesisRecord<'_>]) -> ShardOutput {
    let first = records[0];
    let last = records[records.len() - 1];
    let mut raw = LineWriter::new(records.len() * 128);
    let mut quarantine = LineWriter::new(0);
    let mut out = ShardOutput {
        shard_id: first.shard_id.to_owned(),
        first_sequence_number: first.sequence_number.to_owned(),
        last_sequence_number: last.sequence_number.to_owned(),
        first_arrival: first.arrival,
        last_arrival: last.arrival,
        kinesis_records: records.len() as u64,
        units: 0,
        valid: 0,
        quarantined: BTreeMap::new(),
        max_ingest_lag_ms: None,
        raw: EncodedObject::default(),
        quarantine: None,
        quarantine_key: keys::quarantine_key(first.shard_id, first.sequence_number, first.arrival),
    };
    // Records of a batch share arrival times to the millisecond: format each distinct one once.
    let mut arrival_text: (Option<DateTime<Utc>>, String) = (None, String::new());
    for r in records {
        if arrival_text.0 != Some(r.arrival) {
            arrival_text = (Some(r.arrival), fmt_time(r.arrival));
        }
        let arrival = &arrival_text.1;
        // The record as one unit: a plain event, or an aggregate that cannot be decoded.
        let whole = Unit {
            record: r,
            arrival,
            subseq: 0,
            partition_key: r.partition_key,
            data: r.data,
        };
        if !kpl::is_aggregated(r.data) {
            accept_or_quarantine(&whole, &mut out, &mut raw, &mut quarantine);
            continue;
        }
        match kpl::deaggregate(r.data) {
            Ok(subs) => {
                for (i, sub) in subs.iter().enumerate() {
                    let unit = Unit {
                        record: r,
                        arrival,
                        subseq: i as u64,
                        partition_key: &sub.partition_key,
                        data: &sub.data,
                    };
                    accept_or_quarantine(&unit, &mut out, &mut raw, &mut quarantine);
                }
            }
            Err(rejection) => quarantine_unit(&whole, &rejection, &mut out, &mut quarantine),
        }
    }
    let (shard, seq, at) = (first.shard_id, first.sequence_number, first.arrival);
    out.raw = raw.finish(keys::raw_key(shard, seq, at));
    out.quarantine = (quarantine.lines > 0).then(|| quarantine.finish(out.quarantine_key.clone()));
    out
}

struct Unit<'a> {
    record: &'a KinesisRecord<'a>,
    arrival: &'a str,
    subseq: u64,
    partition_key: &'a str,
    data: &'a [u8],
}

fn accept_or_quarantine(
    unit: &Unit<'_>,
    out: &mut ShardOutput,
    raw: &mut LineWriter,
    quarantine: &mut LineWriter,
) {
    match event::validate(unit.data, unit.record.arrival) {
        Ok(ev) => {
            out.units += 1;
            out.valid += 1;
            let lag = (unit.record.arrival - ev.occurred_at).num_milliseconds();
            out.max_ingest_lag_ms = Some(out.max_ingest_lag_ms.map_or(lag, |m| m.max(lag)));
            raw.raw_line(unit);
        }
        Err(rejection) => {
            quarantine_unit(unit, &rejection, out, quarantine);
        }
    }
}

fn quarantine_unit(
    unit: &Unit<'_>,
    rejection: &Rejection,
    out: &mut ShardOutput,
    quarantine: &mut LineWriter,
) {
    out.units += 1;
    *out.quarantined.entry(rejection.reason).or_default() += 1;
    let line = QuarantineLine {
        shard: unit.record.shard_id.to_owned(),
        seq: unit.record.sequence_number.to_owned(),
        subseq: unit.subseq,
        arrival: unit.arrival.to_owned(),
        partition_key: unit.partition_key.to_owned(),
        reason: rejection.reason,
        detail: rejection.detail.clone(),
        data_base64: base64::engine::general_purpose::STANDARD.encode(unit.data),
    };
    quarantine.json_line(&line);
}

/// Lines are gzipped in chunks of about this many bytes: the text passes through a buffer that
/// stays in the CPU's cache, and the batch is never held uncompressed as a whole.
const CHUNK: usize = 64 * 1024;

/// Accumulates JSON lines and gzips them a chunk at a time.
struct LineWriter {
    /// Lines not yet compressed.
    buf: Vec<u8>,
    /// Created at the first chunk: a batch without rejections never pays for a quarantine encoder.
    gz: Option<GzEncoder<Vec<u8>>>,
    /// The expected compressed size, to size the output once.
    compressed_hint: usize,
    lines: u64,
    uncompressed_bytes: u64,
}

impl LineWriter {
    fn new(compressed_hint: usize) -> Self {
        LineWriter {
            buf: Vec::new(),
            gz: None,
            compressed_hint,
            lines: 0,
            uncompressed_bytes: 0,
        }
    }

    /// Ends the line just written; compresses the pending lines once they fill a chunk.
    fn end_line(&mut self) {
        self.lines += 1;
        if self.buf.len() >= CHUNK {
            self.compress_pending();
        }
    }

    fn compress_pending(&mut self) {
        let hint = self.compressed_hint;
        let gz = self.gz.get_or_insert_with(|| encoder(hint));
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(&self.buf);
        self.uncompressed_bytes += self.buf.len() as u64;
        self.buf.clear();
    }

    /// `{"shard","seq","subseq","arrival","partition_key","event"}` with the event's own bytes.
    fn raw_line(&mut self, unit: &Unit<'_>) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(CHUNK + 1024);
        }
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"shard\":");
        push_json_str(b, unit.record.shard_id);
        b.extend_from_slice(b",\"seq\":");
        push_json_str(b, unit.record.sequence_number);
        b.extend_from_slice(b",\"subseq\":");
        if unit.subseq < 10 {
            b.push(b'0' + unit.subseq as u8);
        } else {
            b.extend_from_slice(unit.subseq.to_string().as_bytes());
        }
        b.extend_from_slice(b",\"arrival\":");
        push_json_str(b, unit.arrival);
        b.extend_from_slice(b",\"partition_key\":");
        push_json_str(b, unit.partition_key);
        b.extend_from_slice(b",\"event\":");
        // The event is valid JSON: line breaks can only be insignificant whitespace between tokens.
        let event = unit.data.trim_ascii();
        let start = b.len();
        b.extend_from_slice(event);
        if memchr::memchr2(b'\n', b'\r', event).is_some() {
            for c in &mut b[start..] {
                if *c == b'\n' || *c == b'\r' {
                    *c = b' ';
                }
            }
        }
        b.extend_from_slice(b"}\n");
        self.end_line();
    }

    fn json_line<T: Serialize>(&mut self, value: &T) {
        // Serialising plain structs of strings and numbers into memory cannot fail.
        if serde_json::to_writer(&mut self.buf, value).is_ok() {
            self.buf.push(b'\n');
            self.end_line();
        }
    }

    fn finish(mut self, key: String) -> EncodedObject {
        self.compress_pending();
        // Finishing an encoder that writes into a Vec cannot fail.
        let body = self
            .gz
            .map(|gz| gz.finish().unwrap_or_default())
            .unwrap_or_default();
        EncodedObject {
            key,
            sha256: hex::encode(Sha256::digest(&body)),
            lines: self.lines,
            uncompressed_bytes: self.uncompressed_bytes,
            body,
        }
    }
}

fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    // Without an early exit the check runs many bytes at a time.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else if serde_json::to_writer(&mut *buf, s).is_err() {
        // Unreachable for in-memory writers; keep the line valid JSON regardless.
        buf.extend_from_slice(b"\"\"");
    }
}

/// Appends the standard base64 (with canonical padding) decoding of `text` to `out`: exactly what
/// `base64`'s `STANDARD` engine decodes, and the same errors (it decides anything unusual).
pub fn decode_base64_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), base64::DecodeError> {
    let start = out.len();
    if fast_base64(text, out).is_none() {
        out.truncate(start);
        base64::engine::general_purpose::STANDARD.decode_vec(text, out)?;
    }
    Ok(())
}

const INVALID: u8 = 0xFF;

/// The value of each base64 character; [`INVALID`] for everything else.
static BASE64_VALUES: [u8; 256] = {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Canonical standard base64 only; `None` leaves the text to the `base64` crate.
fn fast_base64(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if text.is_empty() {
        return Some(());
    }
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let (body, last) = text.split_at(text.len() - 4);
    out.reserve(text.len() / 4 * 3);
    let v = |c: u8| u32::from(BASE64_VALUES[usize::from(c)]);
    let mut quads = body.chunks_exact(8);
    for q in &mut quads {
        let (a, b, c, d) = (v(q[0]), v(q[1]), v(q[2]), v(q[3]));
        let (e, f, g, h) = (v(q[4]), v(q[5]), v(q[6]), v(q[7]));
        if (a | b | c | d | e | f | g | h) > 63 {
            return None;
        }
        let x = (a << 18) | (b << 12) | (c << 6) | d;
        let y = (e << 18) | (f << 12) | (g << 6) | h;
        let (x, y) = (x.to_be_bytes(), y.to_be_bytes());
        out.extend_from_slice(&[x[1], x[2], x[3], y[1], y[2], y[3]]);
    }
    for q in quads.remainder().chunks_exact(4) {
        let (a, b, c, d) = (v(q[0]), v(q[1]), v(q[2]), v(q[3]));
        if (a | b | c | d) > 63 {
            return None;
        }
        let x = ((a << 18) | (b << 12) | (c << 6) | d).to_be_bytes();
        out.extend_from_slice(&x[1..]);
    }
    let (a, b) = (v(last[0]), v(last[1]));
    if (a | b) > 63 {
        return None;
    }
    match (last[2], last[3]) {
        (b'=', b'=') => {
            // One byte; the unused low bits must be zero.
            if b & 0x0F != 0 {
                return None;
            }
            out.push(((a << 2) | (b >> 4)) as u8);
        }
        (c, b'=') => {
            let c = v(c);
            if c > 63 || c & 0x03 != 0 {
                return None;
            }
            let x = ((a << 18) | (b << 12) | (c << 6)).to_be_bytes();
            out.extend_from_slice(&x[1..3]);
        }
        (c, d) => {
            let (c, d) = (v(c), v(d));
            if (c | d) > 63 {
                return None;
            }
            let x = ((a << 18) | (b << 12) | (c << 6) | d).to_be_bytes();
            out.extend_from_slice(&x[1..]);
        }
    }
    Some(())
}

/// Deterministic gzip (no file name, mtime 0), the objects' level; `compressed_hint` sizes the
/// output once.
fn encoder(compressed_hint: usize) -> GzEncoder<Vec<u8>> {
    GzEncoder::new(
        Vec::with_capacity(compressed_hint + 64),
        Compression::new(GZIP_LEVEL),
    )
}

/// Deterministic gzip (no file name, mtime 0) of `data` in one piece.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = encoder(data.len() / 4);
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Decompresses a gzip body, every member of it: RFC 1952 allows several in one file (what
/// `cat a.gz b.gz` or an appending writer makes), and a decoder that stops after the first would
/// drop the rest without a word. Bytes after the last member that are not one are an error; the
/// error is the decoder's.
pub fn gunzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(decoded_size_hint(body));
    let mut dec = flate2::read::MultiGzDecoder::new(body);
    std::io::Read::read_to_end(&mut dec, &mut out)?;
    Ok(out)
}

/// The capacity to decode `body` into: the last member's recorded size (ISIZE, the size modulo
/// 2^32), which for the usual single member is exact, so the text is never copied to grow; when it
/// is implausible (several members, or a lying trailer) six times the body, JSON's usual ratio.
/// Never more than [`MAX_SIZE_HINT`]: past that the buffer grows as the text comes.
fn decoded_size_hint(body: &[u8]) -> usize {
    let fallback = body.len().saturating_mul(6);
    let hint = match body.last_chunk::<4>() {
        // JSON at gzip level 1 shrinks 5 to 10 times; a claim of more than 64 is left to the
        // decoder, which checks every trailer.
        Some(trailer) => {
            let recorded = u32::from_le_bytes(*trailer) as usize;
            if recorded >= body.len() && recorded <= body.len().saturating_mul(64) {
                recorded
            } else {
                fallback
            }
        }
        None => fallback,
    };
    hint.min(MAX_SIZE_HINT)
}

/// The most [`gunzip`] reserves up front: a trailer is no reason to reserve gigabytes (and abort
/// when they cannot be had).
const MAX_SIZE_HINT: usize = 256 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_764_064_800 + s, 0).unwrap()
    }

    fn event(id: &str) -> String {
        format!(
            r#"{{"event_id":"{id}","event_type":"click","occurred_at":"{}","source":"web"}}"#,
            fmt_time(at(-5))
        )
    }

    fn rec<'a>(shard: &'a str, seq: &'a str, data: &'a [u8]) -> KinesisRecord<'a> {
        KinesisRecord {
            shard_id: shard,
            sequence_number: seq,
            arrival: at(0),
            partition_key: "pk",
            data,
        }
    }

    #[test]
    fn splits_valid_and_invalid_per_shard() {
        let (a, b) = (event("a"), event("b"));
        let agg = kpl::aggregate(&[
            kpl::SubRecord {
                partition_key: "k1".into(),
                explicit_hash_key: None,
                data: event("c").into_bytes(),
            },
            kpl::SubRecord {
                partition_key: "k2".into(),
                explicit_hash_key: None,
                data: b"nope".to_vec(),
            },
        ]);
        let records = [
            rec("s0", "100", a.as_bytes()),
            rec("s1", "200", b"{}"),
            rec("s0", "101", b"\xff"),
            rec("s1", "201", b.as_bytes()),
            rec("s0", "102", &agg),
        ];
        let out = ingest(&records);
        assert_eq!(out.len(), 2);
        let s0 = &out[0];
        assert_eq!(
            (
                s0.shard_id.as_str(),
                s0.first_sequence_number.as_str(),
                s0.last_sequence_number.as_str()
            ),
            ("s0", "100", "102")
        );
        assert_eq!(
            (
                s0.kinesis_records,
                s0.units,
                s0.valid,
                s0.quarantined_total()
            ),
            (3, 4, 2, 2)
        );
        assert_eq!(s0.quarantined[&Reason::NotUtf8], 1);
        assert_eq!(s0.quarantined[&Reason::InvalidJson], 1);
        assert_eq!(s0.max_ingest_lag_ms, Some(5000));
        let raw = &s0.raw;
        assert_eq!(raw.key, "raw/dt=2025-11-25/hour=10/shard=s0/100.jsonl.gz");
        let text = String::from_utf8(gunzip(&raw.body).unwrap()).unwrap();
        let lines: Vec<RawLine<'_>> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (
                lines[1].seq.as_ref(),
                lines[1].subseq,
                lines[1].partition_key.as_ref()
            ),
            ("102", 0, "k1")
        );
        assert_eq!(lines[0].event.get(), a);
        let q = s0.quarantine.as_ref().unwrap();
        assert_eq!(
            q.key,
            "quarantine/dt=2025-11-25/hour=10/shard=s0/100.jsonl.gz"
        );
        let text = String::from_utf8(gunzip(&q.body).unwrap()).unwrap();
        let qs: Vec<QuarantineLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(qs[0].data_base64, "/w==");
        assert_eq!(
            (qs[1].seq.as_str(), qs[1].subseq, qs[1].reason),
            ("102", 1, Reason::InvalidJson)
        );
        let s1 = &out[1];
        assert_eq!((s1.units, s1.valid), (2, 1));
        assert_eq!(s1.quarantined[&Reason::MissingField], 1);
    }

    #[test]
    fn bytes_after_the_last_gzip_member_are_an_error_not_dropped() {
        let mut body = gzip(b"{}\n");
        body.extend_from_slice(b"not a gzip member");
        assert!(gunzip(&body).is_err());
        assert!(gunzip(b"").is_err(), "an empty body is not gzip");
    }

    #[test]
    fn a_trailer_claiming_gigabytes_reserves_no_more_than_the_cap() {
        let mut body = gzip(b"{}\n");
        let n = body.len();
        body[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decoded_size_hint(&body) <= 6 * body.len());
        let huge = vec![0u8; 64 * 1024 * 1024];
        assert_eq!(decoded_size_hint(&huge), MAX_SIZE_HINT);
        assert!(
            gunzip(&body).is_err(),
            "the lying trailer is the decoder's error"
        );
    }

    #[test]
    fn a_single_member_decodes_into_its_recorded_size_without_growing() {
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| event(&format!("e-{i}")).into_bytes())
            .collect();
        let decoded = gunzip(&gzip(&text)).unwrap();
        assert_eq!(decoded, text);
        assert_eq!(
            decoded.capacity(),
            text.len(),
            "the buffer was grown or over-reserved"
        );
    }

    proptest::proptest! {
        #[test]
        fn every_member_of_a_gzip_body_is_decoded(
            parts in proptest::collection::vec(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 1..4),
        ) {
            let body: Vec<u8> = parts.iter().flat_map(|p| gzip(p)).collect();
            proptest::prop_assert_eq!(gunzip(&body).unwrap(), parts.concat());
        }

        #[test]
        fn base64_decodes_as_the_base64_crate_decodes(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            edit in proptest::option::of((proptest::prelude::any::<proptest::sample::Index>(),
                proptest::sample::select(b"A/+=_-\n a".to_vec()))),
        ) {
            let mut text = base64::engine::general_purpose::STANDARD.encode(&data).into_bytes();
            if let (Some((at, byte)), false) = (edit, text.is_empty()) {
                let i = at.index(text.len());
                text[i] = byte;
            }
            let mut out = b"prefix".to_vec();
            let got = decode_base64_into(&text, &mut out).map(|()| out[6..].to_vec());
            let want = base64::engine::general_purpose::STANDARD.decode(&text);
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn rejected_aggregate_is_one_unit() {
        let mut agg = kpl::aggregate(&[kpl::SubRecord {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: event("x").into_bytes(),
        }]);
        let n = agg.len();
        agg[n - 1] ^= 0xFF;
        let out = ingest(&[rec("s", "1", &agg)]);
        assert_eq!((out[0].units, out[0].valid), (1, 0));
        assert_eq!(out[0].quarantined[&Reason::KplChecksumMismatch], 1);
        assert_eq!(
            out[0].raw.lines, 0,
            "an empty raw object still replaces earlier attempts"
        );
        assert_eq!(gunzip(&out[0].raw.body).unwrap(), b"");
    }

    #[test]
    fn a_batch_larger_than_a_chunk_is_one_gzip_of_all_its_lines_in_order() {
        let events: Vec<String> = (0..3000).map(|i| event(&format!("e-{i:05}"))).collect();
        let invalid = b"{\"event_id\":1}".repeat(5000);
        let seqs: Vec<String> = (0..events.len() + 1)
            .map(|i| (1000 + i).to_string())
            .collect();
        let mut records: Vec<KinesisRecord<'_>> = events
            .iter()
            .zip(&seqs)
            .map(|(e, s)| rec("s", s, e.as_bytes()))
            .collect();
        records.insert(1500, rec("s", &seqs[events.len()], &invalid));
        let out = ingest(&records).remove(0);
        let text = gunzip(&out.raw.body).unwrap();
        assert!(text.len() > 4 * CHUNK, "the test must cross chunks");
        assert_eq!(out.raw.uncompressed_bytes, text.len() as u64);
        let ids: Vec<String> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let line: RawLine<'_> = serde_json::from_slice(l).unwrap();
                event::parse(line.event.get().as_bytes())
                    .unwrap()
                    .event_id
                    .into_owned()
            })
            .collect();
        let expected: Vec<String> = (0..3000).map(|i| format!("e-{i:05}")).collect();
        assert_eq!((ids, out.raw.lines), (expected, 3000));
        let quarantine = out.quarantine.unwrap();
        let q = gunzip(&quarantine.body).unwrap();
        assert!(
            q.len() > CHUNK,
            "the quarantine object must cross a chunk too"
        );
        assert_eq!(quarantine.uncompressed_bytes, q.len() as u64);
        assert_eq!(quarantine.lines, 1);
    }

    #[test]
    fn pretty_printed_events_stay_one_line() {
        let pretty = event("p").replace(',', ",\n  ");
        let out = ingest(&[rec("s", "1", pretty.as_bytes())]);
        let text = String::from_utf8(gunzip(&out[0].raw.body).unwrap()).unwrap();
        assert_eq!(text.lines().count(), 1);
        let line: RawLine<'_> = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(
            event::parse(line.event.get().as_bytes()).unwrap().event_id,
            "p"
        );
    }
}
