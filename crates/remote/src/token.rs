//! The bearer token a server may require, read from a file so that it never appears in a config,
//! on a command line or in shell history, and never printed (`Debug` is redacted).

use std::fmt;
use std::path::Path;

use crate::error::{RemoteError, Result};

/// A server's API token, sent as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    /// The first line of `path`, trimmed; `entry` names the model in errors.
    pub fn from_file(entry: &str, path: &Path) -> Result<ApiToken> {
        let text = std::fs::read_to_string(path).map_err(|error| RemoteError::TokenFile {
            entry: entry.to_string(),
            path: path.to_path_buf(),
            error,
        })?;
        let invalid = |reason| RemoteError::TokenInvalid {
            entry: entry.to_string(),
            path: path.to_path_buf(),
            reason,
        };
        let token = text.lines().next().unwrap_or_default().trim();
        if token.is_empty() {
            return Err(invalid("the first line is empty"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "the token contains whitespace or control characters",
            ));
        }
        Ok(ApiToken(token.to_string()))
    }

    pub(crate) fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_its_first_line_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  sk-local-123456  \nsecond line\n").unwrap();
        let token = ApiToken::from_file("m", &path).unwrap();
        assert_eq!(token.header(), "Bearer sk-local-123456");
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
        std::fs::write(&path, "\n").unwrap();
        let err = ApiToken::from_file("m", &path).unwrap_err().to_string();
        assert!(err.contains("empty") && err.contains("\"m\""), "{err}");
        std::fs::write(&path, "two words").unwrap();
        assert!(ApiToken::from_file("m", &path).is_err());
        let err = ApiToken::from_file("m", &dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
