//! E-mail addresses, parsed once at the edge and stored normalized (trimmed, lower-case) so that
//! uniqueness does not depend on how a user typed their address.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not an acceptable e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("email must be between 3 and 254 characters")]
    Length,
    #[error("email must look like name@example.com")]
    Shape,
}

/// A syntactically valid, normalized e-mail address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Parses and normalizes an address. Deliberately simple: one `@`, a non-empty local part of
    /// at most 64 bytes, a domain with a dot-free-or-dotted label structure, no whitespace or
    /// control characters. Deliverability is proven by sending mail, not by a regex.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let s = raw.trim();
        if s.len() < 3 || s.len() > 254 {
            return Err(EmailError::Length);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError::Shape)?;
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '@';
        if local.is_empty()
            || local.len() > 64
            || domain.is_empty()
            || local.contains(bad_char)
            || domain.contains(bad_char)
            || domain.contains(['<', '>', '(', ')', '[', ']', ',', ';', ':', '\\', '"'])
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(EmailError::Shape);
        }
        Ok(Self(s.to_lowercase()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_whitespace() {
        let e = Email::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "alice@example.com");
        assert_eq!(e.to_string(), "alice@example.com");
    }

    #[test]
    fn accepts_unicode_and_plus_addressing() {
        assert!(Email::parse("张伟+ai@例子.中国").is_ok());
        assert!(Email::parse("ops+alerts@localhost").is_ok());
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "a",
            "no-at-sign",
            "@example.com",
            "alice@",
            "al ice@example.com",
            "alice@exa mple.com",
            "alice@.example.com",
            "alice@example.com.",
            "alice@example..com",
            "alice@exa<mple.com",
            "a@b@c",
            "line\nbreak@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(Email::parse(&long_local), Err(EmailError::Shape));
        let too_long = format!("a@{}.com", "b".repeat(260));
        assert_eq!(Email::parse(&too_long), Err(EmailError::Length));
    }

    #[test]
    fn serde_validates() {
        let ok: Email = serde_json::from_str("\"Bob@Example.com\"").unwrap();
        assert_eq!(ok.as_str(), "bob@example.com");
        assert!(serde_json::from_str::<Email>("\"nope\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"bob@example.com\"");
    }
}
