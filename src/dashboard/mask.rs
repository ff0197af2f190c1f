//! Masks IBANs in text bound for a page: every IBAN-shaped run (two letters, two check digits,
//! 11 to 30 letters or digits, optionally grouped by single spaces) keeps only its last four
//! characters. Applied to whole pages, so no template can forget it.
//!
//! It must never change text that is not IBAN-shaped (addresses, txids and invoices are lowercase
//! or do not start with two capitals and two digits).

/// `text` with each IBAN shown as `••••` and its last four characters.
pub fn mask_ibans(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i + 4 <= bytes.len() {
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if boundary
            && bytes[i].is_ascii_uppercase()
            && bytes[i + 1].is_ascii_uppercase()
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit()
            && let Some((end, compact)) = iban_at(bytes, i)
        {
            out.push_str(&text[copied..i]);
            out.push_str("••••");
            out.push_str(&compact[compact.len() - 4..]);
            i = end;
            copied = end;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// The end of the IBAN starting at `start` and its characters without spaces, if one is there.
fn iban_at(bytes: &[u8], start: usize) -> Option<(usize, String)> {
    let mut compact = String::new();
    let mut j = start;
    let mut end = start;
    while j < bytes.len() {
        let b = bytes[j];
        if b.is_ascii_uppercase() || b.is_ascii_digit() {
            compact.push(b as char);
            j += 1;
            end = j;
        } else if b == b' '
            && j + 1 < bytes.len()
            && (bytes[j + 1].is_ascii_uppercase() || bytes[j + 1].is_ascii_digit())
            && compact.len() >= 4
        {
            j += 1;
        } else {
            break;
        }
        if compact.len() > 34 {
            return None;
        }
    }
    // A run followed by lowercase letters is a word, not an IBAN.
    if end < bytes.len() && bytes[end].is_ascii_lowercase() {
        return None;
    }
    (15..=34).contains(&compact.len()).then_some((end, compact))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibans_keep_their_last_four() {
        assert_eq!(
            mask_ibans("pay CH9300762011623852957 now"),
            "pay ••••2957 now"
        );
        assert_eq!(mask_ibans("\"CH93 0076 2011 6238 5295 7\""), "\"••••2957\"");
        assert_eq!(mask_ibans("DE89370400440532013000"), "••••3000");
    }

    #[test]
    fn other_text_is_untouched() {
        for text in [
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
            "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "CH93",
            "run #12 AB12 of 2026-12-02",
            "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypq",
        ] {
            assert_eq!(mask_ibans(text), text);
        }
    }
}
