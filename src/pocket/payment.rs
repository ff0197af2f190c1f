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

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use qrcode::bits::Bits;
use qrcode::types::QrError;
use qrcode::{Color, EcLevel, QrCode, Version};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::domain::Currency;

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
    #[error("cannot make a QR code of {bytes} bytes: {source}")]
    Qr { bytes: usize, source: QrError },
    #[error("cannot write the QR code to {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the QR code to {path}: {source}")]
    Png {
        path: PathBuf,
        source: png::EncodingError,
    },
}

/// EPC069-12 limits (version 002).
const EPC_NAME_MAX: usize = 70;
const EPC_IBAN_MAX: usize = 34;
const EPC_UNSTRUCTURED_MAX: usize = 140;
const EPC_PAYLOAD_MAX_BYTES: usize = 331;
/// 0.01 and 999999999.99 as 96-bit mantissa and scale: `Decimal::new` is not `const`, and a
/// float literal would not be exact. 99999999999 = 0x17_4876_E7FF.
const EPC_AMOUNT_MIN: Decimal = Decimal::from_parts(1, 0, 0, false, 2);
const EPC_AMOUNT_MAX: Decimal = Decimal::from_parts(0x4876_E7FF, 0x17, 0, false, 2);

/// ISO/IEC 18004 asks for four light modules around the symbol; scanners rely on it to find the
/// finder patterns, so it is part of every rendering, not left to the caller.
const QUIET_ZONE: usize = 4;
const PNG_PIXELS_PER_MODULE: usize = 8;

/// Black glyphs on a white background, set explicitly on every line.
///
/// Why explicit colours: printing "dark = glyph, light = space" in the terminal's own colours
/// gives a correct code on a light theme and an inverted one on a dark theme, which many
/// scanners (banking apps included) refuse; printing it the other way round fails the other
/// way. Setting both colours makes the code dark-on-light whatever the theme. SGR 30 and 47 are
/// the base ECMA-48 colours every colour terminal (xterm, VTE, iTerm2, Windows Terminal, the
/// Linux console) supports; themes tint them slightly, never enough to lose the contrast.
/// Reset at the end of each line so a wrapped or interrupted line does not paint the prompt.
const TERMINAL_ON: &str = "\x1b[30;47m";
const TERMINAL_OFF: &str = "\x1b[0m";

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
            Ok(Currency::Chf) => Ok(self.swiss_qr_bill_payload.clone()),
            Ok(Currency::Gbp) | Err(_) => Ok(None),
        }
    }

    /// EPC069-12 version 002, "Quick Response Code: Guidelines to Enable Data Capture for the
    /// Initiation of a SEPA Credit Transfer".
    fn girocode(&self, amount: Option<Decimal>) -> Result<String, PaymentError> {
        let name = self.creditor_name.trim();
        if name.is_empty() {
            return Err(PaymentError::MissingField {
                field: "creditor_name",
            });
        }
        no_line_break("creditor_name", name)?;
        within("beneficiary name", name, EPC_NAME_MAX)?;
        let iban = compact(&self.creditor_iban);
        within("IBAN", &iban, EPC_IBAN_MAX)?;
        let bic = self
            .creditor_bic
            .as_deref()
            .map(compact)
            .unwrap_or_default();
        let amount = match amount {
            Some(a) => format!("EUR{}", epc_amount(a)?),
            None => String::new(),
        };
        // Structured and unstructured remittance are exclusive: a bank given both may drop the
        // structured one, and with it the automatic match to the order.
        let (structured, unstructured) = match rf_reference(&self.creditor_reference) {
            Some(rf) => (rf, String::new()),
            None => {
                let text = self.creditor_reference.trim();
                no_line_break("creditor_reference", text)?;
                within("remittance text", text, EPC_UNSTRUCTURED_MAX)?;
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
        if payload.len() > EPC_PAYLOAD_MAX_BYTES {
            return Err(PaymentError::PayloadTooLong {
                bytes: payload.len(),
                limit: EPC_PAYLOAD_MAX_BYTES,
            });
        }
        Ok(payload)
    }
}

/// The QR code as text for a terminal: two modules per character using the Unicode half blocks
/// (▀ ▄ █ and space), dark on light, with the 4-module quiet zone the standard requires.
///
/// Each line is wrapped in explicit colours (ANSI black on white), so the code is dark-on-light
/// on dark and light themes alike: a glyph's foreground half is a dark module, the background
/// half a light one. Half blocks keep the modules roughly square in the usual 1:2 terminal
/// cell. No trailing newline: print it with `println!`.
pub fn qr_terminal(payload: &str) -> Result<String, PaymentError> {
    let symbol = Symbol::encode(payload)?;
    let side = symbol.side();
    let lines: Vec<String> = (0..side)
        .step_by(2)
        .map(|y| {
            let glyphs: String = (0..side)
                .map(|x| match (symbol.is_dark(x, y), symbol.is_dark(x, y + 1)) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                })
                .collect();
            format!("{TERMINAL_ON}{glyphs}{TERMINAL_OFF}")
        })
        .collect();
    Ok(lines.join("\n"))
}

/// The QR code as a PNG file (black on white, 8 pixels per module, quiet zone included).
pub fn qr_png(payload: &str, path: &Path) -> Result<(), PaymentError> {
    let symbol = Symbol::encode(payload)?;
    let side = symbol.side() * PNG_PIXELS_PER_MODULE;
    let mut pixels = Vec::with_capacity(side * side);
    for y in 0..side {
        for x in 0..side {
            let dark = symbol.is_dark(x / PNG_PIXELS_PER_MODULE, y / PNG_PIXELS_PER_MODULE);
            pixels.push(if dark { 0 } else { 255 });
        }
    }
    let io_error = |source| PaymentError::Io {
        path: path.to_path_buf(),
        source,
    };
    let png_error = |source| PaymentError::Png {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io_error)?;
    let mut out = BufWriter::new(file);
    // A QR symbol is at most 177 + 8 modules wide, so the side always fits in a u32.
    let side = u32::try_from(side).expect("a QR code is at most 1480 pixels wide");
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&pixels).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    out.flush().map_err(io_error)?;
    Ok(())
}

/// A QR symbol's modules, addressed with the quiet zone around them.
struct Symbol {
    width: usize,
    dark: Vec<bool>,
}

impl Symbol {
    fn encode(payload: &str) -> Result<Self, PaymentError> {
        let code = qr_code(payload)?;
        Ok(Self {
            width: code.width(),
            dark: code
                .to_colors()
                .into_iter()
                .map(|c| c == Color::Dark)
                .collect(),
        })
    }

    /// Modules per side, quiet zone included.
    fn side(&self) -> usize {
        self.width + 2 * QUIET_ZONE
    }

    /// Whether the module at (x, y), counted from the outer edge of the quiet zone, is dark;
    /// anything outside the symbol is light.
    fn is_dark(&self, x: usize, y: usize) -> bool {
        let inside = |v: usize| (QUIET_ZONE..QUIET_ZONE + self.width).contains(&v);
        inside(x) && inside(y) && self.dark[(y - QUIET_ZONE) * self.width + (x - QUIET_ZONE)]
    }
}

/// Encodes in byte mode at error correction level M, the smallest version that fits.
///
/// Byte mode is forced because the crate's mode optimiser takes some runs of UTF-8 bytes for
/// Shift JIS pairs and encodes them in Kanji mode ("€—€—€—" does: E2 82 AC E2 80 94 …); a
/// scanner would then return kanji instead of the text. Byte mode is also what both payment
/// standards size their limits on (331 bytes is version 13-M, 997 is version 25-M). No ECI
/// header: EPC069-12 declares the character set inside the payload, and readers that do not
/// expect an ECI may show it as data.
fn qr_code(payload: &str) -> Result<QrCode, PaymentError> {
    let data = payload.as_bytes();
    let qr_error = |source| PaymentError::Qr {
        bytes: data.len(),
        source,
    };
    for version in 1..=40 {
        let mut bits = Bits::new(Version::Normal(version));
        match bits
            .push_byte_data(data)
            .and_then(|()| bits.push_terminator(EcLevel::M))
        {
            Ok(()) => return QrCode::with_bits(bits, EcLevel::M).map_err(qr_error),
            Err(QrError::DataTooLong) => continue,
            Err(other) => return Err(qr_error(other)),
        }
    }
    Err(qr_error(QrError::DataTooLong))
}

/// The amount as EPC069-12 writes it: a dot and exactly two decimals.
fn epc_amount(amount: Decimal) -> Result<String, PaymentError> {
    // 100.000 is still 100.00; only digits that would be lost are refused.
    let decimals = amount.normalize().scale();
    if decimals > 2 {
        return Err(PaymentError::AmountDecimals {
            value: amount,
            decimals,
        });
    }
    if amount < EPC_AMOUNT_MIN {
        return Err(PaymentError::AmountTooSmall { value: amount });
    }
    if amount > EPC_AMOUNT_MAX {
        return Err(PaymentError::AmountTooLarge { value: amount });
    }
    Ok(money(amount))
}

/// Two decimals at least, never fewer digits than given: showing money must not round it.
fn money(amount: Decimal) -> String {
    let mut shown = amount.normalize();
    if shown.scale() < 2 {
        shown.rescale(2);
    }
    shown.to_string()
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

/// The electronic form of an IBAN, BIC or reference: no spaces, uppercase.
fn compact(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
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

fn within(field: &'static str, value: &str, limit: usize) -> Result<(), PaymentError> {
    let len = value.chars().count();
    if len > limit {
        return Err(PaymentError::TooLong {
            field,
            value: value.to_string(),
            len,
            limit,
        });
    }
    Ok(())
}

fn no_line_break(field: &'static str, value: &str) -> Result<(), PaymentError> {
    if value.contains(['\n', '\r']) {
        return Err(PaymentError::LineBreak {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
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
        assert_eq!(EPC_AMOUNT_MIN.to_string(), "0.01");
        assert_eq!(EPC_AMOUNT_MAX.to_string(), "999999999.99");
        let p = example();
        let err = p.qr_payload(Some(amount("10.005"))).unwrap_err();
        assert!(matches!(
            err,
            PaymentError::AmountDecimals { decimals: 3, .. }
        ));
        assert!(err.to_string().contains("10.005"), "{err}");
        assert!(err.to_string().contains("at most 2"), "{err}");
        let err = p.qr_payload(Some(amount("1000000000.00"))).unwrap_err();
        assert!(matches!(err, PaymentError::AmountTooLarge { .. }));
        assert!(err.to_string().contains("999999999.99"), "{err}");
        assert!(p.qr_payload(Some(amount("999999999.99"))).is_ok());
        assert!(matches!(
            p.qr_payload(Some(amount("0"))),
            Err(PaymentError::AmountTooSmall { .. })
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

    /// Reads the terminal rendering back into modules, the inverse of `qr_terminal`.
    fn modules_from_terminal(text: &str) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in text.lines() {
            let glyphs = line
                .strip_prefix(TERMINAL_ON)
                .and_then(|l| l.strip_suffix(TERMINAL_OFF))
                .unwrap_or_else(|| panic!("line without its colours: {line:?}"));
            let (top, bottom): (Vec<bool>, Vec<bool>) = glyphs
                .chars()
                .map(|c| match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("unexpected glyph {other:?}"),
                })
                .unzip();
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    #[test]
    fn terminal_qr_code_has_quiet_zone_and_every_module_of_the_symbol() {
        let payload = example()
            .qr_payload(Some(amount("100.00")))
            .unwrap()
            .unwrap();
        let text = qr_terminal(&payload).unwrap();
        let code = qr_code(&payload).unwrap();
        let side = code.width() + 2 * QUIET_ZONE;

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), side.div_ceil(2));
        for line in &lines {
            assert_eq!(line.chars().count(), lines[0].chars().count());
        }
        for line in lines[..2].iter().chain(&lines[lines.len() - 2..]) {
            assert!(
                !line.contains(['█', '▀', '▄']),
                "quiet zone has a dark module"
            );
        }

        let rows = modules_from_terminal(&text);
        assert!(rows.iter().all(|r| r.len() == side));
        // The top-left finder pattern's corner.
        assert!(rows[QUIET_ZONE][QUIET_ZONE]);
        let colors = code.to_colors();
        for y in 0..code.width() {
            for x in 0..code.width() {
                assert_eq!(
                    rows[y + QUIET_ZONE][x + QUIET_ZONE],
                    colors[y * code.width() + x] == Color::Dark,
                    "module ({x}, {y})"
                );
            }
        }
        // The odd row that pads the last line is light.
        assert!(rows[side..].iter().flatten().all(|dark| !dark));
    }

    #[test]
    fn png_qr_code_is_8_pixels_per_module_with_quiet_zone() {
        let payload = example()
            .qr_payload(Some(amount("100.00")))
            .unwrap()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pocket.png");
        qr_png(&payload, &path).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        let modules = qr_code(&payload).unwrap().width() as u32;
        assert_eq!(width, (modules + 8) * 8);
        assert_eq!(height, (modules + 8) * 8);

        // Quiet zone white, finder corner black.
        let mut reader = png::Decoder::new(std::io::BufReader::new(File::open(&path).unwrap()))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        let at = |x: u32, y: u32| pixels[(y * width + x) as usize];
        assert_eq!(at(0, 0), 255);
        assert_eq!(at(31, 31), 255);
        assert_eq!(at(32, 32), 0);
        assert_eq!(at(39, 39), 0);
    }

    #[test]
    fn png_to_an_unwritable_place_names_the_path() {
        let err = qr_png("BCD", Path::new("/nonexistent-dir/qr.png")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/qr.png"), "{err}");
    }

    #[test]
    fn the_largest_girocode_fits_version_13_and_the_largest_qr_bill_version_25() {
        let version = |bytes: usize| qr_code(&"a".repeat(bytes)).unwrap().version();
        assert_eq!(version(331), Version::Normal(13));
        assert_eq!(version(332), Version::Normal(14));
        assert_eq!(version(997), Version::Normal(25));
    }

    #[test]
    fn why_byte_mode_is_forced_the_optimiser_would_read_utf8_as_kanji() {
        use qrcode::optimize::{Optimizer, Parser};
        use qrcode::types::Mode;
        let utf8 = "€—€—€—€—€—".as_bytes();
        let segments = Optimizer::new(Parser::new(utf8), Version::Normal(10));
        assert!(segments.into_iter().any(|s| s.mode == Mode::Kanji));
    }
}
