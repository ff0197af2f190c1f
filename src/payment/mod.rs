//! What a bank reads to pay: the payloads of the banking standards satflow shows as QR codes,
//! EPC069-12 "GiroCode" for SEPA transfers (`epc`) and the Swiss QR-bill (`swiss_qr`).
//!
//! Nothing here knows who issued the payment data (Pocket, for now) or how a code is drawn
//! (`crate::qr`). It must never invent, round or "fix" payment data: what cannot be carried
//! exactly is refused, never approximated.

pub mod epc;
pub mod swiss_qr;

use rust_decimal::Decimal;

/// Two decimals at least, never fewer digits than given: showing money must not round it.
pub fn money(amount: Decimal) -> String {
    let mut shown = amount.normalize();
    if shown.scale() < 2 {
        shown.rescale(2);
    }
    shown.to_string()
}

/// The electronic form of an IBAN, BIC or reference: no spaces, uppercase.
pub fn compact(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}
