//! The auditor's decisions: which raw objects to look at, and which of them are stuck.
//!
//! An S3 notification can expire (the transformer's maximum event age) or, as AWS documents, be
//! dropped; the stream processor can die between writing a raw object and recording it. Then a raw
//! object exists that nobody will process. The auditor lists the recent `raw/` hours, and a raw
//! object older than `stuck_after` that is not processed in its current content is stuck.

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

/// What the metadata table says of a raw object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFacts {
    /// The SHA-256 of the content it was recorded with (the stream processor's, or a registration).
    pub raw_sha256: Option<String>,
    /// The SHA-256 of the content that was processed, when it was.
    pub processed_sha256: Option<String>,
}

/// What the auditor found about one raw object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Processed in the content it was recorded with.
    Processed,
    /// Younger than `stuck_after`: its notification may still be on its way.
    Young,
    /// Stuck: nobody will process it unless it is redriven.
    Stuck(Stuck),
}

/// Why a raw object is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stuck {
    /// No metadata item: the writer died before recording it, or it came from another writer.
    NoItem,
    /// Recorded but not processed: its notification expired or was dropped.
    NotProcessed,
    /// Processed, but in another content than the one recorded now: the rewrite's notification
    /// was lost.
    ContentChanged,
}

impl Stuck {
    pub fn as_str(self) -> &'static str {
        match self {
            Stuck::NoItem => "no_item",
            Stuck::NotProcessed => "not_processed",
            Stuck::ContentChanged => "content_changed",
        }
    }
}

/// The finding for a raw object last modified at `last_modified`.
pub fn assess(
    last_modified: DateTime<Utc>,
    item: Option<&ItemFacts>,
    now: DateTime<Utc>,
    stuck_after: Duration,
) -> Finding {
    let processed =
        |i: &ItemFacts| i.processed_sha256.is_some() && i.processed_sha256 == i.raw_sha256;
    match item {
        Some(i) if processed(i) => Finding::Processed,
        _ if now - last_modified < stuck_after => Finding::Young,
        None => Finding::Stuck(Stuck::NoItem),
        Some(i) if i.processed_sha256.is_some() => Finding::Stuck(Stuck::ContentChanged),
        Some(_) => Finding::Stuck(Stuck::NotProcessed),
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
    fn stuck_objects_and_why() {
        let now = at(12, 0);
        let stuck = Duration::minutes(15);
        let old = at(11, 0);
        let item = |raw: &str, done: Option<&str>| ItemFacts {
            raw_sha256: Some(raw.into()),
            processed_sha256: done.map(Into::into),
        };
        assert_eq!(assess(old, None, now, stuck), Finding::Stuck(Stuck::NoItem));
        assert_eq!(assess(at(11, 50), None, now, stuck), Finding::Young);
        assert_eq!(
            assess(old, Some(&item("a", None)), now, stuck),
            Finding::Stuck(Stuck::NotProcessed)
        );
        assert_eq!(
            assess(old, Some(&item("b", Some("a"))), now, stuck),
            Finding::Stuck(Stuck::ContentChanged)
        );
        assert_eq!(
            assess(old, Some(&item("a", Some("a"))), now, stuck),
            Finding::Processed
        );
        assert_eq!(
            assess(at(11, 59), Some(&item("a", Some("a"))), now, stuck),
            Finding::Processed
        );
    }

    proptest! {
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
