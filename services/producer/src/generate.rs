//! Realistic synthetic events, reproducible from a seed.

use chrono::{DateTime, Utc};
use pipeline_core::Reason;
use pipeline_core::event::fmt_time;
use pipeline_core::kpl;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Event types and their relative weights: most traffic is browsing, little is buying.
pub const EVENT_TYPES: [(&str, u32); 6] = [
    ("page_view", 55),
    ("click", 25),
    ("add_to_cart", 9),
    ("purchase", 4),
    ("signup", 2),
    ("search", 5),
];

const PATHS: [&str; 6] = [
    "/",
    "/products",
    "/products/42",
    "/cart",
    "/checkout",
    "/account",
];
const COUNTRIES: [&str; 6] = ["DE", "FR", "US", "BR", "JP", "IN"];
const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];

/// The rejection reasons the generator draws its invalid events from: every reason one small plain
/// record triggers. [`invalid`] makes the others too (an oversized `attributes`, broken KPL
/// aggregates), for tests; the generator leaves them out to keep its events small and plain.
pub const INVALID_KINDS: [Reason; 9] = [
    Reason::NotUtf8,
    Reason::InvalidJson,
    Reason::NotAnObject,
    Reason::MissingField,
    Reason::WrongType,
    Reason::InvalidValue,
    Reason::TooDeep,
    Reason::UnsupportedSchemaVersion,
    Reason::OccurredAtOutOfRange,
];

/// One generated event: its bytes, partition key, and whether it is meant to be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub event_id: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub valid: bool,
}

#[derive(Debug)]
pub struct Generator {
    rng: StdRng,
    invalid_ratio: f64,
    run_id: String,
    n: u64,
    users: u32,
}

impl Generator {
    /// `run_id` prefixes every event id, so that runs never collide.
    pub fn new(seed: u64, invalid_ratio: f64, run_id: impl Into<String>) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            invalid_ratio: invalid_ratio.clamp(0.0, 1.0),
            run_id: run_id.into(),
            n: 0,
            users: 5_000,
        }
    }

    pub fn next_event(&mut self, now: DateTime<Utc>) -> Generated {
        self.n += 1;
        let event_id = format!("{}-{:09}", self.run_id, self.n);
        let user = self.rng.random_range(0..self.users);
        let partition_key = format!("user-{user}");
        if self.rng.random_bool(self.invalid_ratio) {
            let kind = INVALID_KINDS[self.rng.random_range(0..INVALID_KINDS.len())];
            return Generated {
                data: invalid(kind, &event_id, now),
                event_id,
                partition_key,
                valid: false,
            };
        }
        let event = self.valid_event(&event_id, user, now);
        Generated {
            event_id,
            partition_key,
            data: event.to_string().into_bytes(),
            valid: true,
        }
    }

    fn valid_event(&mut self, event_id: &str, user: u32, now: DateTime<Utc>) -> Value {
        let total: u32 = EVENT_TYPES.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.random_range(0..total);
        let ty = EVENT_TYPES
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    return true;
                }
                pick -= w;
                false
            })
            .map_or("page_view", |(t, _)| t);
        // Events happen a little before they are sent.
        let occurred = now - chrono::Duration::milliseconds(self.rng.random_range(0..2_000));
        let mut attributes = json!({
            "path": PATHS[self.rng.random_range(0..PATHS.len())],
            "country": COUNTRIES[self.rng.random_range(0..COUNTRIES.len())],
            "device": DEVICES[self.rng.random_range(0..DEVICES.len())],
            "ip": format!("203.0.113.{}", self.rng.random_range(1..255)),
        });
        match ty {
            "add_to_cart" | "purchase" => {
                attributes["sku"] = json!(format!("sku-{:05}", self.rng.random_range(0..20_000)));
                attributes["price_cents"] = json!(self.rng.random_range(199..50_000));
                attributes["currency"] = json!("EUR");
            }
            "signup" => attributes["email"] = json!(format!("user{user}@example.com")),
            "search" => {
                attributes["query"] =
                    json!(["shoes", "laptop", "coffee", "lamp"][self.rng.random_range(0..4)])
            }
            _ => {}
        }
        let mut event = json!({
            "event_id": event_id,
            "event_type": ty,
            "occurred_at": fmt_time(occurred),
            "source": if self.rng.random_bool(0.7) { "web" } else { "ios" },
            "user_id": format!("user-{user}"),
            "session_id": format!("s-{user}-{}", self.n / 50),
            "schema_version": 1,
            "attributes": attributes,
        });
        if self.rng.random_bool(0.05) {
            event["campaign"] = json!("winter-sale");
        }
        event
    }
}

/// A record that the pipeline must quarantine with `reason`: one for every reason of the contract.
pub fn invalid(reason: Reason, event_id: &str, now: DateTime<Utc>) -> Vec<u8> {
    let t = fmt_time(now);
    let base = |extra: &str| {
        format!(r#"{{"event_id":"{event_id}","event_type":"page_view","occurred_at":"{t}","source":"web"{extra}}}"#).into_bytes()
    };
    match reason {
        Reason::NotUtf8 => vec![b'{', 0xff, 0xfe, b'}'],
        Reason::InvalidJson => format!(r#"{{"event_id":"{event_id}","#).into_bytes(),
        Reason::NotAnObject => format!(r#"["{event_id}"]"#).into_bytes(),
        Reason::MissingField => format!(r#"{{"event_id":"{event_id}","occurred_at":"{t}","source":"web"}}"#).into_bytes(),
        Reason::WrongType => base(r#","user_id":42"#),
        Reason::InvalidValue => format!(r#"{{"event_id":"{event_id}","event_type":"9-bad","occurred_at":"{t}","source":"web"}}"#).into_bytes(),
        Reason::TooLarge => base(&format!(
            r#","attributes":{{"blob":"{}"}}"#,
            "x".repeat(pipeline_core::event::ATTRIBUTES_MAX_BYTES)
        )),
        Reason::TooDeep => base(&format!(r#","attributes":{}1{}"#, r#"{"a":"#.repeat(20), "}".repeat(20))),
        Reason::UnsupportedSchemaVersion => base(r#","schema_version":2"#),
        Reason::KplMalformed => [kpl::MAGIC.as_slice(), b"short"].concat(),
        Reason::KplChecksumMismatch => {
            let mut aggregate = kpl::aggregate(&[kpl::SubRecord {
                partition_key: event_id.to_owned(),
                explicit_hash_key: None,
                data: base(""),
            }]);
            if let Some(last) = aggregate.last_mut() {
                *last ^= 1;
            }
            aggregate
        }
        Reason::OccurredAtOutOfRange => {
            format!(r#"{{"event_id":"{event_id}","event_type":"page_view","occurred_at":"2001-01-01T00:00:00Z","source":"web"}}"#).into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::event::validate;

    #[test]
    fn same_seed_same_events_and_validity_as_labelled() {
        let now = Utc::now();
        let mut a = Generator::new(7, 0.2, "run");
        let mut b = Generator::new(7, 0.2, "run");
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..2_000 {
            let (x, y) = (a.next_event(now), b.next_event(now));
            assert_eq!(x, y);
            assert_eq!(
                validate(&x.data, now).is_ok(),
                x.valid,
                "{}",
                String::from_utf8_lossy(&x.data)
            );
            if x.valid { valid += 1 } else { invalid += 1 }
        }
        assert!(
            (300..500).contains(&invalid),
            "about 20% invalid, got {invalid} of {}",
            valid + invalid
        );
    }

    #[test]
    fn every_reason_has_a_record_that_is_rejected_with_it() {
        let now = Utc::now();
        for reason in Reason::ALL {
            let data = invalid(reason, "e", now);
            let got = if kpl::is_aggregated(&data) {
                kpl::deaggregate(&data).unwrap_err().reason
            } else {
                validate(&data, now).unwrap_err().reason
            };
            assert_eq!(got, reason);
        }
        for reason in INVALID_KINDS {
            let data = invalid(reason, "e", now);
            assert!(!kpl::is_aggregated(&data) && data.len() < 1024, "{reason}");
        }
    }
}
