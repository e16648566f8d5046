//! The fast paths against the paths they replace, which stay as the oracles: the event scanner
//! against `serde_json` (same event or same rejection, reason and detail), and the transformer's
//! raw-line reader against the `serde_json` reader (same lines, same errors).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use pipeline_core::event;
use proptest::prelude::*;

/// A JSON value as text, with random insignificant whitespace, and sometimes deeper than the fast
/// scanner follows.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        "-?(0|[1-9][0-9]{0,5})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
        "\"([a-zA-Z0-9 é/@.]|\\\\[nt\"\\\\/bfr]|\\\\u00e9|\\\\ud83d\\\\ude00){0,8}\"",
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..5), ws())
                .prop_map(|(v, w)| format!("[{w}{}{w}]", v.join(&format!("{w},{w}")))),
            (prop::collection::vec((key(), inner), 0..5), ws()).prop_map(|(m, w)| {
                let members: Vec<String> =
                    m.iter().map(|(k, v)| format!("{k}{w}:{w}{v}")).collect();
                format!("{{{w}{}{w}}}", members.join(&format!("{w},{w}")))
            }),
        ]
    })
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", " ", "\n", "\t ", "\r\n"])
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "event_id", "event_type", "occurred_at", "source", "user_id", "session_id",
            "schema_version", "attributes", "campaign", "ip", "Email", "x",
        ])
        .prop_map(|k| format!("\"{k}\"")),
        1 => Just("\"em\\u0061il\"".to_owned()),
        1 => Just("\"a\\\"b\"".to_owned()),
    ]
}

/// A value for one of the known fields: mostly well-typed, sometimes not.
fn field_value(field: &'static str) -> BoxedStrategy<String> {
    let typed: BoxedStrategy<String> = match field {
        "event_id" | "source" | "user_id" | "session_id" => {
            "\"([a-zA-Z0-9_-]|\\\\\"|é){0,10}\"".boxed()
        }
        "event_type" => prop::sample::select(vec![
            "\"click\"",
            "\"Page_View\"",
            "\"a-b\"",
            "\"9x\"",
            "\"\"",
            "\"\\u0063lick\"",
        ])
        .prop_map(str::to_owned)
        .boxed(),
        "occurred_at" => prop::sample::select(vec![
            "\"2026-11-25T09:59:00Z\"",
            "\"2026-11-25T11:59:00.1234567+02:00\"",
            "\"2026-11-25 09:59:00\"",
            "\"2020-01-01T00:00:00Z\"",
            "\"2026-11-25T10:15:01Z\"",
        ])
        .prop_map(str::to_owned)
        .boxed(),
        "schema_version" => prop::sample::select(vec!["1", "2", "1.0", "\"1\"", "null", "-1"])
            .prop_map(str::to_owned)
            .boxed(),
        _ => json_value().boxed(),
    };
    prop_oneof![8 => typed, 1 => json_value()].boxed()
}

/// An event-like object: known fields in any order, some missing or repeated, extra fields.
fn event_text() -> impl Strategy<Value = String> {
    let fields = [
        "event_id",
        "event_type",
        "occurred_at",
        "source",
        "user_id",
        "session_id",
        "schema_version",
        "attributes",
    ];
    let members = prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(fields.to_vec())
                .prop_flat_map(|f| field_value(f).prop_map(move |v| (format!("\"{f}\""), v))),
            1 => (key(), json_value()),
        ],
        0..12,
    );
    (members, ws(), ws()).prop_map(|(members, w1, w2)| {
        let members: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{k}{w1}:{w2}{v}"))
            .collect();
        format!("{w1}{{{}}}{w2}", members.join(","))
    })
}

/// A complete, valid event with random extras: the shape the fast path exists for.
fn valid_event() -> impl Strategy<Value = String> {
    (
        "[a-z0-9-]{1,20}",
        prop::option::of(json_value()),
        prop::collection::vec(("[a-z_]{1,8}", json_value()), 0..3),
    )
        .prop_map(|(id, attrs, extra)| {
            let mut s = format!(
                r#"{{"event_id":"{id}","event_type":"click","occurred_at":"2026-11-25T09:59:00Z","source":"web""#
            );
            if let Some(a) = attrs {
                s.push_str(&format!(r#","attributes":{{"a":{a}}}"#));
            }
            for (i, (k, v)) in extra.iter().enumerate() {
                s.push_str(&format!(r#","x{i}_{k}":{v}"#));
            }
            s.push('}');
            s
        })
}

/// Text near JSON: an event with one byte deleted, replaced or inserted.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![event_text(), valid_event()],
        any::<prop::sample::Index>(),
        prop::sample::select(b"{}[]:,\"\\ 0-.eE+tnu\x01\xff".to_vec()),
        0..3u8,
    )
        .prop_map(|(text, at, byte, op)| {
            let mut b = text.into_bytes();
            if b.is_empty() {
                return b;
            }
            let i = at.index(b.len());
            match op {
                0 => {
                    b.remove(i);
                }
                1 => b[i] = byte,
                _ => b.insert(i, byte),
            }
            b
        })
}

/// Token soup: mostly invalid JSON of every kind.
fn tokens() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            " ",
            "\n",
            "\"event_id\"",
            "\"event_type\"",
            "\"occurred_at\"",
            "\"source\"",
            "\"attributes\"",
            "\"x\"",
            "\"a\\nb\"",
            "\"\\u00e9\"",
            "\"\\q\"",
            "\"\u{1}\"",
            "1",
            "-0",
            "01",
            "1.5e3",
            "1.",
            "-",
            "true",
            "nul",
            "\"click\"",
            "\"2026-11-25T09:59:00Z\"",
            "\"web\"",
            "é",
            "\"",
        ]),
        0..30,
    )
    .prop_map(|t| t.concat().into_bytes())
}

fn same_as_reference(data: &[u8]) -> Result<(), TestCaseError> {
    let fast = event::parse(data);
    let reference = event::parse_reference(data);
    prop_assert_eq!(
        &fast,
        &reference,
        "input {:?}",
        String::from_utf8_lossy(data)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn events_parse_as_the_reference_parses_them(text in event_text()) {
        same_as_reference(text.as_bytes())?;
    }

    #[test]
    fn valid_events_take_the_fast_path(text in valid_event()) {
        same_as_reference(text.as_bytes())?;
        prop_assert!(event::parse(text.as_bytes()).is_ok(), "{}", text);
    }

    #[test]
    fn near_json_is_rejected_as_the_reference_rejects_it(data in mutated()) {
        same_as_reference(&data)?;
    }

    #[test]
    fn token_soup_is_rejected_as_the_reference_rejects_it(data in tokens()) {
        same_as_reference(&data)?;
    }
}

#[test]
fn the_fast_path_takes_common_events_and_leaves_the_rest() {
    let common = br#"{"event_id":"e-1","event_type":"Page_View","occurred_at":"2026-11-25T09:59:00.5Z","source":"web","user_id":"u","session_id":null,"schema_version":1,"attributes":{"path":"/a b","n":[1,-2.5e3,true,false,null,{}],"q":"x\"y\\z\/\n"},"campaign":"w"}"#;
    assert!(event::fast_path_handles(common));
    assert_eq!(event::parse(common), event::parse_reference(common));
    assert!(event::fast_path_handles(b" {} "));
    for declined in [
        &br#"{"event_id":"\u0065"}"#[..],
        br#"{"a\"b":1}"#,
        br#"{"a":1,"a":2}"#,
        br#"[1]"#,
        br#"{"a":1} x"#,
        br#"{"a":01}"#,
        b"{\"a\":\"\x01\"}",
    ] {
        assert!(
            !event::fast_path_handles(declined),
            "{}",
            String::from_utf8_lossy(declined)
        );
        assert_eq!(event::parse(declined), event::parse_reference(declined));
    }
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(65), "]".repeat(65));
    assert!(!event::fast_path_handles(deep.as_bytes()));
    let ok = format!("{{\"a\":{}1{}}}", "[".repeat(64), "]".repeat(64));
    assert!(event::fast_path_handles(ok.as_bytes()));
}

mod raw_lines {
    use super::*;
    use chrono::{TimeZone, Utc};
    use pipeline_core::ingest::{KinesisRecord, gzip, ingest};
    use pipeline_core::transform::{Pseudonymizer, transform, transform_reference};

    const KEY: &str = "raw/dt=2026-11-25/hour=10/shard=shardId-000000000000/1000.jsonl.gz";

    /// A raw object's lines: as the stream processor writes them, then sometimes rewritten in
    /// ways only the reference reader accepts (or rejects).
    fn raw_text() -> impl Strategy<Value = String> {
        let line = (
            prop_oneof![4 => valid_event(), 1 => event_text()],
            "[a-z0-9-]{1,8}",
            0..3u64,
            prop::sample::select(vec![
                "", "spaces", "escape", "reorder", "zero", "junk", "arrival", "truncate", "number",
            ]),
        )
            .prop_map(|(event, pk, subseq, change)| {
                let arrival = "2026-11-25T10:00:00.000000Z";
                let line = format!(
                    r#"{{"shard":"shardId-000000000000","seq":"1000","subseq":{subseq},"arrival":"{arrival}","partition_key":"{pk}","event":{event}}}"#
                );
                match change {
                    "spaces" => line.replace("\":", "\" : ").replace(",\"", ", \""),
                    "escape" => line.replace("shardId", "shard\\u0049d"),
                    "reorder" => format!(
                        r#"{{"seq":"1000","shard":"shardId-000000000000","arrival":"{arrival}","subseq":{subseq},"partition_key":"{pk}","event":{event},"x":1}}"#
                    ),
                    "zero" => line.replace(&format!("\"subseq\":{subseq}"), "\"subseq\":01"),
                    "junk" => format!("{line} x"),
                    "arrival" => line.replace(arrival, "2026-11-25 10:00"),
                    "truncate" => line[..line.len() - 1].to_owned(),
                    "number" => line.replace(&format!("\"subseq\":{subseq}"), "\"subseq\":1e2"),
                    _ => line,
                }
            });
        prop::collection::vec(line, 0..8).prop_map(|lines| lines.join("\n"))
    }

    fn pii() -> Pseudonymizer {
        Pseudonymizer::new(b"k").unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn raw_objects_transform_as_the_reference_transforms_them(text in raw_text()) {
            let body = gzip(text.as_bytes());
            let fast = transform(KEY, &body, &pii());
            let reference = transform_reference(KEY, &body, &pii());
            match (&fast, &reference) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert_eq!(format!("{a:?}"), format!("{b:?}")),
            }
        }
    }

    #[test]
    fn ingested_batches_transform_as_the_reference_transforms_them() {
        let arrival = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let events: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    r#"{{"event_id":"e-{}","event_type":"click","occurred_at":"2026-11-25T09:5{}:00Z","source":"web","user_id":"u-{}","attributes":{{"ip":"10.0.0.{i}","email":"a\"b@c"}},"utm":"{i}"}}"#,
                    i % 250,
                    i % 10,
                    i % 7
                )
            })
            .collect();
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
        let fast = transform(&out.raw.key, &out.raw.body, &pii()).unwrap();
        assert_eq!(
            fast,
            transform_reference(&out.raw.key, &out.raw.body, &pii()).unwrap()
        );
        assert_eq!((fast.rows, fast.duplicates), (250, 50));
    }
}
