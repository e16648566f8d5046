//! KPL aggregates produced by the official aggregators (Python and Node `aws-kinesis-agg`), see
//! `tools/fixtures/`. Each `.bin` has a `.json` sidecar with the expected outcome.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use base64::Engine;
use pipeline_core::Reason;
use pipeline_core::kpl::{self, SubRecord};
use serde_json::Value;

#[test]
fn official_aggregates_decode_as_their_sidecars_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kpl");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for bin in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
    {
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(bin).unwrap();
        let sidecar: Value =
            serde_json::from_str(&std::fs::read_to_string(bin.with_extension("json")).unwrap())
                .unwrap();
        let result = kpl::deaggregate(&bytes);
        match sidecar["expect"].as_str().unwrap() {
            "ok" => {
                let want: Vec<SubRecord> = sidecar["sub_records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| SubRecord {
                        partition_key: s["partition_key"].as_str().unwrap().to_owned(),
                        explicit_hash_key: s["explicit_hash_key"].as_str().map(str::to_owned),
                        data: base64::engine::general_purpose::STANDARD
                            .decode(s["data_base64"].as_str().unwrap())
                            .unwrap(),
                    })
                    .collect();
                let got = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got, want, "{name}");
                // Our encoder writes the same bytes as the official aggregators.
                assert_eq!(
                    kpl::aggregate(&want),
                    bytes,
                    "{name}: re-encoding differs from the official aggregator"
                );
            }
            code => {
                let reason: Reason =
                    serde_json::from_value(Value::String(code.to_owned())).unwrap();
                assert!(kpl::is_aggregated(&bytes), "{name}");
                assert_eq!(result.map_err(|e| e.reason), Err(reason), "{name}");
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 8,
        "expected the committed fixtures, found {checked}"
    );
}
