//! Password rules (OWASP ASVS 5.0 V6.2): 8 to 128 characters, any Unicode, no composition rules,
//! no truncation or case folding. Oversized input is refused before it reaches the hasher.

use secrecy::{ExposeSecret, SecretString};

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Hard byte cap checked before counting characters: 128 characters of at most 4 bytes each.
pub const MAX_PASSWORD_BYTES: usize = MAX_PASSWORD_CHARS * 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
}

/// A password that satisfies the policy. Only ever held as a secret.
pub struct NewPassword(SecretString);

impl NewPassword {
    pub fn parse(raw: SecretString) -> Result<Self, PasswordError> {
        check_length(raw.expose_secret())?;
        Ok(Self(raw))
    }

    #[must_use]
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword([REDACTED])")
    }
}

/// Checks length in bytes first (cheap, bounded) and then in characters.
pub fn check_length(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        Err(PasswordError::TooShort)
    } else if chars > MAX_PASSWORD_CHARS {
        Err(PasswordError::TooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NewPassword, PasswordError> {
        NewPassword::parse(SecretString::from(s.to_owned()))
    }

    #[test]
    fn length_bounds_count_characters_not_bytes() {
        assert_eq!(parse("short").unwrap_err(), PasswordError::TooShort);
        assert!(parse("12345678").is_ok());
        // 8 CJK characters are 24 bytes but 8 characters: accepted.
        assert!(parse("密码密码密码密码").is_ok());
        // 64-character Unicode passphrase works.
        assert!(parse(&"å".repeat(64)).is_ok());
        assert!(parse(&"x".repeat(128)).is_ok());
        assert_eq!(parse(&"x".repeat(129)).unwrap_err(), PasswordError::TooLong);
        // 129 four-byte characters exceed the byte cap before counting.
        assert_eq!(
            parse(&"😀".repeat(129)).unwrap_err(),
            PasswordError::TooLong
        );
        assert_eq!(
            parse(&"x".repeat(1 << 20)).unwrap_err(),
            PasswordError::TooLong
        );
    }

    #[test]
    fn no_composition_rules_and_no_leaks_in_debug() {
        let p = parse("all lowercase words").unwrap();
        assert_eq!(format!("{p:?}"), "NewPassword([REDACTED])");
        assert_eq!(p.secret().expose_secret(), "all lowercase words");
    }
}
