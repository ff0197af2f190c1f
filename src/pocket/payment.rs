//! Payment instructions for a standing order, with a scannable QR code.
//!
//! After Pocket creates a standing order, the money only arrives once the user sets up a
//! matching standing order in their own bank. This module turns Pocket's `payment_method` into
//! what that person needs: a text to copy, and — where a banking standard exists — a QR code a
//! banking app can scan (EPC069-12 "GiroCode" for EUR, Pocket's own Swiss QR-bill for CHF).
//!
//! It must never invent, round or "fix" payment data: an IBAN, a reference or an amount that
//! reaches a bank differently from how Pocket issued it sends money nowhere, or to an order it
//! cannot be matched to. What cannot be represented exactly is refused, never approximated.
//!
//! Pocket's part is here (its `payment_method` and the text a person copies); the banking
//! standards' payloads are in `crate::payment`, the drawing of the QR code in `crate::qr`.

use std::path::Path;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::domain::Currency;
use crate::payment::epc::{self, CreditTransfer, EpcError};
use crate::payment::{compact, money, swiss_qr};
use crate::qr::QrError;

/// What a bank needs to pay into a Pocket order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct PaymentInstructions {
    /// As Pocket writes it: eur | chf | gbp.
    pub currency: String,
    pub creditor_name: String,
    pub creditor_iban: String,
    /// Pocket calls it `creditor_bank_bic`; the alias lets the raw object deserialise too.
    #[serde(alias = "creditor_bank_bic")]
    pub creditor_bic: Option<String>,
    pub creditor_reference: String,
    pub creditor_street: Option<String>,
    pub creditor_postal_code: Option<String>,
    pub creditor_town: Option<String>,
    pub creditor_country: Option<String>,
    pub creditor_bank_name: Option<String>,
    /// Banks outside SEPA (a GBP payment, say) may ask for the beneficiary bank's address.
    pub creditor_bank_street: Option<String>,
    pub creditor_bank_postal_code: Option<String>,
    pub creditor_bank_town: Option<String>,
    pub creditor_bank_country: Option<String>,
    /// The account Pocket expects the money from; shown so the user pays from that one.
    pub debitor_iban: Option<String>,
    pub swiss_qr_bill_payload: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("Pocket's payment_method is not a JSON object")]
    NotAnObject,
    #[error("Pocket's payment_method has no `{field}`; without it the bank cannot pay the order")]
    MissingField { field: &'static str },
    #[error("Pocket's payment_method has `{field}` = {value}; expected text")]
    NotText { field: &'static str, value: String },
    #[error(transparent)]
    Epc(#[from] EpcError),
    #[error(transparent)]
    Qr(#[from] QrError),
}

impl PaymentInstructions {
    /// Reads the instructions from a `payment_method` JSON object; names the missing field.
    pub fn from_payment_method(v: &Value) -> Result<Self, PaymentError> {
        let object = v.as_object().ok_or(PaymentError::NotAnObject)?;
        let optional = |field: &'static str| -> Result<Option<String>, PaymentError> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(other) => Err(PaymentError::NotText {
                    field,
                    value: other.to_string(),
                }),
            }
        };
        let required = |field: &'static str| -> Result<String, PaymentError> {
            optional(field)?.ok_or(PaymentError::MissingField { field })
        };
        // The QR-bill payload is a line-structured document of its own: passed on untrimmed.
        let swiss_qr_bill_payload = match object.get("swiss_qr_bill_payload") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            _ => {
                optional("swiss_qr_bill_payload")?;
                None
            }
        };
        Ok(Self {
            currency: required("currency")?,
            creditor_name: required("creditor_name")?,
            creditor_iban: required("creditor_iban")?,
            creditor_bic: optional("creditor_bank_bic")?,
            creditor_reference: required("creditor_reference")?,
            creditor_street: optional("creditor_street")?,
            creditor_postal_code: optional("creditor_postal_code")?,
            creditor_town: optional("creditor_town")?,
            creditor_country: optional("creditor_country")?,
            creditor_bank_name: optional("creditor_bank_name")?,
            creditor_bank_street: optional("creditor_bank_street")?,
            creditor_bank_postal_code: optional("creditor_bank_postal_code")?,
            creditor_bank_town: optional("creditor_bank_town")?,
            creditor_bank_country: optional("creditor_bank_country")?,
            debitor_iban: optional("debitor_iban")?,
            swiss_qr_bill_payload,
        })
    }

    /// The text a person copies into their bank: creditor, IBAN in groups of four, BIC, bank, the
    /// reference (and a line saying it must be copied exactly: it links the payment to the order),
    /// the currency, and the amount if given.
    pub fn render_text(&self, amount: Option<Decimal>) -> String {
        let currency = self.currency.to_uppercase();
        let mut lines = vec![format!("Pay to:      {}", self.creditor_name)];
        let creditor_address = address(
            &self.creditor_street,
            &self.creditor_postal_code,
            &self.creditor_town,
            &self.creditor_country,
        );
        if !creditor_address.is_empty() {
            lines.push(format!("             {creditor_address}"));
        }
        lines.push(format!("IBAN:        {}", grouped(&self.creditor_iban)));
        if let Some(bic) = &self.creditor_bic {
            lines.push(format!("BIC/SWIFT:   {bic}"));
        }
        if let Some(bank) = &self.creditor_bank_name {
            let bank_address = address(
                &self.creditor_bank_street,
                &self.creditor_bank_postal_code,
                &self.creditor_bank_town,
                &self.creditor_bank_country,
            );
            if bank_address.is_empty() {
                lines.push(format!("Bank:        {bank}"));
            } else {
                lines.push(format!("Bank:        {bank}, {bank_address}"));
            }
        }
        lines.push(format!("Reference:   {}", self.creditor_reference));
        lines.push(
            "             Copy the reference exactly: it is what links your payment to your \
             Pocket order."
                .to_string(),
        );
        lines.push(format!("Currency:    {currency}"));
        if let Some(amount) = amount {
            lines.push(format!("Amount:      {} {currency}", money(amount)));
        }
        if let Some(debitor) = &self.debitor_iban {
            lines.push(format!(
                "Pay from:    {} (the account you gave Pocket)",
                grouped(debitor)
            ));
        }
        lines.join("\n")
    }

    /// The payload of the QR code banking apps scan: EPC069-12 "GiroCode" (SEPA credit
    /// transfer) for EUR; Pocket's swiss_qr_bill_payload for CHF when present; None otherwise
    /// (GBP, or CHF without payload), and the caller then shows only the text.
    ///
    /// A Result because a GiroCode cannot carry every amount or name: rather than a code whose
    /// amount or beneficiary differs from the text beside it, the caller gets the reason. The
    /// amount is ignored for CHF: the QR-bill is Pocket's document and carries its own.
    pub fn qr_payload(&self, amount: Option<Decimal>) -> Result<Option<String>, PaymentError> {
        match self.currency.parse::<Currency>() {
            Ok(Currency::Eur) => self.girocode(amount).map(Some),
            Ok(Currency::Chf) => Ok(swiss_qr::payload(self.swiss_qr_bill_payload.as_deref())),
            Ok(Currency::Gbp) | Err(_) => Ok(None),
        }
    }

    /// EPC069-12 version 002 (`payment::epc`), from Pocket's creditor fields.
    fn girocode(&self, amount: Option<Decimal>) -> Result<String, PaymentError> {
        if self.creditor_name.trim().is_empty() {
            return Err(PaymentError::MissingField {
                field: "creditor_name",
            });
        }
        Ok(epc::girocode(&CreditTransfer {
            bic: self.creditor_bic.as_deref(),
            name: &self.creditor_name,
            iban: &self.creditor_iban,
            amount,
            reference: &self.creditor_reference,
        })?)
    }
}

/// The QR code as text for a terminal (`qr::terminal`).
pub fn qr_terminal(payload: &str) -> Result<String, PaymentError> {
    Ok(crate::qr::terminal(payload)?)
}

/// The QR code as a PNG file (`qr::png`).
pub fn qr_png(payload: &str, path: &Path) -> Result<(), PaymentError> {
    Ok(crate::qr::png(payload, path)?)
}

/// The printed form of an IBAN: groups of four, as on a bank statement, so it is easy to check.
fn grouped(iban: &str) -> String {
    compact(iban)
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|group| group.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

fn address(
    street: &Option<String>,
    postal_code: &Option<String>,
    town: &Option<String>,
    country: &Option<String>,
) -> String {
    let place = [postal_code, town]
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    [
        street.clone(),
        Some(place).filter(|p| !p.is_empty()),
        country.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pocket_payment_method() -> Value {
        serde_json::json!({
            "currency": "eur", "debitor_iban": "DE75512108001245126199",
            "creditor_reference": "RF18GW8K79",
            "creditor_iban": "CH9400778214768302002", "creditor_bank_name": "Luzerner Kantonalbank",
            "creditor_bank_street": "Pilatusstrasse 12", "creditor_bank_postal_code": "6002",
            "creditor_bank_town": "Luzern", "creditor_bank_country": "CH",
            "creditor_bank_bic": "LUKBCH2260A", "creditor_name": "Pocket App",
            "creditor_street": "Industriestrasse 33", "creditor_postal_code": "5242",
            "creditor_town": "Lupfig", "creditor_country": "CH", "swiss_qr_bill_payload": null
        })
    }

    fn example() -> PaymentInstructions {
        PaymentInstructions::from_payment_method(&pocket_payment_method()).unwrap()
    }

    fn amount(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn reads_pocket_payment_method_into_instructions() {
        let p = example();
        assert_eq!(p.currency, "eur");
        assert_eq!(p.creditor_name, "Pocket App");
        assert_eq!(p.creditor_iban, "CH9400778214768302002");
        assert_eq!(p.creditor_bic.as_deref(), Some("LUKBCH2260A"));
        assert_eq!(p.creditor_reference, "RF18GW8K79");
        assert_eq!(p.creditor_street.as_deref(), Some("Industriestrasse 33"));
        assert_eq!(p.creditor_postal_code.as_deref(), Some("5242"));
        assert_eq!(p.creditor_town.as_deref(), Some("Lupfig"));
        assert_eq!(p.creditor_country.as_deref(), Some("CH"));
        assert_eq!(
            p.creditor_bank_name.as_deref(),
            Some("Luzerner Kantonalbank")
        );
        assert_eq!(p.creditor_bank_town.as_deref(), Some("Luzern"));
        assert_eq!(p.debitor_iban.as_deref(), Some("DE75512108001245126199"));
        assert_eq!(p.swiss_qr_bill_payload, None);
    }

    #[test]
    fn payment_method_without_creditor_iban_is_refused_naming_it() {
        let mut v = pocket_payment_method();
        v.as_object_mut().unwrap().remove("creditor_iban");
        let err = PaymentInstructions::from_payment_method(&v).unwrap_err();
        assert!(
            matches!(
                err,
                PaymentError::MissingField {
                    field: "creditor_iban"
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("creditor_iban"), "{err}");
    }

    #[test]
    fn a_number_where_text_belongs_is_refused_naming_the_field() {
        let mut v = pocket_payment_method();
        v["creditor_postal_code"] = serde_json::json!(5242);
        let err = PaymentInstructions::from_payment_method(&v).unwrap_err();
        assert!(err.to_string().contains("creditor_postal_code"), "{err}");
    }

    #[test]
    fn stored_instructions_read_back_identically_and_unknown_fields_are_ignored() {
        let p = example();
        let mut stored = serde_json::to_value(&p).unwrap();
        stored["something_pocket_adds_later"] = serde_json::json!(true);
        let back: PaymentInstructions = serde_json::from_value(stored).unwrap();
        assert_eq!(back, p);
        // Pocket's raw object deserialises too, BIC under its own name.
        let raw: PaymentInstructions = serde_json::from_value(pocket_payment_method()).unwrap();
        assert_eq!(raw.creditor_bic.as_deref(), Some("LUKBCH2260A"));
    }

    #[test]
    fn eur_order_gets_a_girocode_with_the_rf_reference_structured() {
        let payload = example().qr_payload(Some(amount("100.00"))).unwrap();
        assert_eq!(
            payload.as_deref(),
            Some(
                "BCD\n002\n1\nSCT\nLUKBCH2260A\nPocket App\nCH9400778214768302002\nEUR100.00\n\nRF18GW8K79"
            )
        );
    }

    #[test]
    fn girocode_without_amount_leaves_the_amount_line_empty() {
        let payload = example().qr_payload(None).unwrap().unwrap();
        assert_eq!(
            payload,
            "BCD\n002\n1\nSCT\nLUKBCH2260A\nPocket App\nCH9400778214768302002\n\n\nRF18GW8K79"
        );
    }

    #[test]
    fn a_reference_that_is_not_rf_travels_as_unstructured_text() {
        let mut p = example();
        p.creditor_reference = "POCKET-4711".into();
        p.creditor_bic = None;
        let payload = p.qr_payload(Some(amount("25"))).unwrap().unwrap();
        assert_eq!(
            payload,
            "BCD\n002\n1\nSCT\n\nPocket App\nCH9400778214768302002\nEUR25.00\n\n\nPOCKET-4711"
        );
        // An RF reference with a wrong check digit would be rejected by the bank as structured.
        p.creditor_reference = "RF19GW8K79".into();
        let payload = p.qr_payload(None).unwrap().unwrap();
        assert!(payload.ends_with("\n\n\nRF19GW8K79"), "{payload:?}");
    }

    #[test]
    fn girocode_refuses_amounts_it_cannot_carry_exactly() {
        assert_eq!(epc::AMOUNT_MIN.to_string(), "0.01");
        assert_eq!(epc::AMOUNT_MAX.to_string(), "999999999.99");
        let p = example();
        let err = p.qr_payload(Some(amount("10.005"))).unwrap_err();
        assert!(matches!(
            err,
            PaymentError::Epc(EpcError::AmountDecimals { decimals: 3, .. })
        ));
        assert!(err.to_string().contains("10.005"), "{err}");
        assert!(err.to_string().contains("at most 2"), "{err}");
        let err = p.qr_payload(Some(amount("1000000000.00"))).unwrap_err();
        assert!(matches!(
            err,
            PaymentError::Epc(EpcError::AmountTooLarge { .. })
        ));
        assert!(err.to_string().contains("999999999.99"), "{err}");
        assert!(p.qr_payload(Some(amount("999999999.99"))).is_ok());
        assert!(matches!(
            p.qr_payload(Some(amount("0"))),
            Err(PaymentError::Epc(EpcError::AmountTooSmall { .. }))
        ));
        // Trailing zeros lose nothing.
        let payload = p.qr_payload(Some(amount("12.300"))).unwrap().unwrap();
        assert!(payload.contains("\nEUR12.30\n"), "{payload:?}");
    }

    #[test]
    fn girocode_refuses_a_beneficiary_name_over_70_characters() {
        let mut p = example();
        p.creditor_name = "P".repeat(71);
        let err = p.qr_payload(None).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("beneficiary name"), "{message}");
        assert!(message.contains(&"P".repeat(71)), "{message}");
        assert!(message.contains("70"), "{message}");
        // Counted in characters, not bytes: 70 umlauts are fine.
        p.creditor_name = "ü".repeat(70);
        assert!(p.qr_payload(None).is_ok());
    }

    #[test]
    fn chf_order_with_a_qr_bill_gets_pockets_payload_unchanged() {
        let mut p = example();
        p.currency = "chf".into();
        let bill = "SPC\n0200\n1\nCH9400778214768302002\nS\nPocket App\r\n";
        p.swiss_qr_bill_payload = Some(bill.into());
        assert_eq!(
            p.qr_payload(Some(amount("100"))).unwrap().as_deref(),
            Some(bill)
        );

        let mut v = pocket_payment_method();
        v["currency"] = "chf".into();
        v["swiss_qr_bill_payload"] = bill.into();
        let from_pocket = PaymentInstructions::from_payment_method(&v).unwrap();
        assert_eq!(from_pocket.qr_payload(None).unwrap().as_deref(), Some(bill));
    }

    #[test]
    fn chf_without_qr_bill_and_gbp_orders_get_no_qr_code() {
        let mut p = example();
        p.currency = "chf".into();
        assert_eq!(p.qr_payload(Some(amount("100"))).unwrap(), None);
        p.currency = "gbp".into();
        p.swiss_qr_bill_payload = Some("SPC\n0200\n1".into());
        assert_eq!(p.qr_payload(Some(amount("100"))).unwrap(), None);
    }

    #[test]
    fn text_for_the_bank_shows_grouped_iban_bic_reference_and_name() {
        let text = example().render_text(Some(amount("100")));
        for expected in [
            "Pocket App",
            "CH94 0077 8214 7683 0200 2",
            "LUKBCH2260A",
            "RF18GW8K79",
            "Luzerner Kantonalbank",
            "copy the reference exactly",
            "EUR",
            "100.00 EUR",
            "DE75 5121 0800 1245 1261 99",
        ] {
            assert!(
                text.to_lowercase().contains(&expected.to_lowercase()),
                "missing {expected:?} in\n{text}"
            );
        }
        assert!(!example().render_text(None).contains("Amount"));
    }

    #[test]
    fn png_to_an_unwritable_place_names_the_path() {
        let err = qr_png("BCD", Path::new("/nonexistent-dir/qr.png")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/qr.png"), "{err}");
    }
}
