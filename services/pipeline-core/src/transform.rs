//! The transformer's core: a raw object in, enriched rows grouped into Hive partitions out.
//!
//! Enrichment (documented in `docs/data-contract.md`):
//! - `event_date`, `event_hour`: UTC date and hour of `occurred_at` (the partition of the row);
//! - `ingest_lag_ms`: Kinesis arrival time minus `occurred_at`;
//! - PII pseudonymisation: `user_id` becomes `user_id_hash`, and the values of attribute keys
//!   `email`, `ip` and `phone` (any depth, any letter case) become HMAC-SHA256 hex digests;
//! - dedupe by `event_id` inside one raw object: the first occurrence wins, the rest are counted;
//! - lineage: `kinesis_shard`, `kinesis_seq`, `kinesis_subseq`, `raw_key`.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::event;
use crate::ingest::{RawLine, gunzip};
use crate::keys;
use crate::parquet_io::{self, Row};
use crate::reason::Rejection;

/// The hasher of the per-object sets: seeded per process, several times faster than SipHash on
/// short ids.
type FastHash = foldhash::fast::RandomState;

/// The attribute keys whose values are pseudonymised, compared case-insensitively.
pub const PII_ATTRIBUTE_KEYS: [&str; 3] = ["email", "ip", "phone"];

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("`{0}` is not a raw object key of this pipeline")]
    NotARawKey(String),
    #[error("raw object is not valid gzip: {0}")]
    NotGzip(std::io::Error),
    #[error("raw object is not utf-8 text after gunzip")]
    NotUtf8,
    #[error("raw object line {line}: {message}")]
    BadLine { line: usize, message: String },
    #[error("raw object line {line}: event no longer satisfies the contract: {rejection}")]
    InvalidEvent { line: usize, rejection: Rejection },
    #[error("writing parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("the pii hmac key is empty: set a non-empty secret value")]
    EmptyKey,
}

/// Keyed pseudonymisation: HMAC-SHA256, lower-case hex.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer { key: <redacted> }")
    }
}

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Result<Self, TransformError> {
        if key.is_empty() {
            return Err(TransformError::EmptyKey);
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| TransformError::EmptyKey)?;
        Ok(Pseudonymizer { mac })
    }

    pub fn hash(&self, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        lower_hex(&mac.finalize().into_bytes())
    }

    /// The attributes as stored: the input text with the values of PII keys replaced by their
    /// hashes. One pass over the text, no tree: everything else stays byte for byte.
    pub fn attributes_json(&self, attributes: &str) -> String {
        self.attributes_json_with(attributes, &mut |v| self.hash(v).into())
    }

    /// [`Self::attributes_json`] with the hashes from `hash` (a memo of [`Self::hash`]).
    fn attributes_json_with(
        &self,
        attributes: &str,
        hash: &mut impl FnMut(&str) -> Arc<str>,
    ) -> String {
        let text = attributes;
        if !might_hold_pii(text) {
            return text.to_owned();
        }
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len() + 64);
        let mut copied = 0; // bytes of `text` already in `out`
        let mut i = 0;
        while let Some(quote) = b.get(i..).and_then(|rest| memchr::memchr(b'"', rest)) {
            i += quote;
            let end = string_end(b, i);
            // A string followed by `:` is an object key.
            let mut j = end;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < b.len() && b[j] == b':' && is_pii_key(&decode_string(&text[i..end])) {
                let mut v = j + 1;
                while v < b.len() && b[v].is_ascii_whitespace() {
                    v += 1;
                }
                let v_end = value_end(b, v);
                let value = &text[v..v_end];
                let hashed = match value.as_bytes().first() {
                    Some(b'n') => None,
                    Some(b'"') => Some(hash(&decode_string(value))),
                    // Numbers, objects and arrays: the hash of their compact JSON text.
                    _ => Some(hash(
                        &serde_json::from_str::<Value>(value)
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    )),
                };
                if let Some(h) = hashed {
                    out.push_str(&text[copied..v]);
                    out.push('"');
                    out.push_str(&h);
                    out.push('"');
                    copied = v_end;
                }
                i = v_end;
            } else {
                i = end;
            }
        }
        out.push_str(&text[copied..]);
        out
    }
}

/// The index just past the string that starts at `start` (a `"`).
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(special) = b
        .get(i..)
        .and_then(|rest| memchr::memchr2(b'\\', b'"', rest))
    {
        i += special;
        if b[i] == b'"' {
            return i + 1;
        }
        i += 2;
    }
    b.len()
}

/// The index just past the JSON value that starts at `start` (valid JSON assumed).
fn value_end(b: &[u8], start: usize) -> usize {
    match b.get(start) {
        Some(b'"') => string_end(b, start),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = start;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        _ => {
            let mut i = start;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace()
            {
                i += 1;
            }
            i
        }
    }
}

/// The content of a JSON string literal (with its quotes).
fn decode_string(literal: &str) -> Cow<'_, str> {
    let inner = &literal[1..literal.len().saturating_sub(1).max(1)];
    if inner.contains('\\') {
        Cow::Owned(serde_json::from_str::<String>(literal).unwrap_or_default())
    } else {
        Cow::Borrowed(inner)
    }
}

fn is_pii_key(k: &str) -> bool {
    PII_ATTRIBUTE_KEYS.iter().any(|p| k.eq_ignore_ascii_case(p))
}

/// Lower-case hex of `bytes` (what `hex::encode` gives, without a `char` at a time).
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    // Hex digits are ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// A cheap pre-check, in one pass: could any object key in this JSON text be a PII key?
fn might_hold_pii(text: &str) -> bool {
    let b = text.as_bytes();
    if memchr::memchr(b'\\', b).is_some() {
        return true;
    }
    let mut from = 0;
    while let Some(quote) = memchr::memchr(b'"', &b[from..]) {
        let start = from + quote + 1;
        let is_key = |p: &str| {
            b.get(start + p.len()) == Some(&b'"')
                && b[start..start + p.len()].eq_ignore_ascii_case(p.as_bytes())
        };
        if PII_ATTRIBUTE_KEYS.iter().any(|p| is_key(p)) {
            return true;
        }
        from = start;
    }
    false
}

/// One output object.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedObject {
    pub key: String,
    pub event_type: String,
    pub date: NaiveDate,
    pub hour: u32,
    pub rows: Vec<Row>,
}

/// What a raw object's lines cover: the batch its item describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub first_sequence_number: String,
    pub last_sequence_number: String,
    pub first_arrival: DateTime<Utc>,
    pub last_arrival: DateTime<Utc>,
}

impl Span {
    fn include(span: &mut Option<Span>, seq: &str, arrival: DateTime<Utc>) {
        match span {
            None => {
                *span = Some(Span {
                    first_sequence_number: seq.to_owned(),
                    last_sequence_number: seq.to_owned(),
                    first_arrival: arrival,
                    last_arrival: arrival,
                })
            }
            Some(s) => {
                if keys::seq_cmp(seq, &s.first_sequence_number).is_lt() {
                    seq.clone_into(&mut s.first_sequence_number);
                }
                if keys::seq_cmp(seq, &s.last_sequence_number).is_gt() {
                    seq.clone_into(&mut s.last_sequence_number);
                }
                s.first_arrival = s.first_arrival.min(arrival);
                s.last_arrival = s.last_arrival.max(arrival);
            }
        }
    }
}

/// Everything produced from one raw object.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformOutput {
    pub lines: u64,
    pub rows: u64,
    pub duplicates: u64,
    pub max_ingest_lag_ms: Option<i64>,
    /// The lowest and highest sequence number and arrival of the lines; `None` without lines.
    pub span: Option<Span>,
    /// The size of the gunzipped body.
    pub uncompressed_bytes: u64,
    /// The minutes ([`crate::owner::minute_of`]) in which the lines' records arrived.
    pub minutes: BTreeSet<i64>,
    /// Lines skipped because an overlapping raw object owns their record ([`crate::owner`]).
    pub owned_elsewhere: u64,
    /// Sorted by key.
    pub objects: Vec<ProcessedObject>,
}

impl TransformOutput {
    pub fn keys(&self) -> Vec<String> {
        self.objects.iter().map(|o| o.key.clone()).collect()
    }
}

/// Transforms a raw object's gzip body; `raw_key` is its (decoded) key.
pub fn transform(
    raw_key: &str,
    body: &[u8],
    pii: &Pseudonymizer,
) -> Result<TransformOutput, TransformError> {
    transform_with(raw_key, body, pii, true, &RecordIds::new())
}

/// A record's place in its shard: sequence number and sub-sequence number.
pub type RecordIds = HashSet<(String, u64)>;

/// [`transform`] without the records in `skip`, which another raw object owns: they still count
/// as lines and in the span, and are counted in `owned_elsewhere`, but make no row and take no
/// part in the dedupe.
pub fn transform_skipping(
    raw_key: &str,
    body: &[u8],
    pii: &Pseudonymizer,
    skip: &RecordIds,
) -> Result<TransformOutput, TransformError> {
    transform_with(raw_key, body, pii, true, skip)
}

/// The lines of a raw object exactly as `str::lines` splits them (`\n` or `\r\n`; a last line
/// without an ending), the line breaks found many bytes at a time.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', text.as_bytes())
        .map(Some)
        .chain(std::iter::once(None))
        .filter_map(move |newline| {
            let from = start;
            match newline {
                Some(end) => {
                    start = end + 1;
                    let line = &text[from..end];
                    Some(line.strip_suffix('\r').unwrap_or(line))
                }
                None => (from < text.len()).then(|| &text[from..]),
            }
        })
}

/// The records a raw object's gzip body holds.
pub fn record_ids(body: &[u8]) -> Result<RecordIds, TransformError> {
    let text = gunzip(body).map_err(TransformError::NotGzip)?;
    let text = std::str::from_utf8(&text).map_err(|_| TransformError::NotUtf8)?;
    split_lines(text)
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, line)| {
            let raw: RawLine<'_> =
                serde_json::from_str(line).map_err(|e| TransformError::BadLine {
                    line: i + 1,
                    message: e.to_string(),
                })?;
            Ok((raw.seq.into_owned(), raw.subseq))
        })
        .collect()
}

/// [`transform`] reading every line with `serde_json`: the reference the fast line reader is
/// tested against.
#[doc(hidden)]
pub fn transform_reference(
    raw_key: &str,
    body: &[u8],
    pii: &Pseudonymizer,
) -> Result<TransformOutput, TransformError> {
    transform_with(raw_key, body, pii, false, &RecordIds::new())
}

fn transform_with(
    raw_key: &str,
    body: &[u8],
    pii: &Pseudonymizer,
    fast_lines: bool,
    skip: &RecordIds,
) -> Result<TransformOutput, TransformError> {
    let parsed_key = keys::parse_raw_key(raw_key)
        .ok_or_else(|| TransformError::NotARawKey(raw_key.to_owned()))?;
    let text = gunzip(body).map_err(TransformError::NotGzip)?;
    let text = std::str::from_utf8(&text).map_err(|_| TransformError::NotUtf8)?;

    let mut seen: HashSet<Cow<'_, str>, FastHash> = HashSet::default();
    // Users and their PII values recur within a batch: hash each distinct value once.
    let mut hashes = Memo::new(pii);
    // Rows grouped by partition, keyed by borrowed text; sorted by partition at the end.
    let mut groups: HashMap<(Cow<'_, str>, NaiveDate, u32), Vec<Row>, FastHash> =
        HashMap::default();
    // Values many rows share, allocated once each.
    let mut shared = Shared::new(raw_key);
    let (mut lines, mut rows, mut duplicates, mut max_lag) = (0u64, 0u64, 0u64, None::<i64>);
    let mut arrivals = Arrivals::default();
    let mut span: Option<Span> = None;
    let mut minutes = BTreeSet::new();
    let mut owned_elsewhere = 0u64;
    for (i, line) in split_lines(text).enumerate().filter(|(_, l)| !l.is_empty()) {
        let n = i + 1;
        lines += 1;
        let fast = fast_line(line)
            .filter(|_| fast_lines)
            .and_then(|(lineage, event)| Some((lineage, event::parse_text(event).ok()?)));
        let (lineage, ev, arrival) = match fast {
            // The line is exactly what `serde_json` would read, and its event is valid: only
            // the arrival time can still be wrong, as on the reference path.
            Some((lineage, ev)) => {
                let arrival = arrivals.parse(&lineage.arrival, n)?;
                (lineage, ev, arrival)
            }
            None => {
                let raw: RawLine<'_> =
                    serde_json::from_str(line).map_err(|e| TransformError::BadLine {
                        line: n,
                        message: e.to_string(),
                    })?;
                let arrival = arrivals.parse(&raw.arrival, n)?;
                let ev = event::parse_text(raw.event.get())
                    .map_err(|rejection| TransformError::InvalidEvent { line: n, rejection })?;
                let lineage = Lineage {
                    shard: raw.shard,
                    seq: raw.seq,
                    subseq: raw.subseq,
                    arrival: raw.arrival,
                };
                (lineage, ev, arrival)
            }
        };
        Span::include(&mut span, &lineage.seq, arrival);
        minutes.insert(crate::owner::minute_of(arrival));
        if !skip.is_empty() && skip.contains(&(lineage.seq.to_string(), lineage.subseq)) {
            owned_elsewhere += 1;
            continue;
        }
        if !seen.insert(ev.event_id.clone()) {
            duplicates += 1;
            continue;
        }
        let user_id_hash = ev.user_id.as_ref().map(|u| hashes.hash(u));
        let row = enrich(
            &ev,
            arrival,
            &lineage,
            &mut shared,
            user_id_hash,
            &mut hashes,
        );
        max_lag = Some(max_lag.map_or(row.ingest_lag_ms, |m: i64| m.max(row.ingest_lag_ms)));
        rows += 1;
        let date = ev.occurred_at.date_naive();
        groups
            .entry((ev.event_type.clone(), date, ev.occurred_at.hour()))
            .or_default()
            .push(row);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
    let objects = groups
        .into_iter()
        .map(|((event_type, date, hour), rows)| ProcessedObject {
            key: keys::processed_key(
                &event_type,
                date,
                hour,
                parsed_key.shard_id,
                parsed_key.first_sequence_number,
            ),
            event_type: event_type.into_owned(),
            date,
            hour,
            rows,
        })
        .collect();
    Ok(TransformOutput {
        lines,
        rows,
        duplicates,
        max_ingest_lag_ms: max_lag,
        span,
        uncompressed_bytes: text.len() as u64,
        minutes,
        owned_elsewhere,
        objects,
    })
}

/// The lineage of a raw line.
struct Lineage<'a> {
    shard: Cow<'a, str>,
    seq: Cow<'a, str>,
    subseq: u64,
    arrival: Cow<'a, str>,
}

/// Lines of a batch share arrival times: parse each distinct one once.
#[derive(Default)]
struct Arrivals {
    last: Option<(String, DateTime<Utc>)>,
}

impl Arrivals {
    fn parse(&mut self, text: &str, line: usize) -> Result<DateTime<Utc>, TransformError> {
        if let Some((last, t)) = &self.last
            && last == text
        {
            return Ok(*t);
        }
        let t = DateTime::parse_from_rfc3339(text)
            .map_err(|e| TransformError::BadLine {
                line,
                message: format!("arrival: {e}"),
            })?
            .with_timezone(&Utc);
        self.last = Some((text.to_owned(), t));
        Ok(t)
    }
}

/// Reads a line in exactly the shape the stream processor writes it
/// (`{"shard":"…","seq":"…","subseq":N,"arrival":"…","partition_key":"…","event":{…}}`, strings
/// without escapes): its lineage and its event's text. `None` for any other line, which is then
/// read by `serde_json`; when this reads a line, `serde_json` reads the same values from it.
fn fast_line(line: &str) -> Option<(Lineage<'_>, &str)> {
    fn plain<'a>(rest: &mut &'a str, prefix: &str) -> Option<&'a str> {
        let r = rest.strip_prefix(prefix)?;
        let end = event::special(r.as_bytes())?;
        if r.as_bytes()[end] != b'"' {
            return None;
        }
        *rest = &r[end + 1..];
        Some(&r[..end])
    }
    let mut rest = line;
    let shard = plain(&mut rest, "{\"shard\":\"")?;
    let seq = plain(&mut rest, ",\"seq\":\"")?;
    let r = rest.strip_prefix(",\"subseq\":")?;
    let digits = r.bytes().take_while(u8::is_ascii_digit).count();
    let subseq_text = &r[..digits];
    if subseq_text.is_empty() || (subseq_text.len() > 1 && subseq_text.starts_with('0')) {
        return None;
    }
    let subseq: u64 = subseq_text.parse().ok()?;
    rest = &r[digits..];
    let arrival = plain(&mut rest, ",\"arrival\":\"")?;
    plain(&mut rest, ",\"partition_key\":\"")?;
    let event = rest.strip_prefix(",\"event\":")?.strip_suffix('}')?;
    if !(event.starts_with('{') && event.ends_with('}')) {
        return None;
    }
    let lineage = Lineage {
        shard: Cow::Borrowed(shard),
        seq: Cow::Borrowed(seq),
        subseq,
        arrival: Cow::Borrowed(arrival),
    };
    Some((lineage, event))
}

/// The pseudonyms of one object's values: each distinct value is hashed once.
struct Memo<'p> {
    pii: &'p Pseudonymizer,
    hashes: HashMap<String, Arc<str>, FastHash>,
}

impl<'p> Memo<'p> {
    fn new(pii: &'p Pseudonymizer) -> Self {
        Memo {
            pii,
            hashes: HashMap::default(),
        }
    }

    fn hash(&mut self, value: &str) -> Arc<str> {
        if let Some(h) = self.hashes.get(value) {
            return h.clone();
        }
        let h: Arc<str> = self.pii.hash(value).into();
        self.hashes.insert(value.to_owned(), h.clone());
        h
    }

    fn attributes_json(&mut self, attributes: &str) -> String {
        let pii = self.pii;
        pii.attributes_json_with(attributes, &mut |v| self.hash(v))
    }
}

/// The strings many rows of an object share: its key, its shard, and the few event types and
/// sources, each allocated once.
struct Shared {
    raw_key: Arc<str>,
    strings: HashMap<String, Arc<str>, FastHash>,
}

impl Shared {
    fn new(raw_key: &str) -> Self {
        Shared {
            raw_key: raw_key.into(),
            strings: HashMap::default(),
        }
    }

    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        self.strings.insert(s.to_owned(), a.clone());
        a
    }
}

fn enrich(
    ev: &event::Event<'_>,
    arrival: DateTime<Utc>,
    raw: &Lineage<'_>,
    shared: &mut Shared,
    user_id_hash: Option<Arc<str>>,
    hashes: &mut Memo<'_>,
) -> Row {
    let extra_json = (!ev.extra.is_empty()).then(|| {
        let size = ev
            .extra
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
            + 2;
        let mut s = String::with_capacity(size);
        s.push('{');
        for (i, (k, v)) in ev.extra.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            if k.bytes()
                .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
            {
                s.push('"');
                s.push_str(k);
                s.push('"');
            } else {
                s.push_str(&serde_json::to_string(k.as_ref()).unwrap_or_default());
            }
            s.push(':');
            s.push_str(v);
        }
        s.push('}');
        s
    });
    Row {
        event_id: ev.event_id.to_string(),
        event_type: shared.get(&ev.event_type),
        occurred_at_us: ev.occurred_at.timestamp_micros(),
        source: shared.get(&ev.source),
        user_id_hash,
        session_id: ev.session_id.as_deref().map(str::to_owned),
        schema_version: ev.schema_version as i32,
        attributes_json: ev.attributes.map(|a| hashes.attributes_json(a)),
        extra_json,
        event_date: parquet_io::days_since_epoch(ev.occurred_at.date_naive()),
        event_hour: ev.occurred_at.hour() as i32,
        arrival_time_us: arrival.timestamp_micros(),
        ingest_lag_ms: (arrival - ev.occurred_at).num_milliseconds(),
        kinesis_shard: shared.get(&raw.shard),
        kinesis_seq: raw.seq.to_string(),
        kinesis_subseq: raw.subseq as i64,
        raw_key: shared.raw_key.clone(),
    }
}

/// Encodes every output object as Parquet: `(key, bytes)` sorted by key.
pub fn encode(output: &TransformOutput) -> Result<Vec<(String, Vec<u8>)>, TransformError> {
    output
        .objects
        .iter()
        .map(|o| Ok((o.key.clone(), parquet_io::write_rows(&o.rows)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{KinesisRecord, ingest};
    use chrono::TimeZone;

    fn pii() -> Pseudonymizer {
        Pseudonymizer::new(b"test-key").unwrap()
    }

    fn raw_object(events: &[String]) -> (String, Vec<u8>) {
        let arrival = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let seqs: Vec<String> = (0..events.len()).map(|i| format!("{}", 1000 + i)).collect();
        let records: Vec<KinesisRecord<'_>> = events
            .iter()
            .zip(&seqs)
            .map(|(e, s)| KinesisRecord {
                shard_id: "shardId-000000000000",
                sequence_number: s,
                arrival,
                partition_key: "pk",
                data: e.as_bytes(),
            })
            .collect();
        let out = ingest(&records).remove(0);
        (out.raw.key, out.raw.body)
    }

    fn ev(id: &str, ty: &str, at: &str, rest: &str) -> String {
        format!(
            r#"{{"event_id":"{id}","event_type":"{ty}","occurred_at":"{at}","source":"web"{rest}}}"#
        )
    }

    #[test]
    fn records_another_object_owns_are_skipped_before_the_dedupe() {
        let (key, body) = raw_object(&[
            ev("a", "click", "2026-11-25T09:00:00Z", ""),
            ev("b", "click", "2026-11-25T09:00:00Z", ""),
            ev("a", "click", "2026-11-25T09:00:00Z", ""),
        ]);
        let ids = record_ids(&body).unwrap();
        assert_eq!(
            ids,
            RecordIds::from([
                ("1000".to_owned(), 0),
                ("1001".to_owned(), 0),
                ("1002".to_owned(), 0)
            ])
        );
        let whole = transform(&key, &body, &pii()).unwrap();
        assert_eq!(
            (whole.rows, whole.duplicates, whole.owned_elsewhere),
            (2, 1, 0)
        );
        // The first `a` belongs to another object: the second is this object's own.
        let skip = RecordIds::from([("1000".to_owned(), 0)]);
        let out = transform_skipping(&key, &body, &pii(), &skip).unwrap();
        assert_eq!(
            (out.lines, out.rows, out.duplicates, out.owned_elsewhere),
            (3, 2, 0, 1)
        );
        let seqs: Vec<&str> = out.objects[0]
            .rows
            .iter()
            .map(|r| r.kinesis_seq.as_str())
            .collect();
        assert_eq!(seqs, ["1001", "1002"]);
        // The span and the minutes still describe every line.
        assert_eq!(out.span, whole.span);
        assert_eq!(out.minutes, whole.minutes);
        assert_eq!(out.minutes.len(), 1);
    }

    #[test]
    fn enriches_dedupes_and_partitions() {
        let (key, body) = raw_object(&[
            ev(
                "a",
                "Click",
                "2026-11-25T09:59:59.5Z",
                r#","user_id":"u1","attributes":{"Email":"x@y","n":{"ip":"1.2.3.4","ok":1}},"utm":"z""#,
            ),
            ev("b", "click", "2026-11-25T08:00:00Z", ""),
            ev("a", "click", "2026-11-25T09:00:00Z", ""),
            ev(
                "c",
                "purchase",
                "2026-11-25T09:30:00+01:00",
                r#","attributes":{"sku":"s-1"}"#,
            ),
        ]);
        let out = transform(&key, &body, &pii()).unwrap();
        assert_eq!((out.lines, out.rows, out.duplicates), (4, 3, 1));
        let keys = out.keys();
        assert_eq!(
            keys,
            [
                "processed/event_type=click/dt=2026-11-25/hour=08/shardId-000000000000-1000.parquet",
                "processed/event_type=click/dt=2026-11-25/hour=09/shardId-000000000000-1000.parquet",
                "processed/event_type=purchase/dt=2026-11-25/hour=08/shardId-000000000000-1000.parquet",
            ]
        );
        let a = &out.objects[1].rows[0];
        assert_eq!(a.event_id, "a");
        assert_eq!(a.user_id_hash.as_deref(), Some(pii().hash("u1").as_str()));
        assert_eq!(a.user_id_hash.as_ref().unwrap().len(), 64);
        let attrs: Value = serde_json::from_str(a.attributes_json.as_deref().unwrap()).unwrap();
        assert_eq!(attrs["Email"], Value::String(pii().hash("x@y")));
        assert_eq!(attrs["n"]["ip"], Value::String(pii().hash("1.2.3.4")));
        assert_eq!(attrs["n"]["ok"], 1);
        assert_eq!(a.extra_json.as_deref(), Some(r#"{"utm":"z"}"#));
        assert_eq!(a.ingest_lag_ms, 500);
        assert_eq!(
            (a.kinesis_seq.as_str(), a.kinesis_subseq, &*a.raw_key),
            ("1000", 0, key.as_str())
        );
        let c = &out.objects[2].rows[0];
        assert_eq!(c.attributes_json.as_deref(), Some(r#"{"sku":"s-1"}"#));
        assert_eq!(c.event_hour, 8);
    }

    #[test]
    fn pii_values_of_any_type_are_hashed() {
        let raw =
            r#"{"phone": 5551234, "list": [{"IP": [ "a" ]}], "email": null, "n": {"ip": "x\"y"}}"#;
        let v: Value = serde_json::from_str(&pii().attributes_json(raw)).unwrap();
        assert_eq!(v["n"]["ip"], Value::String(pii().hash("x\"y")));
        assert_eq!(v["phone"], Value::String(pii().hash("5551234")));
        assert_eq!(v["list"][0]["IP"], Value::String(pii().hash("[\"a\"]")));
        assert_eq!(v["email"], Value::Null);
        // An escaped key is still found.
        let raw = r#"{"em\u0061il":"x"}"#;
        assert!(!pii().attributes_json(raw).contains("\"x\""));
    }

    #[test]
    fn rejects_foreign_or_corrupt_objects() {
        let (key, body) = raw_object(&[ev("a", "x", "2026-11-25T09:00:00Z", "")]);
        assert!(matches!(
            transform("quarantine/x", &body, &pii()),
            Err(TransformError::NotARawKey(_))
        ));
        assert!(matches!(
            transform(&key, b"plain", &pii()),
            Err(TransformError::NotGzip(_))
        ));
        let bad = crate::ingest::gzip(b"{\"shard\":1}\n");
        assert!(matches!(
            transform(&key, &bad, &pii()),
            Err(TransformError::BadLine { line: 1, .. })
        ));
        assert!(Pseudonymizer::new(b"").is_err());
    }

    /// The pseudonymised attributes by the definition, on the parsed tree: every value of a PII
    /// key at any depth replaced by the hash of its string, or of its compact JSON; null stays.
    fn pseudonymised_tree(v: &Value, pii: &Pseudonymizer) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::Null => Value::Null,
                            Value::String(s) if is_pii_key(k) => Value::String(pii.hash(s)),
                            other if is_pii_key(k) => Value::String(pii.hash(&other.to_string())),
                            other => pseudonymised_tree(other, pii),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| pseudonymised_tree(v, pii)).collect())
            }
            other => other.clone(),
        }
    }

    fn json_tree() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = r#"[a-z"\\/\n\t é:{},\[\]]{0,8}"#;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            text.prop_map(Value::from),
        ];
        let key = prop_oneof![
            Just("ip".to_owned()),
            Just("Email".to_owned()),
            Just("PHONE".to_owned()),
            Just("ipx".to_owned()),
            text.prop_map(String::from),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key.clone(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The one-pass rewrite of the text agrees with the definition on the tree, compact or
        /// pretty-printed.
        #[test]
        fn attributes_are_pseudonymised_as_defined(
            tree in proptest::collection::btree_map("[a-zA-Z]{1,6}|ip|email", json_tree(), 0..5),
            pretty in proptest::prelude::any::<bool>(),
        ) {
            let tree = Value::Object(tree.into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&tree).unwrap()
            } else {
                serde_json::to_string(&tree).unwrap()
            };
            let pii = pii();
            let out: Value = serde_json::from_str(&pii.attributes_json(&text)).unwrap();
            proptest::prop_assert_eq!(out, pseudonymised_tree(&tree, &pii));
        }

        #[test]
        fn lines_are_split_as_str_lines_splits_them(text in "[a\r\n]{0,12}") {
            proptest::prop_assert_eq!(split_lines(&text).collect::<Vec<_>>(), text.lines().collect::<Vec<_>>());
        }

        #[test]
        fn lower_hex_is_hex_encoding(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            proptest::prop_assert_eq!(lower_hex(&bytes), hex::encode(&bytes));
        }

        /// The one-pass pre-check answers as its definition: a quoted PII key in any letter
        /// case, or any escape.
        #[test]
        fn the_pii_pre_check_is_its_definition(text in r#"[{}":,a-zA-Z\\ ]{0,24}|.*"(Email|iP|PHONE|ipx|phon)".*"#) {
            let b = text.as_bytes();
            let reference = PII_ATTRIBUTE_KEYS.iter().any(|p| {
                let n = p.len() + 2;
                b.windows(n).any(|w| {
                    w[0] == b'"' && w[n - 1] == b'"' && w[1..n - 1].eq_ignore_ascii_case(p.as_bytes())
                })
            }) || text.contains('\\');
            proptest::prop_assert_eq!(might_hold_pii(&text), reference);
        }
    }
}
