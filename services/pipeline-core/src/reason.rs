//! Why a record was quarantined: a stable code and a human-readable detail.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A rejection reason. The string forms are part of the data contract: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NotUtf8,
    InvalidJson,
    NotAnObject,
    MissingField,
    WrongType,
    InvalidValue,
    TooLarge,
    TooDeep,
    UnsupportedSchemaVersion,
    KplMalformed,
    KplChecksumMismatch,
    OccurredAtOutOfRange,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::NotUtf8,
        Reason::InvalidJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::WrongType,
        Reason::InvalidValue,
        Reason::TooLarge,
        Reason::TooDeep,
        Reason::UnsupportedSchemaVersion,
        Reason::KplMalformed,
        Reason::KplChecksumMismatch,
        Reason::OccurredAtOutOfRange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotUtf8 => "not_utf8",
            Reason::InvalidJson => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::InvalidValue => "invalid_value",
            Reason::TooLarge => "too_large",
            Reason::TooDeep => "too_deep",
            Reason::UnsupportedSchemaVersion => "unsupported_schema_version",
            Reason::KplMalformed => "kpl_malformed",
            Reason::KplChecksumMismatch => "kpl_checksum_mismatch",
            Reason::OccurredAtOutOfRange => "occurred_at_out_of_range",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that does not satisfy the contract: a reason code and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_match_serde() {
        let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            [
                "not_utf8",
                "invalid_json",
                "not_an_object",
                "missing_field",
                "wrong_type",
                "invalid_value",
                "too_large",
                "too_deep",
                "unsupported_schema_version",
                "kpl_malformed",
                "kpl_checksum_mismatch",
                "occurred_at_out_of_range",
            ]
        );
        for r in Reason::ALL {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
    }
}
