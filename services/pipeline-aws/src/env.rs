//! A function's settings from its environment variables, with actionable errors.

use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error(
        "environment variable {0} is not set: the deployment must set it (see docs/deployment.md)"
    )]
    Missing(&'static str),
    #[error("environment variable {name} is `{value}`: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Looks variables up through `get` (the process environment, or a map in tests).
#[derive(Debug, Clone, Copy)]
pub struct Env<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// A variable that must be set and not empty.
    pub fn required(&self, name: &'static str) -> Result<String, EnvError> {
        (self.0)(name)
            .filter(|v| !v.is_empty())
            .ok_or(EnvError::Missing(name))
    }

    /// A number with a default when unset.
    pub fn number<T: FromStr>(
        &self,
        name: &'static str,
        default: T,
        expected: &'static str,
    ) -> Result<T, EnvError> {
        match (self.0)(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| EnvError::Invalid {
                name,
                value,
                expected,
            }),
        }
    }

    /// A variable with a default when unset.
    pub fn or(&self, name: &str, default: &str) -> String {
        (self.0)(name).unwrap_or_else(|| default.to_owned())
    }
}
