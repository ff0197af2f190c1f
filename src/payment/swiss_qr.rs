//! The Swiss QR-bill (Swiss Payment Standards, "SPC" header): a line-structured document whose
//! every field, amount and reference included, the issuer wrote.
//!
//! satflow never builds one: Pocket issues it with the order and it is passed on byte for byte.
//! This module must never trim, re-encode or fill in any of it; a bill that differs from the
//! issued one is a payment that cannot be matched.

/// The payload to show as a QR code: the issued bill unchanged, if there is one that is not
/// blank.
pub fn payload(issued: Option<&str>) -> Option<String> {
    issued
        .filter(|bill| !bill.trim().is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bill_is_passed_on_byte_for_byte_and_a_blank_one_is_none() {
        let bill = "SPC\n0200\n1\nCH9400778214768302002\nS\nPocket App\r\n";
        assert_eq!(payload(Some(bill)).as_deref(), Some(bill));
        assert_eq!(payload(Some(" \n")), None);
        assert_eq!(payload(None), None);
    }
}
