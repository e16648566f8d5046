//! The processed Parquet format (schema v1): one row group per object, zstd (columns whose values
//! repeat: dictionary-encoded, uncompressed), explicit schema.

use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

/// How a column is typed: its Parquet physical and logical type, and its Glue (Hive) type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    OptionalText,
    Int,
    Long,
    /// Microseconds since the epoch, UTC.
    Timestamp,
    /// Days since 1970-01-01.
    Date,
}

impl Kind {
    /// The column's declaration in Parquet's message syntax, after its name is substituted.
    fn parquet(self) -> (&'static str, &'static str) {
        match self {
            Kind::Text => ("required binary", " (STRING)"),
            Kind::OptionalText => ("optional binary", " (STRING)"),
            Kind::Int => ("required int32", ""),
            Kind::Long => ("required int64", ""),
            Kind::Timestamp => ("required int64", " (TIMESTAMP(MICROS,true))"),
            Kind::Date => ("required int32", " (DATE)"),
        }
    }

    /// The type of the column in the Glue catalog (what Athena queries).
    pub fn glue_type(self) -> &'static str {
        match self {
            Kind::Text | Kind::OptionalText => "string",
            Kind::Int => "int",
            Kind::Long => "bigint",
            Kind::Timestamp => "timestamp",
            Kind::Date => "date",
        }
    }
}

/// One column's value in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Text(&'a str),
    OptionalText(Option<&'a str>),
    Int(i32),
    Long(i64),
    Timestamp(i64),
    Date(i32),
}

impl Value<'_> {
    /// As JSON, for people: timestamps in RFC 3339 with microseconds, dates as `YYYY-MM-DD`.
    pub fn to_json(self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Text(s) => J::from(s),
            Value::OptionalText(s) => s.map_or(J::Null, J::from),
            Value::Int(v) => J::from(v),
            Value::Long(v) => J::from(v),
            Value::Timestamp(us) => chrono::DateTime::from_timestamp_micros(us)
                .map_or(J::from(us), |t| {
                    J::from(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                }),
            Value::Date(d) => NaiveDate::default()
                .checked_add_signed(chrono::Duration::days(i64::from(d)))
                .map_or(J::from(d), |date| J::from(date.to_string())),
        }
    }
}

/// One column of the processed files: the one definition the schema, the writer, the reader, the
/// `pipeline cat` output and the Glue table (through the generated contract) are built from.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// What the column holds, for the catalog.
    pub comment: &'static str,
    /// Dictionary-encoded and stored uncompressed: for columns whose values repeat across a file
    /// (its partition's type and hour, the lineage of one raw object), whose data pages are then a
    /// few bytes of run-length indices. zstd would save nothing there and costs a compression
    /// context per column chunk. For ids and JSON text a dictionary costs time for nothing.
    pub dictionary: bool,
    /// Min/max statistics: not for JSON text, nor for random ids and hashes, whose bounds prune
    /// nothing.
    pub statistics: bool,
    pub get: fn(&Row) -> Value<'_>,
    /// Sets the row's field from the value read back; false if the value has another type.
    set: fn(&mut Row, &Field) -> bool,
}

macro_rules! column {
    ($name:literal, $field:ident, Text, $dict:literal, $stats:literal, $comment:literal) => {
        Column {
            name: $name,
            kind: Kind::Text,
            comment: $comment,
            dictionary: $dict,
            statistics: $stats,
            get: |r| Value::Text(&r.$field),
            set: |r, f| match f {
                Field::Str(s) => {
                    r.$field = s.as_str().into();
                    true
                }
                _ => false,
            },
        }
    };
    ($name:literal, $field:ident, OptionalText, $stats:literal, $comment:literal) => {
        Column {
            name: $name,
            kind: Kind::OptionalText,
            comment: $comment,
            dictionary: false,
            statistics: $stats,
            get: |r| Value::OptionalText(r.$field.as_deref()),
            set: |r, f| match f {
                Field::Str(s) => {
                    r.$field = Some(s.as_str().into());
                    true
                }
                Field::Null => {
                    r.$field = None;
                    true
                }
                _ => false,
            },
        }
    };
    ($name:literal, $field:ident, $kind:ident, $variant:ident, $dict:literal, $comment:literal) => {
        Column {
            name: $name,
            kind: Kind::$kind,
            comment: $comment,
            dictionary: $dict,
            statistics: true,
            get: |r| Value::$kind(r.$field),
            set: |r, f| match f {
                Field::$variant(v) => {
                    r.$field = *v;
                    true
                }
                _ => false,
            },
        }
    };
}

/// The columns of schema v1, in file order. Order, names and types are part of the data contract.
#[rustfmt::skip]
pub const COLUMNS: [Column; 17] = [
    column!("event_id", event_id, Text, false, false, "Producer-assigned id; unique within a raw object"),
    column!("event_type", event_type, Text, true, true, "Event type"),
    column!("occurred_at", occurred_at_us, Timestamp, TimestampMicros, false, "When the event happened (UTC)"),
    column!("source", source, Text, true, true, "Producing system"),
    column!("user_id_hash", user_id_hash, OptionalText, false, "HMAC-SHA256 of user_id (hex)"),
    column!("session_id", session_id, OptionalText, true, "Session id as sent"),
    column!("schema_version", schema_version, Int, Int, true, "Event contract version"),
    column!("attributes_json", attributes_json, OptionalText, false, "Attributes as JSON, PII values pseudonymised"),
    column!("extra_json", extra_json, OptionalText, false, "Unknown top-level fields as JSON"),
    column!("event_date", event_date, Date, Date, true, "UTC date of occurred_at"),
    column!("event_hour", event_hour, Int, Int, true, "UTC hour of occurred_at"),
    column!("arrival_time", arrival_time_us, Timestamp, TimestampMicros, false, "Kinesis approximate arrival time"),
    column!("ingest_lag_ms", ingest_lag_ms, Long, Long, false, "arrival_time - occurred_at in milliseconds"),
    column!("kinesis_shard", kinesis_shard, Text, true, true, "Lineage: shard id"),
    column!("kinesis_seq", kinesis_seq, Text, false, true, "Lineage: sequence number"),
    column!("kinesis_subseq", kinesis_subseq, Long, Long, true, "Lineage: KPL sub-sequence number"),
    column!("raw_key", raw_key, Text, true, true, "Lineage: the raw object"),
];

/// The name of the schema's message.
pub const SCHEMA_NAME: &str = "event_v1";

/// The schema in Parquet's message syntax, from [`COLUMNS`].
pub fn schema() -> String {
    let mut out = format!("message {SCHEMA_NAME} {{\n");
    for c in &COLUMNS {
        let (ty, logical) = c.kind.parquet();
        out.push_str(&format!("  {ty} {}{logical};\n", c.name));
    }
    out.push('}');
    out
}

/// A row as one JSON object, column by column (`pipeline cat`).
pub fn row_json(row: &Row) -> serde_json::Value {
    serde_json::Value::Object(
        COLUMNS
            .iter()
            .map(|c| (c.name.to_owned(), (c.get)(row).to_json()))
            .collect(),
    )
}

/// zstd's fastest level: columns of JSON text still compress about 5x.
pub const ZSTD_LEVEL: i32 = 1;

/// One processed row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
///
/// The fields every row of an object shares, or that take few values, are shared strings
/// (`Arc<str>`): one allocation per object, not per row.
pub struct Row {
    pub event_id: String,
    pub event_type: Arc<str>,
    pub occurred_at_us: i64,
    pub source: Arc<str>,
    pub user_id_hash: Option<Arc<str>>,
    pub session_id: Option<String>,
    pub schema_version: i32,
    pub attributes_json: Option<String>,
    pub extra_json: Option<String>,
    /// Days since 1970-01-01.
    pub event_date: i32,
    pub event_hour: i32,
    pub arrival_time_us: i64,
    pub ingest_lag_ms: i64,
    pub kinesis_shard: Arc<str>,
    pub kinesis_seq: String,
    pub kinesis_subseq: i64,
    pub raw_key: Arc<str>,
}

pub fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

/// Encodes rows into one Parquet file.
pub fn write_rows(rows: &[Row]) -> Result<Vec<u8>, ParquetError> {
    let schema = Arc::new(parse_message_type(&schema())?);
    let mut props = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_created_by("eventpipe".to_owned())
        .set_dictionary_enabled(false);
    for c in &COLUMNS {
        let path = ColumnPath::from(c.name);
        props = props.set_column_dictionary_enabled(path.clone(), c.dictionary);
        if c.dictionary {
            props = props.set_column_compression(path.clone(), Compression::UNCOMPRESSED);
        }
        if !c.statistics {
            props = props.set_column_statistics_enabled(path, EnabledStatistics::None);
        }
    }
    let props = Arc::new(props.build());
    let mut buf = Vec::with_capacity(rows.len() * 128 + 1024);
    let mut writer = SerializedFileWriter::new(&mut buf, schema, props)?;
    let mut group = writer.next_row_group()?;
    for c in &COLUMNS {
        let Some(mut col) = group.next_column()? else {
            return Err(ParquetError::General(format!(
                "the schema ends before column `{}`",
                c.name
            )));
        };
        let get = c.get;
        match c.kind {
            Kind::Text => strings(&mut col, rows, |r| match get(r) {
                Value::Text(s) => s,
                _ => "",
            })?,
            Kind::OptionalText => optional_strings(&mut col, rows, |r| match get(r) {
                Value::OptionalText(s) => s,
                _ => None,
            })?,
            Kind::Int | Kind::Date => ints(&mut col, rows, |r| match get(r) {
                Value::Int(v) | Value::Date(v) => v,
                _ => 0,
            })?,
            Kind::Long | Kind::Timestamp => longs(&mut col, rows, |r| match get(r) {
                Value::Long(v) | Value::Timestamp(v) => v,
                _ => 0,
            })?,
        }
        col.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(buf)
}

type ColumnWriter<'a> = parquet::file::writer::SerializedColumnWriter<'a>;

/// One buffer per column, sliced into values: no allocation per value. A value that is the very
/// string of the row before (rows share their object's key, shard, type and source) is not copied
/// again.
fn byte_arrays<'r>(values: impl Iterator<Item = &'r str> + Clone) -> Vec<ByteArray> {
    let same = |a: &str, b: &str| std::ptr::eq(a, b);
    let mut total = 0;
    let mut prev: Option<&str> = None;
    for v in values.clone() {
        if !prev.is_some_and(|p| same(p, v)) {
            total += v.len();
        }
        prev = Some(v);
    }
    let mut buf = Vec::with_capacity(total);
    let mut ranges = Vec::with_capacity(values.size_hint().0);
    let mut prev: Option<&str> = None;
    for v in values {
        if !prev.is_some_and(|p| same(p, v)) {
            buf.extend_from_slice(v.as_bytes());
        }
        ranges.push(buf.len() - v.len()..buf.len());
        prev = Some(v);
    }
    let buf = Bytes::from(buf);
    ranges
        .into_iter()
        .map(|r| ByteArray::from(buf.slice(r)))
        .collect()
}

fn strings(
    col: &mut ColumnWriter<'_>,
    rows: &[Row],
    f: impl Fn(&Row) -> &str,
) -> Result<(), ParquetError> {
    let values = byte_arrays(rows.iter().map(&f));
    col.typed::<ByteArrayType>()
        .write_batch(&values, None, None)
        .map(drop)
}

fn optional_strings(
    col: &mut ColumnWriter<'_>,
    rows: &[Row],
    f: impl Fn(&Row) -> Option<&str>,
) -> Result<(), ParquetError> {
    let values = byte_arrays(rows.iter().filter_map(&f));
    let levels: Vec<i16> = rows.iter().map(|r| i16::from(f(r).is_some())).collect();
    col.typed::<ByteArrayType>()
        .write_batch(&values, Some(&levels), None)
        .map(drop)
}

fn ints(
    col: &mut ColumnWriter<'_>,
    rows: &[Row],
    f: impl Fn(&Row) -> i32,
) -> Result<(), ParquetError> {
    let values: Vec<i32> = rows.iter().map(f).collect();
    col.typed::<Int32Type>()
        .write_batch(&values, None, None)
        .map(drop)
}

fn longs(
    col: &mut ColumnWriter<'_>,
    rows: &[Row],
    f: impl Fn(&Row) -> i64,
) -> Result<(), ParquetError> {
    let values: Vec<i64> = rows.iter().map(f).collect();
    col.typed::<Int64Type>()
        .write_batch(&values, None, None)
        .map(drop)
}

/// Reads a file written by [`write_rows`] back into rows (tests, the CLI, reconciliation).
pub fn read_rows(bytes: impl Into<Bytes>) -> Result<Vec<Row>, ParquetError> {
    let reader = SerializedFileReader::new(bytes.into())?;
    let mut rows = Vec::with_capacity(
        usize::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0),
    );
    for record in reader.get_row_iter(None)? {
        let record = record?;
        let mut row = Row::default();
        for (i, (name, field)) in record.get_column_iter().enumerate() {
            let column = COLUMNS.get(i).filter(|c| c.name == name);
            if !column.is_some_and(|c| (c.set)(&mut row, field)) {
                return Err(ParquetError::General(format!(
                    "column `{name}` has unexpected value {field:?}"
                )));
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_arrays_hold_each_value_whether_or_not_the_row_before_shares_it() {
        let shared: Arc<str> = "raw/dt=2026-11-25/a.jsonl.gz".into();
        let equal_elsewhere = String::from("raw/dt=2026-11-25/a.jsonl.gz");
        let empty: Arc<str> = "".into();
        let values: Vec<&str> = vec![
            &shared,
            &shared,
            "b",
            &shared,
            &equal_elsewhere,
            &empty,
            &empty,
            &shared,
            &shared,
        ];
        let arrays = byte_arrays(values.iter().copied());
        let got: Vec<&[u8]> = arrays.iter().map(ByteArray::data).collect();
        let want: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        assert_eq!(got, want);
    }

    pub(crate) fn sample(i: i64) -> Row {
        Row {
            event_id: format!("e-{i}"),
            event_type: "click".into(),
            occurred_at_us: 1_764_064_800_000_000 + i,
            source: "web".into(),
            user_id_hash: (i % 2 == 0).then(|| "ab".repeat(32).into()),
            session_id: (i % 3 == 0).then(|| format!("s-{i}")),
            schema_version: 1,
            attributes_json: (i % 2 == 1).then(|| r#"{"a":1}"#.into()),
            extra_json: None,
            event_date: 20_417,
            event_hour: 10,
            arrival_time_us: 1_764_064_801_000_000,
            ingest_lag_ms: 1000,
            kinesis_shard: "shardId-000000000000".into(),
            kinesis_seq: format!("{}", 4_959_000 + i),
            kinesis_subseq: i % 4,
            raw_key: "raw/x".into(),
        }
    }

    #[test]
    fn round_trip_and_determinism() {
        let rows: Vec<Row> = (0..50).map(sample).collect();
        let bytes = write_rows(&rows).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        assert_eq!(read_rows(bytes.clone()).unwrap(), rows);
        assert_eq!(write_rows(&rows).unwrap(), bytes, "same rows, same bytes");
    }

    #[test]
    fn the_schema_built_from_the_column_table_is_schema_v1() {
        let v1 = "message event_v1 {
  required binary event_id (STRING);
  required binary event_type (STRING);
  required int64 occurred_at (TIMESTAMP(MICROS,true));
  required binary source (STRING);
  optional binary user_id_hash (STRING);
  optional binary session_id (STRING);
  required int32 schema_version;
  optional binary attributes_json (STRING);
  optional binary extra_json (STRING);
  required int32 event_date (DATE);
  required int32 event_hour;
  required int64 arrival_time (TIMESTAMP(MICROS,true));
  required int64 ingest_lag_ms;
  required binary kinesis_shard (STRING);
  required binary kinesis_seq (STRING);
  required int64 kinesis_subseq;
  required binary raw_key (STRING);
}";
        assert_eq!(schema(), v1);
    }

    #[test]
    fn dictionaries_compression_and_statistics_follow_the_column_table() {
        let bytes = write_rows(&(0..20).map(sample).collect::<Vec<_>>()).unwrap();
        let reader = SerializedFileReader::new(Bytes::from(bytes)).unwrap();
        let group = reader.metadata().row_group(0);
        for (i, c) in COLUMNS.iter().enumerate() {
            let meta = group.column(i);
            assert_eq!(meta.column_path().string(), c.name);
            assert_eq!(
                meta.dictionary_page_offset().is_some(),
                c.dictionary,
                "{}",
                c.name
            );
            assert_eq!(meta.statistics().is_some(), c.statistics, "{}", c.name);
            let zstd = matches!(meta.compression(), Compression::ZSTD(_));
            assert_eq!(zstd, !c.dictionary, "{}: {:?}", c.name, meta.compression());
        }
    }

    #[test]
    fn a_row_as_json_has_every_column_with_readable_times() {
        let json = row_json(&sample(0));
        let object = json.as_object().unwrap();
        let names: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        expected.sort_unstable();
        let mut got = names.clone();
        got.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(json["occurred_at"], "2025-11-25T10:00:00.000000Z");
        assert_eq!(json["event_date"], "2025-11-25");
        assert_eq!(json["kinesis_subseq"], 0);
        assert_eq!(json["attributes_json"], serde_json::Value::Null);
    }

    #[test]
    fn schema_is_zstd_and_typed() {
        let bytes = write_rows(&[sample(1)]).unwrap();
        let reader = SerializedFileReader::new(Bytes::from(bytes)).unwrap();
        let col = reader.metadata().row_group(0).column(2);
        assert!(matches!(col.compression(), Compression::ZSTD(_)));
        let schema = reader.metadata().file_metadata().schema_descr();
        assert_eq!(schema.num_columns(), 17);
        assert_eq!(schema.column(2).name(), "occurred_at");
        assert_eq!(
            days_since_epoch(NaiveDate::from_ymd_opt(2025, 11, 25).unwrap()),
            20_417
        );
    }
}
