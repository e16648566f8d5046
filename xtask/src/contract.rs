//! The contract facts the Pulumi program uses, generated from their one definition in
//! `pipeline-core` into `pulumi/src/contract.json`: S3 prefixes, the metadata table's key,
//! attributes, statuses and pending index, the processed files' columns in Glue types, the
//! quarantine reason codes, and the functions' metrics (from `pipeline_aws::emf`). A test keeps
//! the file current (`UPDATE_EXPECT=1 cargo test -p xtask contract` rewrites it).

use pipeline_aws::emf::{self, catalogue};
use pipeline_core::keys;
use pipeline_core::metadata::{self, Status};
use pipeline_core::parquet_io::{COLUMNS, SCHEMA_NAME};
use pipeline_core::reason::Reason;
use serde_json::{Value, json};

/// The generated file, relative to the workspace root.
pub const PATH: &str = "pulumi/src/contract.json";

pub fn render() -> Value {
    json!({
        "generatedBy": "UPDATE_EXPECT=1 cargo test -p xtask contract; do not edit",
        "prefixes": {
            "raw": keys::RAW_PREFIX,
            "quarantine": keys::QUARANTINE_PREFIX,
            "processed": keys::PROCESSED_PREFIX,
        },
        "metadata": {
            "hashKey": metadata::HASH_KEY,
            "statusAttribute": metadata::STATUS_ATTRIBUTE,
            "statuses": Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "ttlAttribute": metadata::TTL_ATTRIBUTE,
            "pendingAttribute": metadata::PENDING_ATTRIBUTE,
            "writtenAtAttribute": metadata::WRITTEN_AT_ATTRIBUTE,
            "pendingIndex": metadata::PENDING_INDEX,
            "pendingIndexProjection": metadata::PENDING_INDEX_PROJECTION,
            "pendingValues": metadata::pending_values(),
        },
        "parquet": {
            "schema": SCHEMA_NAME,
            "columns": COLUMNS.iter().map(|c| json!({
                "name": c.name,
                "type": c.kind.glue_type(),
                "comment": c.comment,
            })).collect::<Vec<_>>(),
        },
        "reasons": Reason::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "metrics": {
            "namespace": emf::NAMESPACE,
            "dimension": emf::DIMENSION,
            "streamProcessor": function_metrics(catalogue::STREAM_PROCESSOR),
            "quarantinedPrefix": catalogue::QUARANTINED_PREFIX,
            "transformer": function_metrics(catalogue::TRANSFORMER),
            "auditor": function_metrics(catalogue::AUDITOR),
        },
    })
}

/// A function's own metrics and what every invocation records.
fn function_metrics(own: &'static [&'static str]) -> Vec<&'static str> {
    own.iter().chain(catalogue::INVOCATION).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_contract_is_current() {
        let path = crate::util::root().join(PATH);
        let text = format!("{:#}\n", render());
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{PATH} is stale: run `UPDATE_EXPECT=1 cargo test -p xtask contract`"
        );
    }

    #[test]
    fn the_operations_guide_describes_every_metric() {
        let text = std::fs::read_to_string(crate::util::root().join("docs/operations.md")).unwrap();
        let table = text
            .split("**Metric specification**")
            .nth(1)
            .and_then(|s| s.split("\n- **").next())
            .unwrap_or_default();
        let missing: Vec<&str> = catalogue::INVOCATION
            .iter()
            .chain(catalogue::STREAM_PROCESSOR)
            .chain(catalogue::TRANSFORMER)
            .chain(catalogue::AUDITOR)
            .filter(|m| !table.contains(&format!("`{m}`")))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "docs/operations.md does not describe {missing:?}"
        );
        assert!(table.contains(&format!("`{}<reason>`", catalogue::QUARANTINED_PREFIX)));
    }

    #[test]
    fn the_data_contract_lists_the_columns_in_file_order() {
        let text =
            std::fs::read_to_string(crate::util::root().join("docs/data-contract.md")).unwrap();
        let section = text
            .split("## Processed zone")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap_or_default();
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let columns: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(documented, columns);
        // The prose before the table names the dictionary-encoded, uncompressed columns.
        let prose = section
            .split("\n\n")
            .find(|p| p.starts_with("Parquet"))
            .unwrap_or_default();
        let uncompressed: Vec<&str> = prose.split('`').skip(1).step_by(2).collect();
        let dictionary: Vec<&str> = COLUMNS
            .iter()
            .filter(|c| c.dictionary)
            .map(|c| c.name)
            .collect();
        assert_eq!(uncompressed, dictionary);
    }
}
