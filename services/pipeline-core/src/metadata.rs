//! The metadata table's contract as pure functions: the size DynamoDB gives an item (checked
//! against its 400 KB item limit), the buckets of the sparse pending index, and the pages that
//! hold a raw object's output keys, so that no item grows with the number of outputs.
//!
//! ## Item size
//!
//! The rules are DynamoDB's "item sizes and formats" page
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>)
//! and the item limit its constraints page
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html#limits-items>,
//! where 1 KB = 1,024 bytes). Where the page gives an approximation (numbers) or no rule (sets),
//! [`value_size`] errs on the large side: a computed size never underestimates.

use sha2::{Digest, Sha256};

/// DynamoDB's maximum item size: 400 KB, attribute names and values together.
pub const MAX_ITEM_SIZE: usize = 400 * 1024;

/// The attribute holding a raw object's [`Status`].
pub const STATUS_ATTRIBUTE: &str = "status";

/// Where a raw object is: recorded by the stream processor (or registered by the transformer),
/// then processed by the transformer. One definition for every reader and writer of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    RawWritten,
    Processed,
}

impl Status {
    pub const ALL: [Status; 2] = [Status::RawWritten, Status::Processed];

    /// The value the table stores.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::RawWritten => "RAW_WRITTEN",
            Status::Processed => "PROCESSED",
        }
    }

    /// `None` for a value no [`Status::as_str`] gives.
    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table's hash key: a raw object's key, or an output page's key ([`output_page_key`]).
pub const HASH_KEY: &str = "raw_key";
/// The table's TTL attribute (Unix seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The sparse attribute that puts a raw object in the pending index until it is processed.
pub const PENDING_ATTRIBUTE: &str = "pending";
/// When the stream processor recorded the raw object (RFC 3339 UTC): the pending index's range key.
pub const WRITTEN_AT_ATTRIBUTE: &str = "raw_written_at";
/// The index of raw objects not processed yet, by bucket and age.
pub const PENDING_INDEX: &str = "pending-by-age";
/// What the pending index projects: its keys (`raw_key`, `pending`, `raw_written_at`) are all its
/// queries need, and no other attribute's update writes to the index.
pub const PENDING_INDEX_PROJECTION: &str = "KEYS_ONLY";
/// How many values `pending` takes: the pending index's partition keys. Every raw object's
/// writes go to one of them, so no index partition takes all the writes; finding the objects
/// not processed after some time takes one query per bucket.
pub const PENDING_BUCKETS: u32 = 16;
const _: () = assert!(PENDING_BUCKETS >= 1 && PENDING_BUCKETS <= 100);

/// The bucket of a raw object: the first 8 bytes of the SHA-256 of its key, big endian, modulo
/// [`PENDING_BUCKETS`]. Deterministic, so a rewrite of the object lands in the same bucket.
pub fn pending_bucket(raw_key: &str) -> u32 {
    let digest = Sha256::digest(raw_key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(PENDING_BUCKETS)) as u32
}

/// The value of `pending` for a bucket: `PENDING#00` … `PENDING#15`.
pub fn pending_value(bucket: u32) -> String {
    format!("PENDING#{bucket:02}")
}

/// The value of `pending` for a raw object.
pub fn pending_value_of(raw_key: &str) -> String {
    pending_value(pending_bucket(raw_key))
}

/// Every value `pending` takes, in bucket order: one query each finds every pending object.
pub fn pending_values() -> Vec<String> {
    (0..PENDING_BUCKETS).map(pending_value).collect()
}

/// An output page's attribute holding its share of the output keys, a list of strings in order.
pub const OUTPUT_KEYS_ATTRIBUTE: &str = "output_keys";
/// An output page's attribute naming the raw object whose outputs it holds.
pub const PAGE_OF_ATTRIBUTE: &str = "page_of";
/// The most an output page item may weigh: a sixth of the item limit, about 500 keys of this
/// pipeline's length. Each page is one request's worth of work, and far from the limit.
pub const OUTPUT_PAGE_BUDGET: usize = 64 * 1024;

/// The key of page `index` of generation `generation` of a raw object's output set:
/// `<raw key>#outputs/<generation>/<index>`. A raw key never contains `#`, so this is never a raw
/// key, and it sorts next to its raw key.
pub fn output_page_key(raw_key: &str, generation: u64, index: u32) -> String {
    format!("{raw_key}#outputs/{generation}/{index}")
}

/// The attributes of an output page item, as the table stores it.
pub fn output_page_item<'a>(
    page_key: &'a str,
    raw_key: &'a str,
    keys: &'a [String],
    expires_at: i64,
) -> Vec<(&'static str, AttributeValue<'a>)> {
    vec![
        (HASH_KEY, AttributeValue::S(page_key)),
        (PAGE_OF_ATTRIBUTE, AttributeValue::S(raw_key)),
        (
            OUTPUT_KEYS_ATTRIBUTE,
            AttributeValue::L(keys.iter().map(|k| AttributeValue::S(k)).collect()),
        ),
        (TTL_ATTRIBUTE, AttributeValue::number(expires_at)),
    ]
}

/// Splits `keys` into the pages of an output set, in order: each page as full as
/// [`OUTPUT_PAGE_BUDGET`] allows, whatever its generation, index and expiry. No key is longer than
/// an S3 key (1,024 bytes), so every page holds at least one.
pub fn paginate<'a>(raw_key: &str, keys: &'a [String]) -> Vec<&'a [String]> {
    let widest_key = output_page_key(raw_key, u64::MAX, u32::MAX);
    let empty = item_size(&output_page_item(&widest_key, raw_key, &[], 0)) - number_size("0")
        + NUMBER_MAX_SIZE;
    let mut pages = Vec::new();
    let (mut start, mut size) = (0, empty);
    for (i, key) in keys.iter().enumerate() {
        // A string in a list: its bytes plus one byte of element overhead.
        let grows = key.len() + ELEMENT_OVERHEAD;
        if i > start && size + grows > OUTPUT_PAGE_BUDGET {
            pages.push(&keys[start..i]);
            (start, size) = (i, empty);
        }
        size += grows;
    }
    if start < keys.len() {
        pages.push(&keys[start..]);
    }
    pages
}

/// The largest size [`number_size`] gives a number DynamoDB accepts (at most 38 significant
/// digits): 20 digit pairs, the exponent byte and a sign byte.
pub const NUMBER_MAX_SIZE: usize = 22;

/// Overhead of a list or a map, whatever its contents.
const COLLECTION_OVERHEAD: usize = 3;
/// Overhead of each element of a list or a map.
const ELEMENT_OVERHEAD: usize = 1;

/// An attribute value as DynamoDB types it; numbers are their decimal text, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue<'a> {
    S(&'a str),
    N(String),
    B(&'a [u8]),
    Bool(bool),
    Null,
    Ss(Vec<&'a str>),
    Ns(Vec<String>),
    Bs(Vec<&'a [u8]>),
    L(Vec<AttributeValue<'a>>),
    M(Vec<(&'a str, AttributeValue<'a>)>),
}

impl AttributeValue<'_> {
    pub fn number(n: impl ToString) -> Self {
        AttributeValue::N(n.to_string())
    }
}

/// The size of an item: the sum over its attributes of the UTF-8 length of the name and the size
/// of the value.
pub fn item_size(attributes: &[(&str, AttributeValue<'_>)]) -> usize {
    attributes
        .iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

/// The size of a value without its name.
///
/// - strings: their UTF-8 length; binary: its raw length; null and booleans: 1 byte;
/// - numbers: see [`number_size`];
/// - lists and maps: 3 bytes, plus each element's size (a map element's name included) and 1
///   byte per element;
/// - sets: the page gives no rule, so they count as a list of their elements would (3 bytes plus
///   1 byte per element on top of the elements), which is never less than the elements alone.
pub fn value_size(value: &AttributeValue<'_>) -> usize {
    use AttributeValue as V;
    let collection =
        |elements: usize, sizes: usize| COLLECTION_OVERHEAD + elements * ELEMENT_OVERHEAD + sizes;
    match value {
        V::S(s) => s.len(),
        V::N(n) => number_size(n),
        V::B(b) => b.len(),
        V::Bool(_) | V::Null => 1,
        V::Ss(v) => collection(v.len(), v.iter().map(|s| s.len()).sum()),
        V::Ns(v) => collection(v.len(), v.iter().map(|n| number_size(n)).sum()),
        V::Bs(v) => collection(v.len(), v.iter().map(|b| b.len()).sum()),
        V::L(v) => collection(v.len(), v.iter().map(value_size).sum()),
        V::M(v) => collection(
            v.len(),
            v.iter().map(|(k, value)| k.len() + value_size(value)).sum(),
        ),
    }
}

/// The size of a number, from its decimal text.
///
/// DynamoDB's page says "approximately 1 byte per two significant digits, plus 1 byte", leading
/// and trailing zeroes trimmed. Digits are stored in pairs aligned on the decimal point, so this
/// counts the pairs of the integer part and of the fraction separately (a pair can straddle
/// neither), drops whole pairs of zeroes at either end, adds the exponent byte and, for a
/// negative number, a sign byte; that is never less than the page's estimate, and at most two
/// bytes more. Exponent notation, which this pipeline never
/// writes, counts as [`NUMBER_MAX_SIZE`].
pub fn number_size(text: &str) -> usize {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if unsigned.contains(['e', 'E']) {
        return NUMBER_MAX_SIZE;
    }
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let integer = integer.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let mut pairs = integer.len().div_ceil(2) + fraction.len().div_ceil(2);
    // Whole pairs of zeroes at either end of the digits go into the exponent.
    if fraction.is_empty() {
        pairs -= (integer.len() - integer.trim_end_matches('0').len()) / 2;
    }
    if integer.is_empty() {
        pairs -= (fraction.len() - fraction.trim_start_matches('0').len()) / 2;
    }
    (pairs + 1 + usize::from(negative && pairs > 0)).min(NUMBER_MAX_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttributeValue as V;

    #[test]
    fn every_status_reads_back_and_nothing_else_does() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        assert_eq!(Status::parse("processed"), None);
        assert_eq!(Status::parse(""), None);
    }

    #[test]
    fn sizes_follow_the_documented_rules() {
        // Strings and binary: name bytes plus value bytes, UTF-8.
        assert_eq!(item_size(&[("raw_key", V::S("abc"))]), 7 + 3);
        assert_eq!(item_size(&[("k", V::S("café"))]), 1 + 5);
        assert_eq!(item_size(&[("bin", V::B(&[0, 1, 2, 3]))]), 3 + 4);
        assert_eq!(item_size(&[("t", V::Bool(true)), ("n", V::Null)]), 4);
        // Lists and maps: 3 bytes, plus 1 per element.
        assert_eq!(item_size(&[("l", V::L(vec![]))]), 1 + 3);
        assert_eq!(
            item_size(&[("l", V::L(vec![V::S("ab"), V::S("c")]))]),
            1 + 3 + (2 + 1) + (1 + 1)
        );
        assert_eq!(
            item_size(&[("m", V::M(vec![("ab", V::S("xyz"))]))]),
            1 + 3 + (2 + 3 + 1)
        );
        // Numbers: digit pairs plus one byte.
        assert_eq!(number_size("0"), 1);
        assert_eq!(number_size("7"), 2);
        assert_eq!(number_size("12"), 2);
        assert_eq!(number_size("123"), 3);
        assert_eq!(number_size("1.5"), 3);
        assert_eq!(number_size("-12"), 3);
        assert_eq!(number_size("1795600800"), 5);
        assert_eq!(number_size("1000"), 2);
        assert_eq!(number_size("0.005"), 2);
        assert_eq!(number_size("1e5"), NUMBER_MAX_SIZE);
        assert_eq!(number_size(&"9".repeat(38)), 20);
        assert_eq!(MAX_ITEM_SIZE, 409_600);
    }

    #[test]
    fn pending_values_name_their_bucket() {
        assert_eq!(pending_value(0), "PENDING#00");
        assert_eq!(pending_value(15), "PENDING#15");
        assert_eq!(pending_values().len(), PENDING_BUCKETS as usize);
        let key = "raw/dt=2026-11-25/hour=10/shard=shardId-000000000000/4959.jsonl.gz";
        assert_eq!(pending_value_of(key), pending_value(pending_bucket(key)));
    }

    #[test]
    fn raw_keys_spread_evenly_over_the_buckets() {
        // A day of one busy shard's raw keys: one a second.
        let mut counts = [0u32; PENDING_BUCKETS as usize];
        for i in 0..86_400u64 {
            let key = format!(
                "raw/dt=2026-11-25/hour={:02}/shard=shardId-000000000000/49590338271490256608559692{:030}.jsonl.gz",
                i / 3600,
                i * 7919
            );
            counts[pending_bucket(&key) as usize] += 1;
        }
        let mean = 86_400 / PENDING_BUCKETS;
        for (bucket, n) in counts.iter().enumerate() {
            assert!(
                n.abs_diff(mean) < mean / 20,
                "bucket {bucket}: {n} of a mean {mean}"
            );
        }
    }

    #[test]
    fn output_page_keys_are_never_raw_keys() {
        let raw = "raw/dt=2026-11-25/hour=10/shard=shardId-000000000000/4959.jsonl.gz";
        let page = output_page_key(raw, 3, 0);
        assert_eq!(page, format!("{raw}#outputs/3/0"));
        assert!(crate::keys::parse_raw_key(&page).is_none());
    }
}
