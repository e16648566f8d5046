//! Which raw object owns a record that more than one raw object holds.
//!
//! A Kinesis record can land in two raw objects of its shard: a batch whose object was written
//! but whose invocation failed is retried in halves (bisection), each half under the key of its
//! own first record; a redelivery with other batch boundaries (a mapping restarted from its
//! checkpoint with another batch size, at-least-once delivery) starts batches at other records.
//! If the earlier object is then neither rewritten nor redriven, both hold the record.
//!
//! **The rule:** a record belongs to the object, among the raw objects of its shard that hold it,
//! whose key has the lowest first sequence number. A raw object's key is its first record's
//! ([`crate::keys::raw_key`]), so the owner is unique and does not depend on when the objects
//! were written or processed. The transformer emits only the records its object owns.
//!
//! **The ledger** finds the objects that may hold a record without listing a shard's history.
//! Every processed raw object enters its [`Entry`] in the ledger item of its shard for each
//! minute in which one of its records arrived ([`ledger_key`]). An object that holds a record of
//! `X` was entered under that record's minute, which is one of `X`'s minutes, so reading `X`'s
//! minutes finds every candidate ([`holders_before`]); the candidates' lines then tell which
//! records they hold. Entries are only added: an entry of content that was since rewritten
//! makes its object a candidate that holds fewer records than the entry says, never one that is
//! missed.
//!
//! When an object is processed, the objects that start inside it may have lost records to it:
//! [`starting_within`] over the minutes it spans (every content it ever had, [`Entry::span_of`])
//! finds them, and the transformer processes them again.
//!
//! **Limit:** a ledger item holds about [`LEDGER_ENTRIES_PER_ITEM`] entries before DynamoDB's
//! 400 KB item limit: that many raw objects per shard with a record in one minute.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use crate::keys::{self, RawKey, seq_cmp};
use crate::metadata::{AttributeValue, HASH_KEY, MAX_ITEM_SIZE, TTL_ATTRIBUTE, item_size};

/// The prefix of the ledger items' keys in the metadata table; never a raw object's key.
pub const LEDGER_PREFIX: &str = "ledger/";
/// A ledger item's attribute holding its entries, a string set.
pub const LEDGER_ENTRIES_ATTRIBUTE: &str = "ledger_entries";

/// The longest entry: two 128-digit sequence numbers (Kinesis's pattern allows up to 129 digits),
/// a minute and an hour, and the byte a set gives each element.
const WIDEST_ENTRY: usize = 129 + 1 + 129 + 1 + 12 + 1 + 13 + 1;

/// How many of the widest entries a ledger item holds within DynamoDB's item limit; with this
/// pipeline's 56-digit sequence numbers, about twice as many.
pub const LEDGER_ENTRIES_PER_ITEM: usize =
    (MAX_ITEM_SIZE - 128 - HASH_KEY.len() - LEDGER_ENTRIES_ATTRIBUTE.len() - 32) / WIDEST_ENTRY;
const _: () = assert!(LEDGER_ENTRIES_PER_ITEM > 1_000);

/// The minute of `t`: whole minutes since the Unix epoch.
pub fn minute_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(60)
}

/// `ledger/<shard-id>/<YYYY-MM-DDTHH:MM>`: the ledger item of a shard's minute.
pub fn ledger_key(shard_id: &str, minute: i64) -> String {
    let t = Utc
        .timestamp_opt(minute.saturating_mul(60), 0)
        .single()
        .unwrap_or_default();
    format!("{LEDGER_PREFIX}{shard_id}/{}", t.format("%Y-%m-%dT%H:%M"))
}

/// One raw object in a ledger: `<first> <last> <last minute> <YYYY-MM-DDTHH>`, where `first` is
/// its key's sequence number, `last` the highest sequence number of its lines, `last minute` the
/// minute of its latest arrival, and the hour the one in its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub first: String,
    pub last: String,
    pub last_minute: i64,
    /// `YYYY-MM-DD` and `HH` of the key.
    pub date: String,
    pub hour: String,
}

impl Entry {
    /// The entry of a raw object from its key and the span of its lines.
    pub fn new(key: &RawKey<'_>, last_sequence_number: &str, last_arrival: DateTime<Utc>) -> Self {
        let last = if seq_cmp(last_sequence_number, key.first_sequence_number).is_lt() {
            key.first_sequence_number
        } else {
            last_sequence_number
        };
        Entry {
            first: key.first_sequence_number.to_owned(),
            last: last.to_owned(),
            last_minute: minute_of(last_arrival),
            date: key.date.to_owned(),
            hour: key.hour.to_owned(),
        }
    }

    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}T{}",
            self.first, self.last, self.last_minute, self.date, self.hour
        )
    }

    /// `None` for text no [`Entry::encode`] wrote.
    pub fn parse(text: &str) -> Option<Entry> {
        let mut parts = text.split(' ');
        let (first, last, minute, hour) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let (date, hour) = hour.split_once('T')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let ok = parts.next().is_none()
            && digits(first)
            && digits(last)
            && NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
            && hour.len() == 2
            && digits(hour);
        ok.then_some(())?;
        Some(Entry {
            first: first.to_owned(),
            last: last.to_owned(),
            last_minute: minute.parse().ok()?,
            date: date.to_owned(),
            hour: hour.to_owned(),
        })
    }

    /// Every entry of the object of `first` in `entries` (one per content it had): the highest
    /// last sequence number and the latest minute any of them reached.
    pub fn span_of<'a>(
        entries: impl IntoIterator<Item = &'a Entry>,
        first: &str,
    ) -> Option<(String, i64)> {
        entries
            .into_iter()
            .filter(|e| e.first == first)
            .fold(None, |acc, e| match acc {
                None => Some((e.last.clone(), e.last_minute)),
                Some((last, minute)) => Some((
                    if seq_cmp(&e.last, &last).is_gt() {
                        e.last.clone()
                    } else {
                        last
                    },
                    minute.max(e.last_minute),
                )),
            })
    }
}

/// The size DynamoDB gives a ledger item with these entries.
pub fn ledger_item_size(key: &str, entries: &BTreeSet<String>, expires_at: i64) -> usize {
    item_size(&[
        (HASH_KEY, AttributeValue::S(key)),
        (
            LEDGER_ENTRIES_ATTRIBUTE,
            AttributeValue::Ss(entries.iter().map(String::as_str).collect()),
        ),
        (TTL_ATTRIBUTE, AttributeValue::number(expires_at)),
    ])
}

/// A raw object a ledger names: enough to rebuild its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Named {
    /// Its key's first sequence number (first: objects sort by it as strings, so only equal
    /// widths sort in order; compare with [`seq_cmp`]).
    pub first: String,
    pub date: String,
    pub hour: String,
}

impl Named {
    /// The raw object's key in shard `shard_id`.
    pub fn raw_key(&self, shard_id: &str) -> String {
        format!(
            "{}dt={}/hour={}/shard={shard_id}/{}.jsonl.gz",
            keys::RAW_PREFIX,
            self.date,
            self.hour,
            self.first
        )
    }
}

fn named<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    keep: impl Fn(&Entry) -> bool,
) -> BTreeSet<Named> {
    entries
        .into_iter()
        .filter(|e| keep(e))
        .map(|e| Named {
            first: e.first.clone(),
            date: e.date.clone(),
            hour: e.hour.clone(),
        })
        .collect()
}

/// The objects of a ledger that start before `first` and may reach it: the candidates that can
/// own a record of the object whose key starts at `first`. Each object once.
pub fn holders_before<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    first: &str,
) -> BTreeSet<Named> {
    named(entries, |e| {
        seq_cmp(&e.first, first).is_lt() && seq_cmp(&e.last, first).is_ge()
    })
}

/// The objects of a ledger whose key starts after `first` and no later than `last`: those that
/// may hold records the object of `first` owns. Each object once.
pub fn starting_within<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    first: &str,
    last: &str,
) -> BTreeSet<Named> {
    named(entries, |e| {
        seq_cmp(&e.first, first).is_gt() && seq_cmp(&e.first, last).is_le()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashSet};

    fn key(first: &str) -> RawKey<'_> {
        RawKey {
            date: "2026-11-30",
            hour: "10",
            shard_id: "shardId-000000000000",
            first_sequence_number: first,
        }
    }

    #[test]
    fn an_entry_reads_back_and_names_its_raw_key() {
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 10, 59, 30).unwrap();
        let e = Entry::new(&key("1200"), "1350", t);
        assert_eq!(
            e.encode(),
            format!("1200 1350 {} 2026-11-30T10", minute_of(t))
        );
        assert_eq!(Entry::parse(&e.encode()), Some(e.clone()));
        let named = holders_before([&e], "1201");
        let key = named.first().unwrap().raw_key("shardId-000000000000");
        assert_eq!(
            key,
            "raw/dt=2026-11-30/hour=10/shard=shardId-000000000000/1200.jsonl.gz"
        );
        assert_eq!(
            keys::parse_raw_key(&key).map(|k| k.first_sequence_number),
            Some("1200")
        );
        for bad in [
            "",
            "1 2 3",
            "1 2 x 2026-11-30T10",
            "a 2 3 2026-11-30T10",
            "1 2 3 2026-11-30T1",
        ] {
            assert_eq!(Entry::parse(bad), None, "{bad}");
        }
        assert_eq!(
            ledger_key("shardId-000000000000", minute_of(t)),
            "ledger/shardId-000000000000/2026-11-30T10:59"
        );
        assert!(!ledger_key("s", 0).starts_with(keys::RAW_PREFIX));
    }

    #[test]
    fn a_full_ledger_item_of_the_widest_entries_fits_the_item_limit() {
        let entries: BTreeSet<String> = (0..LEDGER_ENTRIES_PER_ITEM)
            .map(|i| {
                let first = format!("{:0>129}", i + 1);
                format!("{first} {} -12345678901 2026-11-30T10", "9".repeat(129))
            })
            .collect();
        let key = ledger_key(&"s".repeat(128), i64::MAX / 60);
        let size = ledger_item_size(&key, &entries, i64::MAX);
        assert!(size <= MAX_ITEM_SIZE, "{size}");
    }

    /// A shard of `n` records (sequence numbers `100 + i`, arrival minute per record) and raw
    /// objects over it: each a run of records of one lane (lanes by record index), as batches,
    /// halves and redeliveries are.
    #[derive(Debug, Clone)]
    struct Case {
        minutes: Vec<i64>,
        lanes: usize,
        objects: Vec<(usize, usize, usize)>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (1usize..40, 1usize..4)
            .prop_flat_map(|(n, lanes)| {
                (
                    prop::collection::vec(0i64..3, n),
                    Just(lanes),
                    prop::collection::vec((0..n, 1usize..12, 0..lanes), 1..12),
                )
            })
            .prop_map(|(steps, lanes, objects)| {
                let minutes = steps
                    .iter()
                    .scan(1_000i64, |m, s| {
                        *m += s;
                        Some(*m)
                    })
                    .collect::<Vec<_>>();
                let n = minutes.len();
                let objects = objects
                    .into_iter()
                    .map(|(start, len, lane)| (start, (start + len).min(n), lane))
                    .collect();
                Case {
                    minutes,
                    lanes,
                    objects,
                }
            })
    }

    fn seq(i: usize) -> String {
        (100 + i).to_string()
    }

    proptest! {
        /// Every record some object holds is emitted by exactly one object, when each object
        /// drops the records that the candidates found in its minutes of the ledger hold; and an
        /// object that starts inside another is found from that other's minutes.
        #[test]
        fn every_held_record_has_exactly_one_owner_found_through_the_ledger(c in case()) {
            // Each object: its records (one lane of a run), as a set of indexes. A later object
            // with the same first record has the same key: it rewrites the content, and the
            // ledger keeps the entries of both contents.
            const HOUR: &str = "2026-11-30T10";
            let mut objects: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
            let mut ledger: BTreeMap<i64, Vec<Entry>> = BTreeMap::new();
            for &(start, end, lane) in &c.objects {
                let records: BTreeSet<usize> = (start..end)
                    .filter(|i| c.lanes == 1 || i % c.lanes == lane)
                    .collect();
                let (Some(&first), Some(&last)) = (records.first(), records.last()) else {
                    continue;
                };
                let entry = Entry::new(
                    &key(&seq(first)),
                    &seq(last),
                    Utc.timestamp_opt(c.minutes[last] * 60, 0).unwrap(),
                );
                for m in records.iter().map(|&i| c.minutes[i]).collect::<BTreeSet<_>>() {
                    ledger.entry(m).or_default().push(entry.clone());
                }
                objects.insert(seq(first), records);
            }
            let mut emitted: BTreeMap<usize, usize> = BTreeMap::new();
            for (first, records) in &objects {
                let mut candidates = BTreeSet::new();
                for m in records.iter().map(|&i| c.minutes[i]).collect::<BTreeSet<_>>() {
                    candidates.extend(holders_before(&ledger[&m], first));
                }
                let hour_of = |n: &Named| format!("{}T{}", n.date, n.hour);
                prop_assert!(candidates.iter().all(|n| hour_of(n) == HOUR), "{:?}", candidates);
                let held: HashSet<usize> = candidates
                    .iter()
                    .flat_map(|n| objects[&n.first].iter().copied())
                    .collect();
                for &r in records.iter().filter(|r| !held.contains(r)) {
                    *emitted.entry(r).or_default() += 1;
                }
                // Every object starting inside this one is found from this one's minutes.
                let first_minute = c.minutes[*records.first().unwrap()];
                let (last, last_minute) = Entry::span_of(&ledger[&first_minute], first).unwrap();
                let mut within = BTreeSet::new();
                for m in first_minute..=last_minute {
                    if let Some(entries) = ledger.get(&m) {
                        within.extend(starting_within(entries, first, &last));
                    }
                }
                let want: BTreeSet<String> = objects
                    .keys()
                    .filter(|f| seq_cmp(f, first).is_gt() && seq_cmp(f, &last).is_le())
                    .cloned()
                    .collect();
                prop_assert_eq!(within.into_iter().map(|n| n.first).collect::<BTreeSet<_>>(), want);
            }
            let held: BTreeSet<usize> = objects.values().flatten().copied().collect();
            prop_assert_eq!(emitted.keys().copied().collect::<BTreeSet<_>>(), held);
            prop_assert!(emitted.values().all(|n| *n == 1), "{:?}", emitted);
        }
    }
}
