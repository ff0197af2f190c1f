//! EPC069-12 version 002, "Quick Response Code: Guidelines to Enable Data Capture for the
//! Initiation of a SEPA Credit Transfer" (the "GiroCode" banking apps scan).
//!
//! It must never shorten, round or rewrite a field to make it fit: a code whose amount or
//! beneficiary differs from the text beside it is refused with the reason instead.

use rust_decimal::Decimal;

use super::{compact, money};

/// EPC069-12 limits (version 002).
const NAME_MAX: usize = 70;
const IBAN_MAX: usize = 34;
const UNSTRUCTURED_MAX: usize = 140;
pub const PAYLOAD_MAX_BYTES: usize = 331;
/// 0.01 and 999999999.99 as 96-bit mantissa and scale: `Decimal::new` is not `const`, and a
/// float literal would not be exact. 99999999999 = 0x17_4876_E7FF.
pub const AMOUNT_MIN: Decimal = Decimal::from_parts(1, 0, 0, false, 2);
pub const AMOUNT_MAX: Decimal = Decimal::from_parts(0x4876_E7FF, 0x17, 0, false, 2);

/// One SEPA credit transfer, as the payer's bank should prefill it.
pub struct CreditTransfer<'a> {
    pub bic: Option<&'a str>,
    /// The beneficiary's name, not empty.
    pub name: &'a str,
    pub iban: &'a str,
    pub amount: Option<Decimal>,
    /// An ISO 11649 creditor reference travels structured; anything else as remittance text.
    pub reference: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum EpcError {
    #[error("{field} \"{value}\" has {len} characters; a GiroCode allows at most {limit}")]
    TooLong {
        field: &'static str,
        value: String,
        len: usize,
        limit: usize,
    },
    #[error("{field} {value:?} contains a line break, which would corrupt the GiroCode's lines")]
    LineBreak { field: &'static str, value: String },
    #[error("amount {value} has {decimals} decimals; a GiroCode allows at most 2")]
    AmountDecimals { value: Decimal, decimals: u32 },
    #[error("amount {value} is under 0.01, the least a GiroCode can carry")]
    AmountTooSmall { value: Decimal },
    #[error("amount {value} is over 999999999.99, the most a GiroCode can carry")]
    AmountTooLarge { value: Decimal },
    #[error("the GiroCode payload has {bytes} bytes; EPC069-12 allows at most {limit}")]
    PayloadTooLong { bytes: usize, limit: usize },
}

/// The GiroCode payload of `transfer`.
pub fn girocode(transfer: &CreditTransfer<'_>) -> Result<String, EpcError> {
    let name = transfer.name.trim();
    no_line_break("creditor_name", name)?;
    within("beneficiary name", name, NAME_MAX)?;
    let iban = compact(transfer.iban);
    within("IBAN", &iban, IBAN_MAX)?;
    let bic = transfer.bic.map(compact).unwrap_or_default();
    let amount = match transfer.amount {
        Some(a) => format!("EUR{}", amount(a)?),
        None => String::new(),
    };
    // Structured and unstructured remittance are exclusive: a bank given both may drop the
    // structured one, and with it the automatic match to the order.
    let (structured, unstructured) = match rf_reference(transfer.reference) {
        Some(rf) => (rf, String::new()),
        None => {
            let text = transfer.reference.trim();
            no_line_break("creditor_reference", text)?;
            within("remittance text", text, UNSTRUCTURED_MAX)?;
            (String::new(), text.to_string())
        }
    };
    let mut lines = vec![
        "BCD".to_string(), // service tag
        "002".to_string(), // version
        "1".to_string(),   // character set: UTF-8
        "SCT".to_string(), // SEPA credit transfer
        bic,
        name.to_string(),
        iban,
        amount,
        String::new(), // purpose code
        structured,
        unstructured,
        String::new(), // beneficiary-to-originator information
    ];
    // Version 002: the last populated element is not followed by a line break.
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let payload = lines.join("\n");
    if payload.len() > PAYLOAD_MAX_BYTES {
        return Err(EpcError::PayloadTooLong {
            bytes: payload.len(),
            limit: PAYLOAD_MAX_BYTES,
        });
    }
    Ok(payload)
}

/// The amount as EPC069-12 writes it: a dot and exactly two decimals.
fn amount(amount: Decimal) -> Result<String, EpcError> {
    // 100.000 is still 100.00; only digits that would be lost are refused.
    let decimals = amount.normalize().scale();
    if decimals > 2 {
        return Err(EpcError::AmountDecimals {
            value: amount,
            decimals,
        });
    }
    if amount < AMOUNT_MIN {
        return Err(EpcError::AmountTooSmall { value: amount });
    }
    if amount > AMOUNT_MAX {
        return Err(EpcError::AmountTooLarge { value: amount });
    }
    Ok(money(amount))
}

/// The reference in electronic form if it is a valid ISO 11649 creditor reference ("RF", two
/// check digits, up to 21 letters or digits, mod 97 = 1). A bank rejects a structured reference
/// that fails the check, so anything else travels as unstructured text instead.
fn rf_reference(reference: &str) -> Option<String> {
    let rf = compact(reference);
    let b = rf.as_bytes();
    let shape = (5..=25).contains(&b.len())
        && b.starts_with(b"RF")
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphanumeric);
    if !shape {
        return None;
    }
    let remainder = b[4..].iter().chain(&b[..4]).fold(0u32, |acc, &c| {
        if c.is_ascii_digit() {
            (acc * 10 + u32::from(c - b'0')) % 97
        } else {
            (acc * 100 + u32::from(c - b'A' + 10)) % 97
        }
    });
    (remainder == 1).then_some(rf)
}

fn within(field: &'static str, value: &str, limit: usize) -> Result<(), EpcError> {
    let len = value.chars().count();
    if len > limit {
        return Err(EpcError::TooLong {
            field,
            value: value.to_string(),
            len,
            limit,
        });
    }
    Ok(())
}

fn no_line_break(field: &'static str, value: &str) -> Result<(), EpcError> {
    if value.contains(['\n', '\r']) {
        return Err(EpcError::LineBreak {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_amount_limits_are_exact_and_a_too_long_payload_is_refused() {
        assert_eq!(AMOUNT_MIN.to_string(), "0.01");
        assert_eq!(AMOUNT_MAX.to_string(), "999999999.99");
        // 70 + 34 + 140 characters of three-byte letters are over 331 bytes.
        let name = "€".repeat(70);
        let reference = "€".repeat(140);
        let err = girocode(&CreditTransfer {
            bic: None,
            name: &name,
            iban: "CH9400778214768302002",
            amount: None,
            reference: &reference,
        })
        .unwrap_err();
        assert!(
            matches!(err, EpcError::PayloadTooLong { limit: 331, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn only_a_reference_with_a_valid_check_is_structured() {
        assert_eq!(rf_reference("rf18 gw8k79").as_deref(), Some("RF18GW8K79"));
        assert_eq!(rf_reference("RF19GW8K79"), None);
        assert_eq!(rf_reference("POCKET-4711"), None);
    }
}
