//! The processed Parquet format (schema v1): one row group per object, zstd, explicit schema.

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

/// The schema, in Parquet's message syntax. Column order and types are part of the data contract.
pub const SCHEMA: &str = "
message event_v1 {
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
}
";

/// zstd's fastest level: columns of JSON text still compress about 5x.
pub const ZSTD_LEVEL: i32 = 1;

/// One processed row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Row {
    pub event_id: String,
    pub event_type: String,
    pub occurred_at_us: i64,
    pub source: String,
    pub user_id_hash: Option<String>,
    pub session_id: Option<String>,
    pub schema_version: i32,
    pub attributes_json: Option<String>,
    pub extra_json: Option<String>,
    /// Days since 1970-01-01.
    pub event_date: i32,
    pub event_hour: i32,
    pub arrival_time_us: i64,
    pub ingest_lag_ms: i64,
    pub kinesis_shard: String,
    pub kinesis_seq: String,
    pub kinesis_subseq: i64,
    pub raw_key: String,
}

pub fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

/// Encodes rows into one Parquet file.
pub fn write_rows(rows: &[Row]) -> Result<Vec<u8>, ParquetError> {
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_created_by("eventpipe".to_owned())
            // Dictionaries only where values repeat; for ids and JSON text they cost time for nothing.
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from("event_type"), true)
            .set_column_dictionary_enabled(ColumnPath::from("source"), true)
            .set_column_dictionary_enabled(ColumnPath::from("kinesis_shard"), true)
            .set_column_dictionary_enabled(ColumnPath::from("raw_key"), true)
            .set_column_statistics_enabled(
                ColumnPath::from("attributes_json"),
                EnabledStatistics::None,
            )
            .set_column_statistics_enabled(ColumnPath::from("extra_json"), EnabledStatistics::None)
            .build(),
    );
    let mut buf = Vec::with_capacity(rows.len() * 128 + 1024);
    let mut writer = SerializedFileWriter::new(&mut buf, schema, props)?;
    let mut group = writer.next_row_group()?;
    let mut column = 0;
    while let Some(mut col) = group.next_column()? {
        match column {
            0 => strings(&mut col, rows, |r| &r.event_id)?,
            1 => strings(&mut col, rows, |r| &r.event_type)?,
            2 => longs(&mut col, rows, |r| r.occurred_at_us)?,
            3 => strings(&mut col, rows, |r| &r.source)?,
            4 => optional_strings(&mut col, rows, |r| r.user_id_hash.as_deref())?,
            5 => optional_strings(&mut col, rows, |r| r.session_id.as_deref())?,
            6 => ints(&mut col, rows, |r| r.schema_version)?,
            7 => optional_strings(&mut col, rows, |r| r.attributes_json.as_deref())?,
            8 => optional_strings(&mut col, rows, |r| r.extra_json.as_deref())?,
            9 => ints(&mut col, rows, |r| r.event_date)?,
            10 => ints(&mut col, rows, |r| r.event_hour)?,
            11 => longs(&mut col, rows, |r| r.arrival_time_us)?,
            12 => longs(&mut col, rows, |r| r.ingest_lag_ms)?,
            13 => strings(&mut col, rows, |r| &r.kinesis_shard)?,
            14 => strings(&mut col, rows, |r| &r.kinesis_seq)?,
            15 => longs(&mut col, rows, |r| r.kinesis_subseq)?,
            16 => strings(&mut col, rows, |r| &r.raw_key)?,
            n => {
                return Err(ParquetError::General(format!(
                    "schema has an unexpected column {n}"
                )));
            }
        }
        col.close()?;
        column += 1;
    }
    group.close()?;
    writer.close()?;
    Ok(buf)
}

type ColumnWriter<'a> = parquet::file::writer::SerializedColumnWriter<'a>;

/// One buffer per column, sliced into values: no allocation per value.
fn byte_arrays<'r>(values: impl Iterator<Item = &'r str> + Clone) -> Vec<ByteArray> {
    let total: usize = values.clone().map(str::len).sum();
    let mut buf = Vec::with_capacity(total);
    let mut ends = Vec::new();
    for v in values {
        buf.extend_from_slice(v.as_bytes());
        ends.push(buf.len());
    }
    let buf = Bytes::from(buf);
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let v = ByteArray::from(buf.slice(start..end));
            start = end;
            v
        })
        .collect()
}

fn strings(
    col: &mut ColumnWriter<'_>,
    rows: &[Row],
    f: impl Fn(&Row) -> &String,
) -> Result<(), ParquetError> {
    let values = byte_arrays(rows.iter().map(|r| f(r).as_str()));
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
        let mut row = Row {
            event_id: String::new(),
            event_type: String::new(),
            occurred_at_us: 0,
            source: String::new(),
            user_id_hash: None,
            session_id: None,
            schema_version: 0,
            attributes_json: None,
            extra_json: None,
            event_date: 0,
            event_hour: 0,
            arrival_time_us: 0,
            ingest_lag_ms: 0,
            kinesis_shard: String::new(),
            kinesis_seq: String::new(),
            kinesis_subseq: 0,
            raw_key: String::new(),
        };
        for (name, field) in record.get_column_iter() {
            let unexpected =
                || ParquetError::General(format!("column `{name}` has unexpected value {field:?}"));
            match (name.as_str(), field) {
                ("event_id", Field::Str(s)) => row.event_id = s.clone(),
                ("event_type", Field::Str(s)) => row.event_type = s.clone(),
                ("occurred_at", Field::TimestampMicros(v)) => row.occurred_at_us = *v,
                ("source", Field::Str(s)) => row.source = s.clone(),
                ("user_id_hash", Field::Str(s)) => row.user_id_hash = Some(s.clone()),
                ("session_id", Field::Str(s)) => row.session_id = Some(s.clone()),
                ("attributes_json", Field::Str(s)) => row.attributes_json = Some(s.clone()),
                ("extra_json", Field::Str(s)) => row.extra_json = Some(s.clone()),
                ("user_id_hash" | "session_id" | "attributes_json" | "extra_json", Field::Null) => {
                }
                ("schema_version", Field::Int(v)) => row.schema_version = *v,
                ("event_date", Field::Date(v)) => row.event_date = *v,
                ("event_hour", Field::Int(v)) => row.event_hour = *v,
                ("arrival_time", Field::TimestampMicros(v)) => row.arrival_time_us = *v,
                ("ingest_lag_ms", Field::Long(v)) => row.ingest_lag_ms = *v,
                ("kinesis_shard", Field::Str(s)) => row.kinesis_shard = s.clone(),
                ("kinesis_seq", Field::Str(s)) => row.kinesis_seq = s.clone(),
                ("kinesis_subseq", Field::Long(v)) => row.kinesis_subseq = *v,
                ("raw_key", Field::Str(s)) => row.raw_key = s.clone(),
                _ => return Err(unexpected()),
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(i: i64) -> Row {
        Row {
            event_id: format!("e-{i}"),
            event_type: "click".into(),
            occurred_at_us: 1_764_064_800_000_000 + i,
            source: "web".into(),
            user_id_hash: (i % 2 == 0).then(|| "ab".repeat(32)),
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
