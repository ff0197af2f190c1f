//! International bank account numbers, checked with the ISO 13616 mod-97 checksum so a typo in
//! the debitor IBAN is caught before Pocket or the bank sees it.

use std::fmt;
use std::str::FromStr;

/// An IBAN in its electronic form: uppercase, no spaces.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Iban(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IbanError {
    #[error(
        "\"{0}\" is not an IBAN: it must start with a two-letter country code and two check digits, e.g. CH93 0076 2011 6238 5295 7"
    )]
    Shape(String),
    #[error("\"{0}\" has {1} characters; an IBAN has 15 to 34")]
    Length(String, usize),
    #[error(
        "\"{0}\" fails the IBAN checksum (mod 97); a digit is probably mistyped — copy it again from your bank"
    )]
    Checksum(String),
}

impl Iban {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The printed form, in groups of four.
    pub fn grouped(&self) -> String {
        self.0
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl FromStr for Iban {
    type Err = IbanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let b = compact.as_bytes();
        let shape_ok = b.len() >= 4
            && b[..2].iter().all(u8::is_ascii_uppercase)
            && b[2..4].iter().all(u8::is_ascii_digit)
            && b.iter().all(u8::is_ascii_alphanumeric);
        if !shape_ok {
            return Err(IbanError::Shape(s.to_string()));
        }
        if !(15..=34).contains(&b.len()) {
            return Err(IbanError::Length(s.to_string(), b.len()));
        }
        // Move the country code and check digits to the end, read letters as 10..35, and take
        // the remainder digit by digit so no big integer is needed.
        let remainder = b[4..].iter().chain(&b[..4]).fold(0u32, |acc, &c| {
            if c.is_ascii_digit() {
                (acc * 10 + u32::from(c - b'0')) % 97
            } else {
                (acc * 100 + u32::from(c - b'A' + 10)) % 97
            }
        });
        if remainder == 1 {
            Ok(Iban(compact))
        } else {
            Err(IbanError::Checksum(s.to_string()))
        }
    }
}

impl fmt::Display for Iban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Iban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iban({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ibans_in_any_spacing_and_case() {
        for ok in [
            "CH93 0076 2011 6238 5295 7",
            "DE89370400440532013000",
            "gb82 west 1234 5698 7654 32",
            "FR14 2004 1010 0505 0001 3M02 606",
        ] {
            let iban: Iban = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(!iban.as_str().contains(' '));
        }
        let iban: Iban = "CH9300762011623852957".parse().unwrap();
        assert_eq!(iban.grouped(), "CH93 0076 2011 6238 5295 7");
    }

    #[test]
    fn refuses_typos_and_garbage() {
        assert!(matches!(
            "CH93 0076 2011 6238 5295 8".parse::<Iban>(),
            Err(IbanError::Checksum(_))
        ));
        assert!(matches!(
            "DE88370400440532013000".parse::<Iban>(),
            Err(IbanError::Checksum(_))
        ));
        assert!(matches!("1234".parse::<Iban>(), Err(IbanError::Shape(_))));
        assert!(matches!(
            "CH93-0076".parse::<Iban>(),
            Err(IbanError::Shape(_))
        ));
        assert!(matches!(
            "CH930076".parse::<Iban>(),
            Err(IbanError::Length(_, 8))
        ));
    }
}
