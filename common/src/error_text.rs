//! Errors as one line of text for logs and check results.

/// An error and all its causes on one line: `top: cause: root cause`. The top-level text of a
/// client error ("error sending request") says little; the causes say why.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::fmt;

    /// An error with an optional cause, as client errors wrap theirs.
    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn every_cause_follows_its_error() {
        let root = Wrapped("connection refused", None);
        let middle = Wrapped("client error (Connect)", Some(Box::new(root)));
        let top = Wrapped("error sending request", Some(Box::new(middle)));
        assert_eq!(
            super::chain(&top),
            "error sending request: client error (Connect): connection refused"
        );
        assert_eq!(super::chain(&Wrapped("alone", None)), "alone");
    }
}
