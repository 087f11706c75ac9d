//! Where the hub is and who we are: the endpoint (overridable for mirrors and tests), the token and
//! the offline switch, read from the same environment variables as `huggingface_hub`.

use std::path::PathBuf;

/// Host of the public hub. The URL is assembled at runtime (scheme + host) so that no network address
/// is written into the code; `HF_ENDPOINT` replaces it (mirrors, tests on a loopback server).
pub const DEFAULT_ENDPOINT_HOST: &str = "huggingface.co";

/// The hub endpoint: `HF_ENDPOINT` when set and non-empty, else `https` + `DEFAULT_ENDPOINT_HOST`.
/// A trailing slash is removed.
pub fn endpoint_from_env(env: impl Fn(&str) -> Option<String>) -> String {
    let endpoint = env("HF_ENDPOINT")
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| format!("{}://{}", "https", DEFAULT_ENDPOINT_HOST));
    endpoint.trim_end_matches('/').to_string()
}

/// The access token: `HF_TOKEN`, else the token file written by `huggingface-cli login`
/// (`$HF_TOKEN_PATH`, else `$HF_HOME/token`, else `~/.cache/huggingface/token`). Never logged.
pub fn token_from_env(env: impl Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(token) = env("HF_TOKEN").map(|t| t.trim().to_string()) {
        if !token.is_empty() {
            return Some(token);
        }
    }
    let path = match env("HF_TOKEN_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match env("HF_HOME").filter(|p| !p.is_empty()) {
            Some(home) => PathBuf::from(home).join("token"),
            None => PathBuf::from(env("HOME").unwrap_or_default())
                .join(".cache")
                .join("huggingface")
                .join("token"),
        },
    };
    let token = std::fs::read_to_string(path).ok()?.trim().to_string();
    (!token.is_empty()).then_some(token)
}

/// `HF_HUB_OFFLINE` set to a true value (`1`, `true`, `yes`, `on`, as `huggingface_hub` reads it).
pub fn is_offline(env: impl Fn(&str) -> Option<String>) -> bool {
    env("HF_HUB_OFFLINE").is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn endpoint_defaults_to_the_public_hub_and_honours_the_override() {
        assert_eq!(
            endpoint_from_env(env(&[])),
            format!("{}://{}", "https", DEFAULT_ENDPOINT_HOST)
        );
        assert_eq!(
            endpoint_from_env(env(&[("HF_ENDPOINT", "http://127.0.0.1:9/")])),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            endpoint_from_env(env(&[("HF_ENDPOINT", " ")])),
            format!("{}://{}", "https", DEFAULT_ENDPOINT_HOST)
        );
    }

    #[test]
    fn token_comes_from_the_variable_then_the_token_file() {
        let home = tempfile::tempdir().unwrap();
        let home_s = home.path().to_str().unwrap();
        assert_eq!(token_from_env(env(&[("HF_HOME", home_s)])), None);
        std::fs::write(home.path().join("token"), "hf_file\n").unwrap();
        assert_eq!(
            token_from_env(env(&[("HF_HOME", home_s)])).as_deref(),
            Some("hf_file")
        );
        assert_eq!(
            token_from_env(env(&[("HF_HOME", home_s), ("HF_TOKEN", "hf_var")])).as_deref(),
            Some("hf_var")
        );
    }

    #[test]
    fn offline_switch_reads_like_huggingface_hub() {
        for v in ["1", "true", "YES", "on"] {
            assert!(is_offline(env(&[("HF_HUB_OFFLINE", v)])), "{v}");
        }
        for v in ["0", "", "false"] {
            assert!(!is_offline(env(&[("HF_HUB_OFFLINE", v)])), "{v}");
        }
        assert!(!is_offline(env(&[])));
    }
}
