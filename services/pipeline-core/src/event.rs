//! The input event contract (v1): parsing and validation in one pass over the bytes.
//!
//! Parsing borrows from the input wherever it can: a valid event costs one scan and a handful of
//! small allocations. Every problem is a [`Rejection`] value, never a panic.
//!
//! Two scanners find the top-level fields: a strict one-pass scanner for the common shape (no
//! `\u` escapes, no escaped keys, no duplicate keys, nesting up to [`FAST_MAX_DEPTH`]), and
//! `serde_json` for everything else. The fast scanner either captures exactly the fields
//! `serde_json` would, or declines and leaves the text to `serde_json`; both feed the same checks,
//! so the event or the rejection is the same whichever scanner ran (property-tested).

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
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
    pub occurred_at: DateTime<Utc>,
    pub source: Cow<'a, str>,
    pub user_id: Option<Cow<'a, str>>,
    pub session_id: Option<Cow<'a, str>>,
    pub schema_version: i64,
    /// The `attributes` object's JSON text as it appeared in the input.
    pub attributes: Option<&'a str>,
    /// Every other top-level field with its JSON text, in input order.
    pub extra: Vec<(Cow<'a, str>, &'a str)>,
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
    parse_text(text)
}

/// [`parse`] of text already known to be UTF-8 (a line of a raw object): the same rules, without
/// checking the encoding twice.
pub fn parse_text(text: &str) -> Result<Event<'_>, Rejection> {
    let fields = match fast::fields(text) {
        Some(fields) => fields,
        None => parse_fields(text)?,
    };
    fields.into_event()
}

/// [`parse`] with `serde_json` as the only scanner: the reference the fast scanner is tested
/// against.
#[doc(hidden)]
pub fn parse_reference(data: &[u8]) -> Result<Event<'_>, Rejection> {
    let text = std::str::from_utf8(data).map_err(|e| {
        Rejection::new(
            Reason::NotUtf8,
            format!(
                "data is not valid utf-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    parse_fields(text)?.into_event()
}

/// Whether the fast scanner handles this text by itself (tests and benchmarks).
#[doc(hidden)]
pub fn fast_path_handles(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|t| fast::fields(t).is_some())
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
    event_id: Option<&'a str>,
    event_type: Option<&'a str>,
    occurred_at: Option<&'a str>,
    source: Option<&'a str>,
    user_id: Option<&'a str>,
    session_id: Option<&'a str>,
    schema_version: Option<&'a str>,
    attributes: Option<&'a str>,
    /// `json_depth` of `attributes`, when the scanner already measured it.
    attributes_depth: Option<usize>,
    extra: Vec<(Cow<'a, str>, &'a str)>,
    duplicate: Option<Cow<'a, str>>,
}

impl<'a> Fields<'a> {
    /// Files one top-level member, noting the first duplicate key.
    fn insert(&mut self, key: Cow<'a, str>, value: &'a str) {
        let slot = match key.as_ref() {
            "event_id" => &mut self.event_id,
            "event_type" => &mut self.event_type,
            "occurred_at" => &mut self.occurred_at,
            "source" => &mut self.source,
            "user_id" => &mut self.user_id,
            "session_id" => &mut self.session_id,
            "schema_version" => &mut self.schema_version,
            "attributes" => &mut self.attributes,
            _ => {
                if self.duplicate.is_none() && self.extra.iter().any(|(k, _)| *k == key) {
                    self.duplicate = Some(key.clone());
                }
                self.extra.push((key, value));
                return;
            }
        };
        if slot.is_some() && self.duplicate.is_none() {
            self.duplicate = Some(key);
        }
        *slot = Some(value);
    }
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
            fields.insert(key.0, value.get());
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
            Some("1") => 1,
            Some(raw) => {
                let v: i64 = serde_json::from_str(raw).map_err(|_| {
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
                let size = raw.len();
                if size > ATTRIBUTES_MAX_BYTES {
                    return Err(Rejection::new(
                        Reason::TooLarge,
                        format!(
                            "field `attributes` is {size} bytes, the limit is {ATTRIBUTES_MAX_BYTES}"
                        ),
                    ));
                }
                let depth = self.attributes_depth.unwrap_or_else(|| json_depth(raw));
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

fn required_string<'a>(name: &str, raw: Option<&'a str>) -> Result<Cow<'a, str>, Rejection> {
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
    raw: Option<&'a str>,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    match raw {
        Some(raw) if kind(raw) != Kind::Null => string_value(name, raw).map(Some),
        _ => Ok(None),
    }
}

fn string_value<'a>(name: &str, text: &'a str) -> Result<Cow<'a, str>, Rejection> {
    if kind(text) != Kind::String {
        return Err(Rejection::new(
            Reason::WrongType,
            format!("field `{name}` must be a string, found {}", describe(text)),
        ));
    }
    let inner = &text[1..text.len() - 1];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text)
        .map(Cow::Owned)
        .map_err(|e| Rejection::new(Reason::InvalidJson, format!("field `{name}`: {e}")))
}

fn check_chars(name: &str, value: &str, min: usize, max: usize) -> Result<(), Rejection> {
    // A value of at most `max` bytes has at most `max` chars, and a non-empty one at least one.
    if value.len() <= max && (min == 0 || (min == 1 && !value.is_empty())) {
        return Ok(());
    }
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

fn kind(raw: &str) -> Kind {
    json_kind(raw)
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

fn describe(raw: &str) -> &'static str {
    json_kind_of(raw)
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

/// The index of the first `"`, `\` or control character, eight bytes at a time.
pub(crate) fn special(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = b.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        // A byte is flagged when it is zero (or below 0x20): the lowest flag is exact.
        let hits = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        let hits = hits & HIGH;
        if hits != 0 {
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|n| offset + n)
}

/// Deepest nesting the fast scanner follows before it leaves the text to `serde_json`.
pub const FAST_MAX_DEPTH: usize = 64;

/// The fast scanner: strict JSON (RFC 8259, as `serde_json` reads it) over the common shape of an
/// event. `None` means "not decided here", never "invalid": the caller then asks `serde_json`.
mod fast {
    use std::borrow::Cow;

    use super::{FAST_MAX_DEPTH, Fields, special};

    struct Scanner<'a> {
        text: &'a str,
        b: &'a [u8],
        i: usize,
    }

    pub(super) fn fields(text: &str) -> Option<Fields<'_>> {
        let mut s = Scanner {
            text,
            b: text.as_bytes(),
            i: 0,
        };
        s.ws();
        s.eat(b'{')?;
        let mut fields = Fields::default();
        s.ws();
        if s.peek() == Some(b'}') {
            s.i += 1;
        } else {
            loop {
                s.ws();
                let key = s.plain_string()?;
                s.ws();
                s.eat(b':')?;
                s.ws();
                let start = s.i;
                let depth = s.value()?;
                if key == "attributes" {
                    fields.attributes_depth = Some(depth);
                }
                fields.insert(Cow::Borrowed(key), &text[start..s.i]);
                s.ws();
                match s.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        s.ws();
        // Only whitespace may follow the object; a duplicate key is left to the reference path,
        // which names it.
        (s.i == s.b.len() && fields.duplicate.is_none()).then_some(fields)
    }

    impl<'a> Scanner<'a> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn next(&mut self) -> Option<u8> {
            let c = self.peek()?;
            self.i += 1;
            Some(c)
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            (self.next()? == c).then_some(())
        }

        fn ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
                self.i += 1;
            }
        }

        /// A string without escapes (an object key); returns its content.
        fn plain_string(&mut self) -> Option<&'a str> {
            self.eat(b'"')?;
            let start = self.i;
            self.i = start + special(&self.b[start..])?;
            self.eat(b'"')?;
            let n = self.i - 1 - start;
            // Both ends are ASCII quotes, so these are char boundaries.
            self.text.get(start..start + n)
        }

        /// A string with at most the short escapes (`\uXXXX` is left to the reference path).
        fn string(&mut self) -> Option<()> {
            self.eat(b'"')?;
            loop {
                self.i += special(&self.b[self.i..])?;
                match self.next()? {
                    b'"' => return Some(()),
                    b'\\' => match self.next()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        _ => return None,
                    },
                    _ => return None,
                }
            }
        }

        fn digits(&mut self) -> usize {
            let n = self.b[self.i..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            self.i += n;
            n
        }

        /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
        fn number(&mut self) -> Option<()> {
            if self.peek() == Some(b'-') {
                self.i += 1;
            }
            match self.peek()? {
                b'0' => {
                    self.i += 1;
                    if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        return None;
                    }
                }
                b'1'..=b'9' => {
                    self.digits();
                }
                _ => return None,
            }
            if self.peek() == Some(b'.') {
                self.i += 1;
                if self.digits() == 0 {
                    return None;
                }
            }
            if let Some(b'e' | b'E') = self.peek() {
                self.i += 1;
                if let Some(b'+' | b'-') = self.peek() {
                    self.i += 1;
                }
                if self.digits() == 0 {
                    return None;
                }
            }
            Some(())
        }

        fn literal(&mut self, word: &[u8]) -> Option<()> {
            if self.b[self.i..].starts_with(word) {
                self.i += word.len();
                Some(())
            } else {
                None
            }
        }

        /// Any JSON value, iteratively; returns its nesting depth (as `json_depth` counts it).
        /// Bit `d` of `objects` tells whether the container open at depth `d` is an object.
        fn value(&mut self) -> Option<usize> {
            let mut objects = 0u64;
            let mut depth = 0usize;
            let mut max = 0usize;
            loop {
                // A value.
                match self.peek()? {
                    b'"' => self.string()?,
                    b'{' | b'[' => {
                        let object = self.next()? == b'{';
                        if depth == FAST_MAX_DEPTH {
                            return None;
                        }
                        objects = (objects & !(1 << depth)) | (u64::from(object) << depth);
                        depth += 1;
                        max = max.max(depth);
                        self.ws();
                        let close = if object { b'}' } else { b']' };
                        if self.peek() == Some(close) {
                            self.i += 1;
                            depth -= 1;
                        } else {
                            if object {
                                self.member_key()?;
                            }
                            continue;
                        }
                    }
                    b't' => self.literal(b"true")?,
                    b'f' => self.literal(b"false")?,
                    b'n' => self.literal(b"null")?,
                    _ => self.number()?,
                }
                // After a value: close containers, or move on to the next element.
                loop {
                    if depth == 0 {
                        return Some(max);
                    }
                    self.ws();
                    let object = objects & (1 << (depth - 1)) != 0;
                    match (self.next()?, object) {
                        (b',', true) => {
                            self.ws();
                            self.member_key()?;
                            break;
                        }
                        (b',', false) => {
                            self.ws();
                            break;
                        }
                        (b'}', true) | (b']', false) => depth -= 1,
                        _ => return None,
                    }
                }
            }
        }

        /// `"key" :` inside an object, leaving the scanner at the member's value.
        fn member_key(&mut self) -> Option<()> {
            self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            Some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    proptest::proptest! {
        #[test]
        fn special_finds_the_first_special_byte(b in proptest::collection::vec(
            proptest::sample::select(vec![b'a', b'"', b'\\', 0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xff, 0]),
            0..40,
        )) {
            let naive = b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            proptest::prop_assert_eq!(special(&b), naive);
        }
    }

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
        let keys: Vec<_> = e.extra.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
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
