//! Money as integer micro-units (10⁻⁶) of a currency. Never a float: amounts are exact, sums are
//! exact, and rounding happens in exactly two places — when a per-token price is applied to a
//! token count, and when an invoice line is rounded to the currency's minor unit.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Micro-units per whole currency unit.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency must be a three-letter ISO 4217 code")]
    BadCurrency,
    #[error("amounts in different currencies ({0} and {1}) cannot be combined")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount out of range")]
    Overflow,
    #[error("amount must be a decimal number like 2.50 with at most 6 decimal places")]
    BadAmount,
}

/// Active ISO 4217 currency codes (precious metals and testing codes excluded), sorted.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE",
    "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL",
    "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR",
    "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD",
    "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK",
    "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO",
    "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON",
    "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS",
    "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD",
    "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND",
    "VUV", "WST", "XAF", "XCD", "XCG", "XDR", "XOF", "XPF", "XSU", "XUA", "YER", "ZAR", "ZMW",
    "ZWG", "ZWL",
];

/// An ISO 4217 currency code, upper-case ASCII.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Self = Self(*b"USD");
    pub const CNY: Self = Self(*b"CNY");
    pub const EUR: Self = Self(*b"EUR");

    /// Parses an active ISO 4217 code (case-insensitive).
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let bytes: [u8; 3] = code
            .as_bytes()
            .try_into()
            .map_err(|_| MoneyError::BadCurrency)?;
        let upper = bytes.map(|b| b.to_ascii_uppercase());
        let known = std::str::from_utf8(&upper).is_ok_and(|c| ISO_4217.binary_search(&c).is_ok());
        if known {
            Ok(Self(upper))
        } else {
            Err(MoneyError::BadCurrency)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored, so this cannot fail; fall back defensively.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Number of decimal digits of the currency's minor unit (cents, fen, …).
    #[must_use]
    pub fn minor_unit_digits(&self) -> u32 {
        match &self.0 {
            b"JPY" | b"KRW" | b"VND" | b"CLP" | b"ISK" | b"UGX" | b"XAF" | b"XOF" => 0,
            b"BHD" | b"KWD" | b"OMR" | b"JOD" | b"TND" | b"IQD" | b"LYD" => 3,
            _ => 2,
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// An amount of money: integer micro-units of `currency`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub micros: i64,
    pub currency: Currency,
}

impl Money {
    #[must_use]
    pub const fn new(micros: i64, currency: Currency) -> Self {
        Self { micros, currency }
    }

    #[must_use]
    pub const fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        let micros = self
            .micros
            .checked_add(other.micros)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::new(micros, self.currency))
    }

    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        let micros = self
            .micros
            .checked_sub(other.micros)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::new(micros, self.currency))
    }

    fn same_currency(self, other: Self) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }

    /// Cost of `tokens` at `micros_per_million_tokens`, rounded half to even to a whole micro-unit.
    /// Half-to-even keeps the rounding unbiased over many requests.
    pub fn for_tokens(
        tokens: u64,
        micros_per_million_tokens: i64,
        currency: Currency,
    ) -> Result<Self, MoneyError> {
        let product = i128::from(tokens) * i128::from(micros_per_million_tokens);
        let micros = div_round_half_even(product, 1_000_000);
        let micros = i64::try_from(micros).map_err(|_| MoneyError::Overflow)?;
        Ok(Self::new(micros, currency))
    }

    /// Rounds to the currency's minor unit (half away from zero, as invoices conventionally do).
    /// Used once per invoice line, never on running totals.
    #[must_use]
    pub fn round_to_minor_unit(self) -> Self {
        let digits = self.currency.minor_unit_digits();
        let step = 10_i64.pow(6 - digits.min(6));
        let q = self.micros / step;
        let r = self.micros % step;
        let rounded = if r.abs() * 2 >= step {
            q + self.micros.signum()
        } else {
            q
        };
        Self::new(rounded.saturating_mul(step), self.currency)
    }

    /// Decimal representation in whole units with six decimals, e.g. `"1.250000"`.
    #[must_use]
    pub fn to_decimal_string(&self) -> String {
        let sign = if self.micros < 0 { "-" } else { "" };
        let abs = self.micros.unsigned_abs();
        let unit = MICROS_PER_UNIT.unsigned_abs();
        format!("{sign}{}.{:06}", abs / unit, abs % unit)
    }
}

/// Parses a decimal amount in major units (`"2.50"`, `"0.000075"`, `"12"`) into exact micro-units.
/// At most six decimal places; no sign, exponent or separators. Never goes through a float.
pub fn parse_decimal_micros(s: &str) -> Result<i64, MoneyError> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(frac)
        || frac.len() > 6
        || (s.contains('.') && frac.is_empty())
    {
        return Err(MoneyError::BadAmount);
    }
    let whole: i64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
    let mut frac_micros: i64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        let place = 10_i64.pow(5 - u32::try_from(i).unwrap_or(5));
        frac_micros += i64::from(b - b'0') * place;
    }
    whole
        .checked_mul(MICROS_PER_UNIT)
        .and_then(|w| w.checked_add(frac_micros))
        .ok_or(MoneyError::Overflow)
}

/// Formats micro-units as the shortest exact decimal in major units (`2500000` → `"2.5"`).
#[must_use]
pub fn format_decimal_micros(micros: i64) -> String {
    let s = Money::new(micros, Currency::USD).to_decimal_string();
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_owned()
}

fn div_round_half_even(n: i128, d: i128) -> i128 {
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d);
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => {
            if q % 2 == 0 {
                q
            } else {
                q + 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_parsing() {
        assert_eq!(Currency::parse("usd").unwrap(), Currency::USD);
        assert_eq!(Currency::parse("CNY").unwrap().as_str(), "CNY");
        assert!(Currency::parse("US").is_err());
        assert!(Currency::parse("US1").is_err());
        assert!(Currency::parse("USDT").is_err());
        assert!(Currency::parse("XYZ").is_err(), "not an ISO 4217 code");
        assert!(Currency::parse("XAU").is_err(), "gold is not money here");
        assert!(
            ISO_4217.windows(2).all(|w| w[0] < w[1]),
            "sorted for binary search"
        );
        assert_eq!(Currency::USD.minor_unit_digits(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().minor_unit_digits(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_unit_digits(), 3);
        assert_eq!(format!("{:?}", Currency::EUR), "Currency(EUR)");
        let json = serde_json::to_string(&Currency::CNY).unwrap();
        assert_eq!(json, "\"CNY\"");
        assert!(serde_json::from_str::<Currency>("\"C1Y\"").is_err());
    }

    #[test]
    fn arithmetic_is_exact_and_currency_checked() {
        let a = Money::new(1_500_000, Currency::USD);
        let b = Money::new(250_000, Currency::USD);
        assert_eq!(a.checked_add(b).unwrap().micros, 1_750_000);
        assert_eq!(a.checked_sub(b).unwrap().micros, 1_250_000);
        let c = Money::new(1, Currency::CNY);
        assert_eq!(
            a.checked_add(c),
            Err(MoneyError::CurrencyMismatch(Currency::USD, Currency::CNY))
        );
        assert_eq!(
            Money::new(i64::MAX, Currency::USD).checked_add(Money::new(1, Currency::USD)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::new(i64::MIN, Currency::USD).checked_sub(Money::new(1, Currency::USD)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(Money::zero(Currency::USD).micros, 0);
    }

    #[test]
    fn token_pricing_rounds_half_to_even() {
        // $2.50 per million tokens = 2_500_000 micros per million.
        let cost = Money::for_tokens(1_000, 2_500_000, Currency::USD).unwrap();
        assert_eq!(cost.micros, 2_500);
        // 1 token at 0.5 micro → 0 (half to even), 3 tokens at 0.5 → 1.5 → 2.
        assert_eq!(
            Money::for_tokens(1, 500_000, Currency::USD).unwrap().micros,
            0
        );
        assert_eq!(
            Money::for_tokens(3, 500_000, Currency::USD).unwrap().micros,
            2
        );
        assert_eq!(
            Money::for_tokens(5, 500_000, Currency::USD).unwrap().micros,
            2
        );
        assert_eq!(
            Money::for_tokens(7, 300_000, Currency::USD).unwrap().micros,
            2
        );
        assert_eq!(
            Money::for_tokens(0, 300_000, Currency::USD).unwrap().micros,
            0
        );
        assert_eq!(
            Money::for_tokens(u64::MAX, i64::MAX, Currency::USD),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn invoice_rounding_to_minor_unit() {
        let usd = |m| Money::new(m, Currency::USD);
        assert_eq!(usd(1_234_999).round_to_minor_unit().micros, 1_230_000);
        assert_eq!(usd(1_235_000).round_to_minor_unit().micros, 1_240_000);
        assert_eq!(usd(-1_235_000).round_to_minor_unit().micros, -1_240_000);
        assert_eq!(usd(4_999).round_to_minor_unit().micros, 0);
        let jpy = Money::new(1_500_000, Currency::parse("JPY").unwrap());
        assert_eq!(jpy.round_to_minor_unit().micros, 2_000_000);
        let kwd = Money::new(1_234_567, Currency::parse("KWD").unwrap());
        assert_eq!(kwd.round_to_minor_unit().micros, 1_235_000);
    }

    #[test]
    fn decimal_parsing_is_exact() {
        assert_eq!(parse_decimal_micros("2.50"), Ok(2_500_000));
        assert_eq!(parse_decimal_micros("0.000075"), Ok(75));
        assert_eq!(parse_decimal_micros("12"), Ok(12_000_000));
        assert_eq!(parse_decimal_micros("0"), Ok(0));
        assert_eq!(parse_decimal_micros("0.1"), Ok(100_000));
        for bad in [
            "",
            ".5",
            "1.",
            "1.1234567",
            "-1",
            "1e3",
            "1,000",
            " 1",
            "abc",
            "1.2.3",
        ] {
            assert_eq!(
                parse_decimal_micros(bad),
                Err(MoneyError::BadAmount),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_decimal_micros("99999999999999999999"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            parse_decimal_micros("9223372036854.775808"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(format_decimal_micros(2_500_000), "2.5");
        assert_eq!(format_decimal_micros(75), "0.000075");
        assert_eq!(format_decimal_micros(12_000_000), "12");
        assert_eq!(format_decimal_micros(0), "0");
    }

    #[test]
    fn decimal_rendering() {
        assert_eq!(
            Money::new(1_250_000, Currency::USD).to_decimal_string(),
            "1.250000"
        );
        assert_eq!(
            Money::new(-5, Currency::USD).to_decimal_string(),
            "-0.000005"
        );
        assert_eq!(
            Money::new(i64::MIN, Currency::USD).to_decimal_string(),
            "-9223372036854.775808"
        );
    }
}
