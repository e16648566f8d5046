//! Properties of the core: decoding never panics, encodings round-trip, outputs are deterministic,
//! enrichment is idempotent, and every input unit is accounted exactly once.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use pipeline_core::event::{self, fmt_time};
use pipeline_core::ingest::{KinesisRecord, QuarantineLine, RawLine, gunzip, ingest};
use pipeline_core::keys::{decode_s3_key, encode_s3_key, seq_cmp};
use pipeline_core::kpl::{self, SubRecord};
use pipeline_core::parquet_io::{read_rows, write_rows};
use pipeline_core::transform::{Pseudonymizer, encode, transform};
use proptest::prelude::*;

fn arrival() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

/// A record that may be valid, invalid in one of many ways, or a KPL aggregate of such records.
#[derive(Debug, Clone)]
enum Input {
    Valid {
        id: String,
        ty: String,
        offset_s: i64,
        user: Option<String>,
        attrs: Option<String>,
    },
    Bytes(Vec<u8>),
    Aggregate(Vec<Input>),
    CorruptAggregate(Vec<Input>),
}

fn valid() -> impl Strategy<Value = Input> {
    (
        "[a-zA-Z0-9_-]{1,20}",
        prop::sample::select(vec![
            "page_view",
            "Click",
            "add_to_cart",
            "purchase",
            "signup",
        ]),
        -600i64..600,
        prop::option::of("[a-z0-9@.]{0,12}"),
        prop::option::of(prop::sample::select(vec![
            r#"{"email":"a@b.c","n":1}"#,
            r#"{"deep":{"ip":"10.0.0.1"},"list":[{"phone":"555"}]}"#,
            r#"{"path":"/","ref":null}"#,
        ])),
    )
        .prop_map(|(id, ty, offset_s, user, attrs)| Input::Valid {
            id,
            ty: ty.to_owned(),
            offset_s,
            user,
            attrs: attrs.map(str::to_owned),
        })
}

fn input() -> impl Strategy<Value = Input> {
    let leaf = prop_oneof![
        6 => valid(),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Input::Bytes),
        1 => prop::sample::select(vec![
            "[]", "{}", "{\"event_id\":1}", "null", "{\"event_id\":\"x\",\"event_type\":\"A-B\",\"occurred_at\":\"2026-11-25T10:00:00Z\",\"source\":\"s\"}",
            "{\"event_id\":\"x\",\"event_type\":\"a\",\"occurred_at\":\"2020-01-01T00:00:00Z\",\"source\":\"s\"}",
        ]).prop_map(|s| Input::Bytes(s.as_bytes().to_vec())),
    ];
    prop_oneof![
        8 => leaf.clone(),
        1 => prop::collection::vec(leaf.clone(), 1..5).prop_map(Input::Aggregate),
        1 => prop::collection::vec(leaf, 1..3).prop_map(Input::CorruptAggregate),
    ]
}

fn bytes_of(input: &Input) -> Vec<u8> {
    match input {
        Input::Valid {
            id,
            ty,
            offset_s,
            user,
            attrs,
        } => {
            let mut s = format!(
                r#"{{"event_id":"{id}","event_type":"{ty}","occurred_at":"{}","source":"web""#,
                fmt_time(arrival() + Duration::seconds(*offset_s))
            );
            if let Some(u) = user {
                s.push_str(&format!(r#","user_id":"{u}""#));
            }
            if let Some(a) = attrs {
                s.push_str(&format!(r#","attributes":{a}"#));
            }
            s.push('}');
            s.into_bytes()
        }
        Input::Bytes(b) => b.clone(),
        Input::Aggregate(items) => kpl::aggregate(&subs(items)),
        Input::CorruptAggregate(items) => {
            let mut b = kpl::aggregate(&subs(items));
            let n = b.len();
            b[n - 1] ^= 0x55;
            b
        }
    }
}

fn subs(items: &[Input]) -> Vec<SubRecord> {
    items
        .iter()
        .enumerate()
        .map(|(i, it)| SubRecord {
            partition_key: format!("pk-{}", i % 2),
            explicit_hash_key: None,
            data: bytes_of(it),
        })
        .collect()
}

/// (valid units, invalid units) an input must produce.
fn expected_units(input: &Input) -> (u64, u64) {
    match input {
        Input::Aggregate(items) => items
            .iter()
            .map(expected_leaf)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        Input::CorruptAggregate(_) => (0, 1),
        leaf => expected_leaf(leaf),
    }
}

fn expected_leaf(input: &Input) -> (u64, u64) {
    let data = bytes_of(input);
    // Nested aggregates are not de-aggregated twice: a sub-record starting with the magic is invalid.
    if event::validate(&data, arrival()).is_ok() && !kpl::is_aggregated(&data) {
        (1, 0)
    } else {
        (0, 1)
    }
}

fn to_records<'a>(datas: &'a [Vec<u8>], seqs: &'a [String]) -> Vec<KinesisRecord<'a>> {
    datas
        .iter()
        .zip(seqs)
        .map(|(d, s)| KinesisRecord {
            shard_id: "shardId-000000000001",
            sequence_number: s,
            arrival: arrival(),
            partition_key: "p",
            data: d,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn validation_never_panics_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = event::validate(&data, arrival());
        let _ = kpl::deaggregate(&data);
        let mut magic = kpl::MAGIC.to_vec();
        magic.extend_from_slice(&data);
        if let Ok(subs) = kpl::deaggregate(&magic) {
            // Whatever decodes re-encodes to something that decodes the same way.
            prop_assert_eq!(kpl::deaggregate(&kpl::aggregate(&subs)).unwrap(), subs);
        }
    }

    #[test]
    fn validation_never_panics_on_arbitrary_json(text in "\\{(\"[a-z_]{1,12}\":(\"[^\"\\\\]{0,10}\"|[0-9]{1,3}|null|true|\\[\\]|\\{\\}),?){0,8}\\}") {
        let _ = event::validate(text.as_bytes(), arrival());
    }

    #[test]
    fn s3_notification_keys_round_trip(key in "\\PC{0,40}") {
        let encoded = encode_s3_key(&key);
        prop_assert!(!encoded.contains(' ') && !encoded.contains('='), "{}", encoded);
        prop_assert_eq!(decode_s3_key(&encoded).unwrap(), key);
    }

    #[test]
    fn kpl_round_trips(records in prop::collection::vec(
        ("[a-z0-9]{1,8}", prop::option::of("[0-9]{1,38}"), prop::collection::vec(any::<u8>(), 0..100))
            .prop_map(|(partition_key, explicit_hash_key, data)| SubRecord { partition_key, explicit_hash_key, data }),
        1..20,
    )) {
        let bytes = kpl::aggregate(&records);
        prop_assert!(kpl::is_aggregated(&bytes));
        prop_assert_eq!(kpl::deaggregate(&bytes).unwrap(), records);
    }

    #[test]
    fn every_unit_is_accounted_exactly_once(inputs in prop::collection::vec(input(), 1..40)) {
        let datas: Vec<Vec<u8>> = inputs.iter().map(bytes_of).collect();
        let seqs: Vec<String> = (0..datas.len()).map(|i| format!("{}", 1_000_000 + i)).collect();
        let out = ingest(&to_records(&datas, &seqs));
        prop_assert_eq!(out.len(), 1);
        let shard = &out[0];
        let (want_valid, want_invalid) = inputs.iter().map(expected_units).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        prop_assert_eq!(shard.valid, want_valid);
        prop_assert_eq!(shard.quarantined_total(), want_invalid);
        prop_assert_eq!(shard.units, want_valid + want_invalid);

        // The objects hold exactly those units, each (seq, subseq) once.
        let mut coords = BTreeMap::new();
        {
            let raw = &shard.raw;
            let text = String::from_utf8(gunzip(&raw.body).unwrap()).unwrap();
            for line in text.lines() {
                let l: RawLine<'_> = serde_json::from_str(line).unwrap();
                prop_assert!(event::validate(l.event.get().as_bytes(), arrival()).is_ok());
                *coords.entry((l.seq.to_string(), l.subseq)).or_insert(0) += 1;
            }
            prop_assert_eq!(raw.lines, want_valid);
        }
        if let Some(q) = &shard.quarantine {
            let text = String::from_utf8(gunzip(&q.body).unwrap()).unwrap();
            for line in text.lines() {
                let l: QuarantineLine = serde_json::from_str(line).unwrap();
                *coords.entry((l.seq, l.subseq)).or_insert(0) += 1;
            }
        }
        prop_assert_eq!(coords.len() as u64, want_valid + want_invalid);
        prop_assert!(coords.values().all(|&n| n == 1));
    }

    /// A backfill of what the stream processor wrote sends every unit again, once: the raw
    /// object's events and the quarantine object's original bytes, as many as the batch had.
    #[test]
    fn a_backfill_of_the_written_objects_resends_every_unit_once(inputs in prop::collection::vec(input(), 1..40)) {
        let datas: Vec<Vec<u8>> = inputs.iter().map(bytes_of).collect();
        let seqs: Vec<String> = (0..datas.len()).map(|i| format!("{}", 7_000 + i)).collect();
        let out = ingest(&to_records(&datas, &seqs));
        let shard = &out[0];
        let raw = pipeline_core::backfill::resend_records(&shard.raw.body).unwrap();
        prop_assert_eq!(raw.len() as u64, shard.valid);
        for r in &raw {
            prop_assert_eq!(r.origin, pipeline_core::backfill::Origin::RawLine);
            // Sent again, each is the valid event it was.
            prop_assert!(event::validate(&r.data, arrival()).is_ok());
        }
        let quarantined = match &shard.quarantine {
            Some(q) => pipeline_core::backfill::resend_records(&q.body).unwrap(),
            None => Vec::new(),
        };
        prop_assert_eq!(quarantined.len() as u64, shard.quarantined_total());
        prop_assert!(quarantined.iter().all(|r| r.origin == pipeline_core::backfill::Origin::QuarantineLine));
        // A rejected record that was not an aggregate comes back byte for byte.
        for d in datas.iter().filter(|d| !kpl::is_aggregated(d) && event::validate(d, arrival()).is_err()) {
            prop_assert!(quarantined.iter().any(|r| r.data == *d));
        }
    }

    #[test]
    fn ingest_and_transform_are_deterministic_and_transform_is_idempotent(inputs in prop::collection::vec(input(), 1..30)) {
        let datas: Vec<Vec<u8>> = inputs.iter().map(bytes_of).collect();
        let seqs: Vec<String> = (0..datas.len()).map(|i| format!("{}", 5_000 + i)).collect();
        let a = ingest(&to_records(&datas, &seqs));
        let b = ingest(&to_records(&datas, &seqs));
        prop_assert_eq!(&a, &b);
        {
            let raw = &a[0].raw;
            let pii = Pseudonymizer::new(b"key").unwrap();
            let t1 = transform(&raw.key, &raw.body, &pii).unwrap();
            let t2 = transform(&raw.key, &raw.body, &pii).unwrap();
            prop_assert_eq!(&t1, &t2);
            let e1 = encode(&t1).unwrap();
            prop_assert_eq!(&e1, &encode(&t2).unwrap());
            // Every valid unit becomes a row, minus in-object duplicates of event_id.
            prop_assert_eq!(t1.rows + t1.duplicates, a[0].valid);
            // The lines alone describe the batch the stream processor records (what the
            // transformer registers an object by): within it, and all of it when nothing was
            // rejected.
            prop_assert_eq!(t1.uncompressed_bytes, raw.uncompressed_bytes);
            match &t1.span {
                None => prop_assert_eq!(a[0].valid, 0),
                Some(span) => {
                    let batch = &a[0];
                    prop_assert!(seq_cmp(&span.first_sequence_number, &batch.first_sequence_number).is_ge());
                    prop_assert!(seq_cmp(&span.last_sequence_number, &batch.last_sequence_number).is_le());
                    prop_assert!(seq_cmp(&span.first_sequence_number, &span.last_sequence_number).is_le());
                    prop_assert!(batch.first_arrival <= span.first_arrival && span.last_arrival <= batch.last_arrival);
                    if batch.valid == batch.units {
                        prop_assert_eq!(&span.first_sequence_number, &batch.first_sequence_number);
                        prop_assert_eq!(&span.last_sequence_number, &batch.last_sequence_number);
                    }
                }
            }
            // Parquet round trip.
            let mut total = 0;
            for ((key, bytes), object) in e1.iter().zip(&t1.objects) {
                prop_assert_eq!(key, &object.key);
                let rows = read_rows(bytes.clone()).unwrap();
                prop_assert_eq!(&rows, &object.rows);
                total += rows.len() as u64;
                // PII is never stored in the clear.
                for r in &rows {
                    prop_assert!(r.user_id_hash.as_ref().is_none_or(|h| h.len() == 64));
                    if let Some(attrs) = &r.attributes_json {
                        prop_assert!(!attrs.contains("a@b.c") && !attrs.contains("10.0.0.1") && !attrs.contains("\"555\""));
                    }
                }
            }
            prop_assert_eq!(total, t1.rows);
        }
    }

    #[test]
    fn parquet_round_trips_arbitrary_rows(rows in prop::collection::vec(
        ("\\PC{1,20}", "[a-z_.]{1,10}", any::<i64>(), prop::option::of("\\PC{0,10}"), prop::option::of("\\PC{0,30}"), any::<i32>(), any::<i64>()),
        1..40,
    )) {
        let rows: Vec<_> = rows
            .into_iter()
            .map(|(id, ty, t, session, attrs, n, lag)| pipeline_core::parquet_io::Row {
                event_id: id,
                event_type: ty.into(),
                occurred_at_us: t,
                source: "s".into(),
                user_id_hash: None,
                session_id: session,
                schema_version: 1,
                attributes_json: attrs,
                extra_json: None,
                event_date: n,
                event_hour: 3,
                arrival_time_us: t,
                ingest_lag_ms: lag,
                kinesis_shard: "s".into(),
                kinesis_seq: "1".into(),
                kinesis_subseq: 0,
                raw_key: "raw/k".into(),
            })
            .collect();
        let bytes = write_rows(&rows).unwrap();
        prop_assert_eq!(read_rows(bytes).unwrap(), rows);
    }
}
