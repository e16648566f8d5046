//! The metadata table's contract as pure functions: the size DynamoDB gives an item, checked
//! against its 400 KB item limit.
//!
//! The rules are DynamoDB's "item sizes and formats" page
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>)
//! and the item limit its constraints page
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html#limits-items>,
//! where 1 KB = 1,024 bytes). Where the page gives an approximation (numbers) or no rule (sets),
//! [`value_size`] errs on the large side: a computed size never underestimates.

/// DynamoDB's maximum item size: 400 KB, attribute names and values together.
pub const MAX_ITEM_SIZE: usize = 400 * 1024;

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
}
