//! What a backfill sends: the records of a file, whatever the pipeline wrote it as.
//!
//! A backfill (`cargo xtask backfill`, the producer's `--from-file`) sends events into a stack
//! through the same contract as any producer: the stream processor validates them again. Its input
//! is a file of JSON lines, plain or gzip, holding any mix of
//! - events, one a line, sent as they are (a line that is no valid event is sent too: the stream
//!   processor quarantines it with its reason, as it would from any producer);
//! - raw lines (what the stream processor and `pipeline ingest` write): their `event`, under their
//!   original partition key, so the records of one key keep their order;
//! - quarantine lines: their original bytes (`data_base64`) under their partition key, for a
//!   backfill after the contract or a producer was fixed.

use crate::ingest::{QuarantineLine, RawLine};
use base64::Engine;

/// One record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    /// The partition key the record had, when the line says; otherwise the sender picks one.
    pub partition_key: Option<String>,
    pub data: Vec<u8>,
    pub origin: Origin,
    /// The line's number in its file, from 1.
    pub line: usize,
}

/// What kind of line a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    Event,
    RawLine,
    QuarantineLine,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Event => "event",
            Origin::RawLine => "raw line",
            Origin::QuarantineLine => "quarantine line",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("the file starts like gzip but does not decompress: {0}")]
    Gzip(std::io::Error),
    #[error(
        "line {line}: a quarantine line whose `data_base64` is not base64 ({source}); fix or remove the line"
    )]
    QuarantineData {
        line: usize,
        source: base64::DecodeError,
    },
}

/// The records of one file's bytes, in order; blank lines are skipped.
pub fn resend_records(body: &[u8]) -> Result<Vec<Resend>, BackfillError> {
    let text = if body.starts_with(&[0x1f, 0x8b]) {
        std::borrow::Cow::Owned(crate::ingest::gunzip(body).map_err(BackfillError::Gzip)?)
    } else {
        std::borrow::Cow::Borrowed(body)
    };
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(resend(line, i + 1)?);
    }
    Ok(out)
}

fn resend(line: &[u8], number: usize) -> Result<Resend, BackfillError> {
    // One kind after the other: a raw line's `event` is borrowed as written (an untagged enum
    // would buffer it, and a raw JSON value cannot be read from a buffer).
    if let Ok(raw) = serde_json::from_slice::<RawLine<'_>>(line) {
        return Ok(Resend {
            partition_key: Some(raw.partition_key.into_owned()),
            data: raw.event.get().as_bytes().to_vec(),
            origin: Origin::RawLine,
            line: number,
        });
    }
    if let Ok(q) = serde_json::from_slice::<QuarantineLine>(line) {
        return Ok(Resend {
            data: base64::engine::general_purpose::STANDARD
                .decode(q.data_base64.as_bytes())
                .map_err(|source| BackfillError::QuarantineData {
                    line: number,
                    source,
                })?,
            partition_key: Some(q.partition_key),
            origin: Origin::QuarantineLine,
            line: number,
        });
    }
    Ok(Resend {
        partition_key: None,
        data: line.to_vec(),
        origin: Origin::Event,
        line: number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{KinesisRecord, gzip, ingest};

    fn record<'a>(seq: &'a str, pk: &'a str, data: &'a [u8]) -> KinesisRecord<'a> {
        KinesisRecord {
            shard_id: "shardId-000000000000",
            sequence_number: seq,
            partition_key: pk,
            data,
            arrival: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn what_the_stream_processor_wrote_resends_as_the_events_it_was_sent() {
        let good = br#"{"event_id":"e-1","event_type":"click","occurred_at":"2025-11-24T16:00:00Z","source":"web","user_id":"u-1","attributes":{}}"#;
        let bad = b"not json at all";
        let batch = [record("1", "pk-good", good), record("2", "pk-bad", bad)];
        let out = ingest(&batch);
        let raw = crate::ingest::gunzip(&out[0].raw.body).unwrap();
        let quarantine = out[0].quarantine.as_ref().unwrap();

        let resent = resend_records(&out[0].raw.body).unwrap();
        assert_eq!(resent.len(), 1);
        assert_eq!(resent[0].origin, Origin::RawLine);
        assert_eq!(resent[0].partition_key.as_deref(), Some("pk-good"));
        let sent: serde_json::Value = serde_json::from_slice(&resent[0].data).unwrap();
        let original: serde_json::Value = serde_json::from_slice(good).unwrap();
        assert_eq!(sent, original);
        // Plain or gzip, the same records.
        assert_eq!(resend_records(&raw).unwrap(), resent);

        let resent = resend_records(&quarantine.body).unwrap();
        assert_eq!(resent.len(), 1);
        assert_eq!(resent[0].origin, Origin::QuarantineLine);
        assert_eq!(resent[0].data, bad);
        assert_eq!(resent[0].partition_key.as_deref(), Some("pk-bad"));
    }

    #[test]
    fn event_lines_and_anything_else_are_sent_as_they_are() {
        let text = b"{\"event_id\":\"a\"}\r\n\n   \nnot json\n{\"shard\":\"s\"}\n";
        let resent = resend_records(text).unwrap();
        let lines: Vec<(&[u8], usize, Origin)> = resent
            .iter()
            .map(|r| (r.data.as_slice(), r.line, r.origin))
            .collect();
        assert_eq!(
            lines,
            vec![
                (&b"{\"event_id\":\"a\"}"[..], 1, Origin::Event),
                (&b"not json"[..], 4, Origin::Event),
                (&b"{\"shard\":\"s\"}"[..], 5, Origin::Event),
            ]
        );
        assert!(resent.iter().all(|r| r.partition_key.is_none()));
        assert_eq!(resend_records(&gzip(text)).unwrap(), resent);
    }

    #[test]
    fn broken_gzip_and_bad_quarantine_data_are_errors_that_say_where() {
        let err = resend_records(&[0x1f, 0x8b, 0, 1, 2]).unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");
        let line = br#"{"shard":"s","seq":"1","subseq":0,"arrival":"t","partition_key":"k","reason":"invalid_json","detail":"d","data_base64":"%%%"}"#;
        let mut text = b"{}\n".to_vec();
        text.extend_from_slice(line);
        let err = resend_records(&text).unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
    }
}
