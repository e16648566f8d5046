//! Properties of the metadata table's contract: the computed item size never underestimates
//! DynamoDB's documented rules, and is exact where the rules are exact; a raw object's pending
//! bucket is deterministic and in range; output pages hold every key once, in order, each page
//! within its budget and as full as it allows.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use pipeline_core::metadata::{
    AttributeValue as V, MAX_ITEM_SIZE, NUMBER_MAX_SIZE, OUTPUT_PAGE_BUDGET, PENDING_BUCKETS,
    item_size, number_size, output_page_item, output_page_key, paginate, pending_bucket,
    pending_value, pending_values, value_size,
};
use proptest::prelude::*;

/// A decimal number as parts, so that the reference can count its significant digits its own way.
#[derive(Debug, Clone)]
struct Decimal {
    negative: bool,
    integer: String,
    fraction: String,
}

impl Decimal {
    fn text(&self) -> String {
        let sign = if self.negative { "-" } else { "" };
        if self.fraction.is_empty() {
            format!("{sign}{}", self.integer)
        } else {
            format!("{sign}{}.{}", self.integer, self.fraction)
        }
    }

    /// The documented estimate: 1 byte per two significant digits, plus 1 byte, where the
    /// significant digits are all digits with leading and trailing zeroes trimmed.
    fn documented_size(&self) -> usize {
        let digits = format!("{}{}", self.integer, self.fraction);
        let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
        significant.div_ceil(2) + 1
    }
}

fn decimal() -> impl Strategy<Value = Decimal> {
    // At most 38 significant digits, as DynamoDB accepts.
    (any::<bool>(), "[0-9]{1,19}", "[0-9]{0,19}").prop_map(|(negative, integer, fraction)| {
        Decimal {
            negative,
            integer,
            fraction,
        }
    })
}

/// An owned value tree, so that proptest can generate nested values.
#[derive(Debug, Clone)]
enum Tree {
    S(String),
    N(Decimal),
    B(Vec<u8>),
    Bool(bool),
    Null,
    Ss(Vec<String>),
    Ns(Vec<Decimal>),
    L(Vec<Tree>),
    M(Vec<(String, Tree)>),
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        "\\PC{0,40}".prop_map(Tree::S),
        decimal().prop_map(Tree::N),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Tree::B),
        any::<bool>().prop_map(Tree::Bool),
        Just(Tree::Null),
        prop::collection::vec("\\PC{0,20}", 1..6).prop_map(Tree::Ss),
        prop::collection::vec(decimal(), 1..6).prop_map(Tree::Ns),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Tree::L),
            prop::collection::vec(("[a-z_]{1,12}", inner), 0..6).prop_map(Tree::M),
        ]
    })
}

fn value(t: &Tree) -> V<'_> {
    match t {
        Tree::S(s) => V::S(s),
        Tree::N(d) => V::N(d.text()),
        Tree::B(b) => V::B(b),
        Tree::Bool(b) => V::Bool(*b),
        Tree::Null => V::Null,
        Tree::Ss(v) => V::Ss(v.iter().map(String::as_str).collect()),
        Tree::Ns(v) => V::Ns(v.iter().map(Decimal::text).collect()),
        Tree::L(v) => V::L(v.iter().map(value).collect()),
        Tree::M(v) => V::M(v.iter().map(|(k, t)| (k.as_str(), value(t))).collect()),
    }
}

/// The documented rules, written independently: exact for strings, binary, booleans, null, lists
/// and maps; the estimate for numbers; sets as the bare sum of their elements (the least any rule
/// could give them).
fn documented(t: &Tree) -> usize {
    match t {
        Tree::S(s) => s.len(),
        Tree::N(d) => d.documented_size(),
        Tree::B(b) => b.len(),
        Tree::Bool(_) | Tree::Null => 1,
        Tree::Ss(v) => v.iter().map(String::len).sum(),
        Tree::Ns(v) => v.iter().map(Decimal::documented_size).sum(),
        Tree::L(v) => 3 + v.iter().map(|e| documented(e) + 1).sum::<usize>(),
        Tree::M(v) => {
            3 + v
                .iter()
                .map(|(k, e)| k.len() + documented(e) + 1)
                .sum::<usize>()
        }
    }
}

/// Whether the documented rules for this value are exact (no number, no set inside).
fn exact(t: &Tree) -> bool {
    match t {
        Tree::S(_) | Tree::B(_) | Tree::Bool(_) | Tree::Null => true,
        Tree::N(_) | Tree::Ss(_) | Tree::Ns(_) => false,
        Tree::L(v) => v.iter().all(exact),
        Tree::M(v) => v.iter().all(|(_, e)| exact(e)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn a_number_is_never_smaller_than_the_documented_estimate(d in decimal()) {
        let size = number_size(&d.text());
        prop_assert!(size >= d.documented_size(), "{}: {size} < {}", d.text(), d.documented_size());
        // And never more than a digit pair, the sign and the exponent byte away from it.
        prop_assert!(size <= d.documented_size() + 2, "{}: {size}", d.text());
    }

    #[test]
    fn the_item_size_never_underestimates_and_is_exact_where_the_rules_are(
        attributes in prop::collection::vec(("[a-z_]{1,16}", tree()), 0..8),
    ) {
        let item: Vec<(&str, V<'_>)> =
            attributes.iter().map(|(k, t)| (k.as_str(), value(t))).collect();
        let reference: usize = attributes.iter().map(|(k, t)| k.len() + documented(t)).sum();
        let size = item_size(&item);
        prop_assert!(size >= reference, "{size} < {reference}");
        if attributes.iter().all(|(_, t)| exact(t)) {
            prop_assert_eq!(size, reference);
        }
        // Additive: an item is the sum of its attributes.
        let sum: usize = item.iter().map(|(k, v)| k.len() + value_size(v)).sum();
        prop_assert_eq!(size, sum);
    }
}

/// Output keys as the transformer names them: any event type the contract allows, any hour, a
/// shard id and a 56-digit sequence number.
fn output_key() -> impl Strategy<Value = String> {
    ("[a-z][a-z0-9_.]{0,63}", 0u32..24, "[0-9]{56}").prop_map(|(ty, hour, seq)| {
        format!("processed/event_type={ty}/dt=2026-11-25/hour={hour:02}/shardId-000000000000-{seq}.parquet")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn a_pending_bucket_is_deterministic_and_in_range(raw_key in "\\PC{1,200}") {
        let bucket = pending_bucket(&raw_key);
        prop_assert!(bucket < PENDING_BUCKETS);
        prop_assert_eq!(bucket, pending_bucket(&raw_key.clone()));
        prop_assert!(pending_values().contains(&pending_value(bucket)));
    }

    #[test]
    fn output_pages_hold_every_key_once_in_order_within_their_budget(
        keys in prop::collection::vec(output_key(), 0..1500),
        generation in any::<u64>(),
        expires_at in any::<i64>(),
    ) {
        let raw = "raw/dt=2026-11-25/hour=10/shard=shardId-000000000000/49590338271490256608559692538361571095921575989136588898.jsonl.gz";
        let pages = paginate(raw, &keys);
        prop_assert_eq!(pages.concat(), keys.clone());
        prop_assert_eq!(pages.is_empty(), keys.is_empty());
        for (i, page) in pages.iter().enumerate() {
            prop_assert!(!page.is_empty());
            let key = output_page_key(raw, generation, i as u32);
            let size = item_size(&output_page_item(&key, raw, page, expires_at));
            prop_assert!(size <= OUTPUT_PAGE_BUDGET && OUTPUT_PAGE_BUDGET < MAX_ITEM_SIZE, "page {i}: {size}");
            // As full as the budget allows: the next page's first key would not have fitted.
            if let Some(next) = pages.get(i + 1) {
                let mut more = page.to_vec();
                more.push(next[0].clone());
                // With the widest page key and expiry paginate reserves room for.
                let widest = output_page_key(raw, u64::MAX, u32::MAX);
                let fuller = item_size(&output_page_item(&widest, raw, &more, 0)) - number_size("0")
                    + NUMBER_MAX_SIZE;
                prop_assert!(fuller > OUTPUT_PAGE_BUDGET, "page {i} could hold one more key");
            }
        }
        prop_assert_eq!(paginate(raw, &keys), pages, "deterministic");
    }
}
