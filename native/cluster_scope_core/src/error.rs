//! The core's errors. Every fallible core function returns `CoreError`; the
//! NIF layer encodes it as `{:error, reason}` with `reason` taken from
//! [`CoreError::code`] (a fixed set of atoms, never built from input).

use std::fmt;

/// Errors raised by the core.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// An argument was outside what the function accepts.
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// A limit (size, depth, count) was exceeded.
    LimitExceeded {
        what: &'static str,
        limit: usize,
        actual: usize,
    },
}

impl CoreError {
    /// The stable, machine-readable code of this error. These strings are the
    /// only atoms the NIF layer creates for errors.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidArgument { .. } => "invalid_argument",
            CoreError::LimitExceeded { .. } => "limit_exceeded",
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::InvalidArgument { field, message } => write!(f, "{field}: {message}"),
            CoreError::LimitExceeded {
                what,
                limit,
                actual,
            } => write!(f, "{what} is {actual}, over the limit of {limit}"),
        }
    }
}

impl std::error::Error for CoreError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_snake_case() {
        let errs = [
            CoreError::InvalidArgument {
                field: "x",
                message: "bad".into(),
            },
            CoreError::LimitExceeded {
                what: "depth",
                limit: 1,
                actual: 2,
            },
        ];
        for e in &errs {
            assert!(e.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn messages_name_the_field() {
        let e = CoreError::InvalidArgument {
            field: "limit",
            message: "must be positive".into(),
        };
        assert_eq!(e.to_string(), "limit: must be positive");
        let e = CoreError::LimitExceeded {
            what: "depth",
            limit: 64,
            actual: 65,
        };
        assert_eq!(e.to_string(), "depth is 65, over the limit of 64");
    }
}
