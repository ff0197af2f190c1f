//! The fiat currencies Pocket accepts for bank payments.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Currency {
    Eur,
    Chf,
    Gbp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a currency Pocket accepts; accepted: eur, chf, gbp")]
pub struct CurrencyError(pub String);

impl Currency {
    /// Lowercase, as Pocket's API writes it.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Eur => "eur",
            Currency::Chf => "chf",
            Currency::Gbp => "gbp",
        }
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;

    /// Case-insensitive: users write `CHF` as often as `chf`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "eur" => Ok(Currency::Eur),
            "chf" => Ok(Currency::Chf),
            "gbp" => Ok(Currency::Gbp),
            _ => Err(CurrencyError(s.to_string())),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_and_refuses_others() {
        assert_eq!("CHF".parse::<Currency>().unwrap(), Currency::Chf);
        assert_eq!("eur".parse::<Currency>().unwrap().code(), "eur");
        let err = "usd".parse::<Currency>().unwrap_err().to_string();
        assert!(
            err.contains("\"usd\"") && err.contains("eur, chf, gbp"),
            "{err}"
        );
    }
}
