//! The input event contract (v1): parsing and validation in one pass over the bytes.
//!
//! Parsing borrows from the input wherever it can: a valid event costs one scan and a handful of
//! small allocations. Every problem is a [`Rejection`] value, never a panic.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::reason::{Reason, Rejection};

/// Limits of contract v1.
pub const EVENT_ID_MAX_CHARS: usize = 128;
pub const EVENT_TYPE_MAX_CHARS: usize = 64;
pub const SOURCE_MAX_CHARS: usize = 64;
pub const USER_ID_MAX_CHARS: usize = 256;
pub const SESSION_ID_MAX_CHARS: usize = 256;
pub const ATTRIBUTES_MAX_BYTES: usize = 64 * 1024;
pub const ATTRIBUTES_MAX_DEPTH: usize = 16;
pub const SUPPORTED_SCHEMA_VERSION: i64 = 1;
/// `occurred_at` may be at most this long before the record's arrival…
pub const MAX_AGE: Duration = Duration::days(7);
/// …and at most this long after it (producer clock skew).
pub const MAX_SKEW: Duration = Duration::minutes(15);

/// A valid event, normalised: lower-case `event_type`, `occurred_at` in UTC with microseconds.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
    pub occurred_at: DateTime<Utc>,
    pub source: Cow<'a, str>,
    pub user_id: Option<Cow<'a, str>>,
    pub session_id: Option<Cow<'a, str>>,
    pub schema_version: i64,
    /// The `attributes` object as it appeared in the input.
    pub attributes: Option<&'a RawValue>,
    /// Every other top-level field, in input order.
    pub extra: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// Parses and validates one event. `arrival` is when Kinesis accepted the record.
pub fn validate(data: &[u8], arrival: DateTime<Utc>) -> Result<Event<'_>, Rejection> {
    let event = parse(data)?;
    check_time_window(event.occurred_at, arrival)?;
    Ok(event)
}

/// Parses and validates one event without the arrival-time window (used on already accepted data).
pub fn parse(data: &[u8]) -> Result<Event<'_>, Rejection> {
    let text = std::str::from_utf8(data).map_err(|e| {
        Rejection::new(
            Reason::NotUtf8,
            format!(
                "data is not valid utf-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let fields = parse_fields(text)?;
    fields.into_event()
}

/// Checks the `occurred_at` window against the arrival time.
pub fn check_time_window(
    occurred_at: DateTime<Utc>,
    arrival: DateTime<Utc>,
) -> Result<(), Rejection> {
    if occurred_at < arrival - MAX_AGE {
        return Err(Rejection::new(
            Reason::OccurredAtOutOfRange,
            format!(
                "occurred_at {} is more than 7 days before the arrival time {}",
                fmt_time(occurred_at),
                fmt_time(arrival)
            ),
        ));
    }
    if occurred_at > arrival + MAX_SKEW {
        return Err(Rejection::new(
            Reason::OccurredAtOutOfRange,
            format!(
                "occurred_at {} is more than 15 minutes after the arrival time {}",
                fmt_time(occurred_at),
                fmt_time(arrival)
            ),
        ));
    }
    Ok(())
}

/// RFC 3339, UTC, microseconds: the one timestamp format this pipeline writes.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The top-level fields, captured without interpretation.
#[derive(Default)]
struct Fields<'a> {
    event_id: Option<&'a RawValue>,
    event_type: Option<&'a RawValue>,
    occurred_at: Option<&'a RawValue>,
    source: Option<&'a RawValue>,
    user_id: Option<&'a RawValue>,
    session_id: Option<&'a RawValue>,
    schema_version: Option<&'a RawValue>,
    attributes: Option<&'a RawValue>,
    extra: Vec<(Cow<'a, str>, &'a RawValue)>,
    duplicate: Option<Cow<'a, str>>,
}

fn parse_fields(text: &str) -> Result<Fields<'_>, Rejection> {
    let first = text.trim_start().as_bytes().first().copied();
    if first != Some(b'{') {
        // Tell "valid JSON, but not an object" from "not JSON at all".
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Rejection::new(
                Reason::NotAnObject,
                format!(
                    "the event must be a JSON object, found {}",
                    json_kind_of(text.trim_start())
                ),
            ),
            Err(e) => json_error(&e),
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de
        .deserialize_map(FieldsVisitor)
        .map_err(|e| json_error(&e))?;
    de.end().map_err(|e| json_error(&e))?;
    Ok(fields)
}

fn json_error(e: &serde_json::Error) -> Rejection {
    let msg = e.to_string();
    if msg.contains("recursion limit exceeded") {
        Rejection::new(
            Reason::TooDeep,
            format!(
                "nesting is deeper than the parser allows ({msg}); attributes may nest at most {ATTRIBUTES_MAX_DEPTH} levels"
            ),
        )
    } else {
        Rejection::new(Reason::InvalidJson, format!("not valid JSON: {msg}"))
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<BorrowedKey<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            let slot = match key.0.as_ref() {
                "event_id" => &mut fields.event_id,
                "event_type" => &mut fields.event_type,
                "occurred_at" => &mut fields.occurred_at,
                "source" => &mut fields.source,
                "user_id" => &mut fields.user_id,
                "session_id" => &mut fields.session_id,
                "schema_version" => &mut fields.schema_version,
                "attributes" => &mut fields.attributes,
                _ => {
                    if fields.duplicate.is_none() && fields.extra.iter().any(|(k, _)| *k == key.0) {
                        fields.duplicate = Some(key.0.clone());
                    }
                    fields.extra.push((key.0, value));
                    continue;
                }
            };
            if slot.is_some() && fields.duplicate.is_none() {
                fields.duplicate = Some(key.0.clone());
            }
            *slot = Some(value);
        }
        Ok(fields)
    }
}

/// A JSON object key, borrowed when it has no escapes.
struct BorrowedKey<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for BorrowedKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BorrowedKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'a> Fields<'a> {
    fn into_event(self) -> Result<Event<'a>, Rejection> {
        if let Some(key) = self.duplicate {
            return Err(Rejection::new(
                Reason::InvalidValue,
                format!("field `{key}` appears more than once"),
            ));
        }
        let event_id = required_string("event_id", self.event_id)?;
        check_chars("event_id", &event_id, 1, EVENT_ID_MAX_CHARS)?;

        let event_type = required_string("event_type", self.event_type)?;
        let event_type =
            if event_type.bytes().any(|b| b.is_ascii_uppercase()) || !event_type.is_ascii() {
                Cow::Owned(event_type.to_lowercase())
            } else {
                event_type
            };
        if !is_valid_event_type(&event_type) {
            return Err(Rejection::new(
                Reason::InvalidValue,
                format!(
                    "field `event_type` must match ^[a-z][a-z0-9_.]{{0,63}}$ after lower-casing, got {:?}",
                    truncate(&event_type, 80)
                ),
            ));
        }

        let occurred_at_text = required_string("occurred_at", self.occurred_at)?;
        let occurred_at = DateTime::parse_from_rfc3339(&occurred_at_text)
            .map_err(|e| {
                Rejection::new(
                    Reason::InvalidValue,
                    format!(
                        "field `occurred_at` must be an RFC 3339 timestamp with an offset, got {:?} ({e})",
                        truncate(&occurred_at_text, 80)
                    ),
                )
            })?
            .with_timezone(&Utc)
            .trunc_subsecs(6);

        let source = required_string("source", self.source)?;
        check_chars("source", &source, 1, SOURCE_MAX_CHARS)?;

        let user_id = optional_string("user_id", self.user_id)?;
        if let Some(u) = &user_id {
            check_chars("user_id", u, 0, USER_ID_MAX_CHARS)?;
        }
        let session_id = optional_string("session_id", self.session_id)?;
        if let Some(s) = &session_id {
            check_chars("session_id", s, 0, SESSION_ID_MAX_CHARS)?;
        }

        let schema_version = match self.schema_version.filter(|v| kind(v) != Kind::Null) {
            None => SUPPORTED_SCHEMA_VERSION,
            Some(raw) => {
                let v: i64 = serde_json::from_str(raw.get()).map_err(|_| {
                    Rejection::new(
                        Reason::WrongType,
                        format!(
                            "field `schema_version` must be an integer, found {}",
                            describe(raw)
                        ),
                    )
                })?;
                if v != SUPPORTED_SCHEMA_VERSION {
                    return Err(Rejection::new(
                        Reason::UnsupportedSchemaVersion,
                        format!(
                            "schema_version {v} is not supported: only {SUPPORTED_SCHEMA_VERSION} is accepted"
                        ),
                    ));
                }
                v
            }
        };

        let attributes = match self.attributes.filter(|v| kind(v) != Kind::Null) {
            None => None,
            Some(raw) => {
                if kind(raw) != Kind::Object {
                    return Err(Rejection::new(
                        Reason::WrongType,
                        format!(
                            "field `attributes` must be an object, found {}",
                            describe(raw)
                        ),
                    ));
                }
                let size = raw.get().len();
                if size > ATTRIBUTES_MAX_BYTES {
                    return Err(Rejection::new(
                        Reason::TooLarge,
                        format!(
                            "field `attributes` is {size} bytes, the limit is {ATTRIBUTES_MAX_BYTES}"
                        ),
                    ));
                }
                let depth = json_depth(raw.get());
                if depth > ATTRIBUTES_MAX_DEPTH {
                    return Err(Rejection::new(
                        Reason::TooDeep,
                        format!(
                            "field `attributes` nests {depth} levels deep, the limit is {ATTRIBUTES_MAX_DEPTH}"
                        ),
                    ));
                }
                Some(raw)
            }
        };

        Ok(Event {
            event_id,
            event_type,
            occurred_at,
            source,
            user_id,
            session_id,
            schema_version,
            attributes,
            extra: self.extra,
        })
    }
}

fn required_string<'a>(name: &str, raw: Option<&'a RawValue>) -> Result<Cow<'a, str>, Rejection> {
    match raw {
        None => Err(Rejection::new(
            Reason::MissingField,
            format!("required field `{name}` is missing"),
        )),
        Some(raw) => string_value(name, raw),
    }
}

fn optional_string<'a>(
    name: &str,
    raw: Option<&'a RawValue>,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    match raw {
        Some(raw) if kind(raw) != Kind::Null => string_value(name, raw).map(Some),
        _ => Ok(None),
    }
}

fn string_value<'a>(name: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, Rejection> {
    if kind(raw) != Kind::String {
        return Err(Rejection::new(
            Reason::WrongType,
            format!("field `{name}` must be a string, found {}", describe(raw)),
        ));
    }
    let text = raw.get();
    let inner = &text[1..text.len() - 1];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text)
        .map(Cow::Owned)
        .map_err(|e| Rejection::new(Reason::InvalidJson, format!("field `{name}`: {e}")))
}

fn check_chars(name: &str, value: &str, min: usize, max: usize) -> Result<(), Rejection> {
    // Byte length bounds the char count from above: skip counting for short ASCII-sized values.
    let n = if value.len() <= max {
        value.chars().count()
    } else {
        value.chars().take(max + 1).count()
    };
    if n < min {
        return Err(Rejection::new(
            Reason::InvalidValue,
            format!("field `{name}` must not be empty"),
        ));
    }
    if n > max {
        return Err(Rejection::new(
            Reason::InvalidValue,
            format!("field `{name}` is longer than {max} characters"),
        ));
    }
    Ok(())
}

/// `^[a-z][a-z0-9_.]{0,63}$`
pub fn is_valid_event_type(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= EVENT_TYPE_MAX_CHARS
        && b[0].is_ascii_lowercase()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn kind(raw: &RawValue) -> Kind {
    json_kind(raw.get())
}

fn json_kind(text: &str) -> Kind {
    match text.as_bytes().first() {
        Some(b'"') => Kind::String,
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'n') => Kind::Null,
        _ => Kind::Number,
    }
}

fn json_kind_of(text: &str) -> &'static str {
    match json_kind(text) {
        Kind::Null => "null",
        Kind::Bool => "a boolean",
        Kind::Number => "a number",
        Kind::String => "a string",
        Kind::Array => "an array",
        Kind::Object => "an object",
    }
}

fn describe(raw: &RawValue) -> &'static str {
    json_kind_of(raw.get())
}

/// Nesting depth of a JSON text that is known to be valid: `{}` is 1, `{"a":[1]}` is 2.
pub fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn truncate(s: &str, max_chars: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max_chars) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn arrival() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
    }

    fn check(input: &str, want: Result<(), (Reason, &str)>) {
        let got = validate(input.as_bytes(), arrival());
        match (got, want) {
            (Ok(_), Ok(())) => {}
            (Err(r), Err((reason, detail))) => {
                assert_eq!(r.reason, reason, "input {input}: {}", r.detail);
                assert!(
                    r.detail.contains(detail),
                    "input {input}: detail {:?} lacks {detail:?}",
                    r.detail
                );
            }
            (got, want) => panic!("input {input}: got {got:?}, want {want:?}"),
        }
    }

    const BASE: &str = r#""event_id":"e-1","event_type":"page_view","occurred_at":"2026-11-25T09:59:00Z","source":"web""#;

    fn with(extra: &str) -> String {
        if extra.is_empty() {
            format!("{{{BASE}}}")
        } else {
            format!("{{{BASE},{extra}}}")
        }
    }

    #[test]
    fn accepts_minimal_and_full_events() {
        check(&with(""), Ok(()));
        check(
            &with(
                r#""user_id":"u-1","session_id":"s","schema_version":1,"attributes":{"a":{"b":[1,2]}},"campaign":"x""#,
            ),
            Ok(()),
        );
        check(
            &with(r#""user_id":null,"attributes":null,"schema_version":null"#),
            Ok(()),
        );
    }

    #[test]
    fn normalises_type_and_time() {
        let input = r#"{"event_id":"e","event_type":"Page_View","occurred_at":"2026-11-25T11:59:00.1234567+02:00","source":"s"}"#;
        let e = validate(input.as_bytes(), arrival()).unwrap();
        assert_eq!(e.event_type, "page_view");
        assert_eq!(fmt_time(e.occurred_at), "2026-11-25T09:59:00.123456Z");
        assert_eq!(e.schema_version, 1);
    }

    #[test]
    fn keeps_unknown_fields_as_extra() {
        let input = with(r#""zeta":[1],"alpha":{"x":1}"#);
        let e = parse(input.as_bytes()).unwrap();
        let keys: Vec<_> = e.extra.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
        assert_eq!(keys, [("zeta", "[1]"), ("alpha", r#"{"x":1}"#)]);
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let e = parse(br#"{"event_id":"a\"b\u00e9","event_type":"x","occurred_at":"2026-11-25T09:59:00Z","source":"s\\"}"#).unwrap();
        assert_eq!(e.event_id, "a\"b\u{e9}");
        assert_eq!(e.source, "s\\");
    }

    #[test]
    fn rejection_catalogue() {
        check("\u{1}", Err((Reason::InvalidJson, "not valid JSON")));
        check("", Err((Reason::InvalidJson, "not valid JSON")));
        check(
            "{\"event_id\":",
            Err((Reason::InvalidJson, "not valid JSON")),
        );
        check(
            &format!("{} x", with("")),
            Err((Reason::InvalidJson, "trailing")),
        );
        check("[1,2]", Err((Reason::NotAnObject, "an array")));
        check("  \"str\"", Err((Reason::NotAnObject, "a string")));
        check("42", Err((Reason::NotAnObject, "a number")));
        check(
            r#"{"event_type":"a","occurred_at":"2026-11-25T09:59:00Z","source":"s"}"#,
            Err((Reason::MissingField, "`event_id`")),
        );
        check(
            r#"{"event_id":"e","occurred_at":"2026-11-25T09:59:00Z","source":"s"}"#,
            Err((Reason::MissingField, "`event_type`")),
        );
        check(
            r#"{"event_id":"e","event_type":"a","source":"s"}"#,
            Err((Reason::MissingField, "`occurred_at`")),
        );
        check(
            r#"{"event_id":"e","event_type":"a","occurred_at":"2026-11-25T09:59:00Z"}"#,
            Err((Reason::MissingField, "`source`")),
        );
        check(
            r#"{"event_id":7,"event_type":"a","occurred_at":"2026-11-25T09:59:00Z","source":"s"}"#,
            Err((
                Reason::WrongType,
                "`event_id` must be a string, found a number",
            )),
        );
        check(
            r#"{"event_id":null,"event_type":"a","occurred_at":"2026-11-25T09:59:00Z","source":"s"}"#,
            Err((Reason::WrongType, "found null")),
        );
        check(
            &with(r#""user_id":5"#),
            Err((Reason::WrongType, "`user_id`")),
        );
        check(
            &with(r#""schema_version":"1""#),
            Err((Reason::WrongType, "`schema_version` must be an integer")),
        );
        check(
            &with(r#""schema_version":1.5"#),
            Err((Reason::WrongType, "`schema_version`")),
        );
        check(
            &with(r#""attributes":[1]"#),
            Err((
                Reason::WrongType,
                "`attributes` must be an object, found an array",
            )),
        );
        check(
            r#"{"event_id":"","event_type":"a","occurred_at":"2026-11-25T09:59:00Z","source":"s"}"#,
            Err((Reason::InvalidValue, "`event_id` must not be empty")),
        );
        check(
            &format!(
                r#"{{"event_id":"{}","event_type":"a","occurred_at":"2026-11-25T09:59:00Z","source":"s"}}"#,
                "x".repeat(129)
            ),
            Err((Reason::InvalidValue, "longer than 128")),
        );
        check(
            r#"{"event_id":"e","event_type":"9lives","occurred_at":"2026-11-25T09:59:00Z","source":"s"}"#,
            Err((Reason::InvalidValue, "`event_type`")),
        );
        check(
            r#"{"event_id":"e","event_type":"a-b","occurred_at":"2026-11-25T09:59:00Z","source":"s"}"#,
            Err((Reason::InvalidValue, "`event_type`")),
        );
        check(
            r#"{"event_id":"e","event_type":"a","occurred_at":"2026-11-25 09:59:00","source":"s"}"#,
            Err((Reason::InvalidValue, "RFC 3339")),
        );
        check(
            r#"{"event_id":"e","event_type":"a","occurred_at":"2026-11-25T09:59:00","source":"s"}"#,
            Err((Reason::InvalidValue, "RFC 3339")),
        );
        check(
            &format!(
                r#"{{"event_id":"e","event_type":"a","occurred_at":"2026-11-25T09:59:00Z","source":"{}"}}"#,
                "s".repeat(65)
            ),
            Err((Reason::InvalidValue, "`source` is longer than 64")),
        );
        check(
            &with(&format!(r#""session_id":"{}""#, "é".repeat(257))),
            Err((Reason::InvalidValue, "`session_id`")),
        );
        check(
            &with(r#""event_id":"again""#),
            Err((Reason::InvalidValue, "`event_id` appears more than once")),
        );
        check(
            &with(r#""schema_version":2"#),
            Err((Reason::UnsupportedSchemaVersion, "schema_version 2")),
        );
        check(
            &with(&format!(
                r#""attributes":{{"blob":"{}"}}"#,
                "x".repeat(64 * 1024)
            )),
            Err((Reason::TooLarge, "limit is 65536")),
        );
        let deep = format!("{}1{}", r#"{"a":"#.repeat(17), "}".repeat(17));
        check(
            &with(&format!(r#""attributes":{deep}"#)),
            Err((Reason::TooDeep, "17 levels")),
        );
        let very_deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        check(
            &with(&format!(r#""attributes":{{"a":{very_deep}}}"#)),
            Err((Reason::TooDeep, "201 levels")),
        );
        let abyss = format!("{}1{}", "[".repeat(30_000), "]".repeat(30_000));
        let r = validate(
            with(&format!(r#""attributes":{{"a":{abyss}}}"#)).as_bytes(),
            arrival(),
        )
        .unwrap_err();
        assert!(matches!(r.reason, Reason::TooDeep), "{r}");
        // Extra fields are kept as they are, however deep: they are never a reason to reject.
        let deep_extra = with(&format!(r#""other":{abyss}"#));
        assert!(validate(deep_extra.as_bytes(), arrival()).is_ok());
        check(
            r#"{"event_id":"e","event_type":"a","occurred_at":"2026-11-17T09:59:00Z","source":"s"}"#,
            Err((Reason::OccurredAtOutOfRange, "more than 7 days before")),
        );
        check(
            r#"{"event_id":"e","event_type":"a","occurred_at":"2026-11-25T10:15:01Z","source":"s"}"#,
            Err((Reason::OccurredAtOutOfRange, "more than 15 minutes after")),
        );
        let e = validate(b"{\"a\":\xff}", arrival()).unwrap_err();
        assert_eq!(e.reason, Reason::NotUtf8);
    }

    #[test]
    fn depth_limit_is_inclusive() {
        let ok = format!("{}1{}", r#"{"a":"#.repeat(16), "}".repeat(16));
        check(&with(&format!(r#""attributes":{ok}"#)), Ok(()));
        assert_eq!(json_depth(r#"{"a":"{[{["}"#), 1);
        assert_eq!(json_depth(r#"{"a":"\"{","b":[{}]}"#), 3);
    }

    #[test]
    fn window_edges_are_inclusive() {
        check_time_window(arrival() - MAX_AGE, arrival()).unwrap();
        check_time_window(arrival() + MAX_SKEW, arrival()).unwrap();
        assert!(
            check_time_window(arrival() + MAX_SKEW + Duration::microseconds(1), arrival()).is_err()
        );
    }
}
