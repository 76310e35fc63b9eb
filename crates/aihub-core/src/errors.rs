//! Displaying errors for logs: an error and every cause under it on one line.

use std::error::Error;
use std::fmt;

/// Displays an error with its causes, `outer: inner: …` (most libraries' own message is only
/// the outermost one).
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("tcp connect error")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn every_cause_is_shown_in_order() {
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(
            ErrorChain(&e).to_string(),
            "tcp connect error: connection refused"
        );
        let io = std::io::Error::other("alone");
        assert_eq!(ErrorChain(&io).to_string(), "alone");
    }
}
