//! The auditor's decisions: which raw objects to look at, and which of them are stuck.
//!
//! An S3 notification can expire (the transformer's maximum event age) or, as AWS documents, be
//! dropped; the stream processor can die between writing a raw object and recording it. Then a raw
//! object exists that nobody will process. The auditor lists the recent `raw/` hours, and a raw
//! object older than `stuck_after` that is not processed is stuck.

use chrono::{DateTime, Duration, Utc};

use crate::keys::RAW_PREFIX;

/// `raw/dt=YYYY-MM-DD/hour=HH/` of every hour that overlaps `[now - lookback, now]`, oldest first.
pub fn raw_hour_prefixes(now: DateTime<Utc>, lookback: Duration) -> Vec<String> {
    let hour = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H").to_string();
    let mut out: Vec<String> = Vec::new();
    let mut t = now - lookback.max(Duration::zero());
    loop {
        let prefix = format!(
            "{RAW_PREFIX}dt={}/hour={}/",
            t.format("%Y-%m-%d"),
            t.format("%H")
        );
        if out.last() != Some(&prefix) {
            out.push(prefix);
        }
        if hour(t) == hour(now) {
            return out;
        }
        t = (t + Duration::hours(1)).min(now);
    }
}

/// When a raw object counts as stuck, and which stuck objects one run re-drives.
///
/// An object is stuck once it is older than `stuck_after` and not processed. A run re-drives
/// only the objects that became stuck in the last two periods: every object is re-driven twice
/// when runs are on time, at least once when one is late or fails, and an object whose
/// re-drive failed too (a poison object, now in the transform dead-letter queue with a reason)
/// is reported as stuck at every run but not sent again and again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Objects written before this are stuck if not processed.
    pub stuck_before: DateTime<Utc>,
    /// Stuck objects written at or after this are re-driven.
    pub redrive_from: DateTime<Utc>,
}

impl Window {
    pub fn new(now: DateTime<Utc>, stuck_after: Duration, period: Duration) -> Window {
        let stuck_before = now - stuck_after.max(Duration::zero());
        Window {
            stuck_before,
            redrive_from: stuck_before - period.max(Duration::zero()) * 2,
        }
    }

    /// Old enough to be stuck if it is not processed.
    pub fn is_stuck(&self, written: DateTime<Utc>) -> bool {
        written < self.stuck_before
    }

    /// Stuck, and became so recently enough that this run re-drives it.
    pub fn redrives(&self, written: DateTime<Utc>) -> bool {
        self.is_stuck(written) && written >= self.redrive_from
    }
}

/// Why a raw object is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stuck {
    /// Recorded but not processed: its notification expired or was dropped, or every attempt
    /// failed (then the transform dead-letter queue holds it).
    NotProcessed,
    /// No metadata item, and not the stream processor's: a restore, a backfill or another
    /// writer, whose notification was lost. Processing registers it.
    NoItem,
}

impl Stuck {
    pub fn as_str(self) -> &'static str {
        match self {
            Stuck::NotProcessed => "not_processed",
            Stuck::NoItem => "no_item",
        }
    }
}

/// What to make of a raw object without a metadata item, from its user metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrecorded {
    /// The stream processor wrote it (its `sha256` metadata) and its batch never recorded it:
    /// the batch's retry wrote the records again, or they are in the stream dead-letter queue.
    /// Processing it would count its records twice; it is reported, never re-driven.
    Orphan,
    /// Anyone else's object: stuck, and re-driven.
    Stuck,
}

pub fn unrecorded(metadata: &std::collections::BTreeMap<String, String>) -> Unrecorded {
    if metadata.contains_key(crate::keys::RAW_SHA256_METADATA) {
        Unrecorded::Orphan
    } else {
        Unrecorded::Stuck
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, h, m, 0).unwrap()
    }

    #[test]
    fn the_hours_of_the_window_oldest_first_across_midnight() {
        assert_eq!(
            raw_hour_prefixes(at(10, 20), Duration::minutes(90)),
            [
                "raw/dt=2026-11-30/hour=08/",
                "raw/dt=2026-11-30/hour=09/",
                "raw/dt=2026-11-30/hour=10/"
            ]
        );
        let after_midnight = Utc.with_ymd_and_hms(2026, 12, 1, 0, 10, 0).unwrap();
        assert_eq!(
            raw_hour_prefixes(after_midnight, Duration::minutes(30)),
            ["raw/dt=2026-11-30/hour=23/", "raw/dt=2026-12-01/hour=00/"]
        );
        assert_eq!(
            raw_hour_prefixes(at(10, 20), Duration::zero()),
            ["raw/dt=2026-11-30/hour=10/"]
        );
    }

    #[test]
    fn a_run_redrives_what_became_stuck_in_the_last_two_periods() {
        let w = Window::new(at(12, 0), Duration::minutes(15), Duration::minutes(5));
        assert_eq!(w.stuck_before, at(11, 45));
        assert_eq!(w.redrive_from, at(11, 35));
        assert!(!w.is_stuck(at(11, 50)) && !w.redrives(at(11, 50)));
        assert!(w.is_stuck(at(11, 44)) && w.redrives(at(11, 44)));
        assert!(w.redrives(at(11, 35)));
        assert!(w.is_stuck(at(11, 34)) && !w.redrives(at(11, 34)));
    }

    #[test]
    fn an_unrecorded_object_of_the_stream_processor_is_an_orphan() {
        let mut metadata = std::collections::BTreeMap::new();
        assert_eq!(unrecorded(&metadata), Unrecorded::Stuck);
        metadata.insert("correlation-id".to_owned(), "r".to_owned());
        assert_eq!(unrecorded(&metadata), Unrecorded::Stuck);
        metadata.insert(crate::keys::RAW_SHA256_METADATA.to_owned(), "ab".to_owned());
        assert_eq!(unrecorded(&metadata), Unrecorded::Orphan);
    }

    proptest! {
        /// Runs `period` apart re-drive every stuck object twice; runs each up to a period late,
        /// at least once and at most three times.
        #[test]
        fn every_stuck_object_is_redriven_at_least_once(written_secs in 0i64..12_000, late in prop::collection::vec(0i64..300, 48)) {
            let base = at(0, 0);
            let (stuck_after, period) = (Duration::minutes(15), Duration::minutes(5));
            let written = base + Duration::seconds(written_secs);
            let count = |late: &dyn Fn(usize) -> i64| (0..48)
                .map(|i| base + period * i as i32 + Duration::seconds(late(i)))
                .filter(|&now| Window::new(now, stuck_after, period).redrives(written))
                .count();
            prop_assert_eq!(count(&|_| late[0]), 2);
            let jittered = count(&|i| late[i]);
            prop_assert!((1..=3).contains(&jittered), "{} re-drives", jittered);
        }

        /// Every raw key written in the window falls under one of the prefixes listed.
        #[test]
        fn the_window_covers_every_object_written_in_it(minutes_ago in 0i64..(72 * 60), lookback in 0i64..(72 * 60), now_secs in 1_700_000_000i64..1_900_000_000) {
            let now = DateTime::from_timestamp(now_secs, 0).unwrap();
            let written = now - Duration::minutes(minutes_ago);
            let key = crate::keys::raw_key("shardId-000000000000", "1", written);
            let prefixes = raw_hour_prefixes(now, Duration::minutes(lookback));
            prop_assert_eq!(prefixes.iter().any(|p| key.starts_with(p.as_str())), minutes_ago <= lookback || written.format("%Y%m%d%H").to_string() == (now - Duration::minutes(lookback)).format("%Y%m%d%H").to_string());
            prop_assert!(prefixes.len() as i64 <= lookback / 60 + 2);
        }
    }
}
