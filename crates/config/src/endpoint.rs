//! Which servers a configured URL may point at: the one rule behind every HTTP client icdtune
//! opens (the MLflow tracking client in `track`, the OpenAI-compatible model client in `remote`).
//!
//! A URL is `http://` or `https://` with a host, and without credentials, a query string or a
//! fragment (credentials in a URL end up in logs and shell history). Loopback hosts
//! (`localhost`, `127.0.0.0/8`, `::1`) are always allowed: the data stays on the machine. Any
//! other host needs an explicit opt-in from the caller (MLflow: `allow_remote`; a model server:
//! a token file), because what is sent (run records, dialogues) must not leave the machine by
//! a typo in a URL.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a URL may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid URL {url:?}: {reason}")]
    Invalid { url: String, reason: &'static str },
    /// The host is not loopback and the caller did not opt in; callers add their own hint.
    #[error("{host:?} is not a loopback address")]
    NotLoopback { host: String },
}

/// The host of `url` (lower case, IPv6 without brackets) once the URL passes the shape rules,
/// and it is loopback or `remote_allowed`.
pub fn check(url: &str, remote_allowed: bool) -> Result<String, EndpointError> {
    let host = host_of(url)?;
    if !remote_allowed && !is_loopback(&host) {
        return Err(EndpointError::NotLoopback { host });
    }
    Ok(host)
}

/// Host of an `http(s)://` URL; credentials, queries and fragments are refused.
pub fn host_of(url: &str) -> Result<String, EndpointError> {
    let invalid = |reason| EndpointError::Invalid {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(invalid("credentials in the URL are not supported"));
    }
    if rest.contains(['?', '#']) {
        return Err(invalid("query strings and fragments are not supported"));
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed
            .split_once(']')
            .map(|(h, _)| h)
            .ok_or_else(|| invalid("unclosed '[' in host"))?
    } else {
        authority.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    Ok(host.to_ascii_lowercase())
}

/// `localhost`, an IPv4 address in `127.0.0.0/8` or `::1`. Other names are not resolved: a name
/// that happens to resolve to loopback today may not tomorrow.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_passes_and_other_hosts_need_the_opt_in() {
        for (url, host) in [
            ("http://127.0.0.1:5000", "127.0.0.1"),
            ("http://LOCALHOST:8000/v1", "localhost"),
            ("http://[::1]:8080/v1", "::1"),
            ("https://127.0.0.2", "127.0.0.2"),
        ] {
            assert_eq!(check(url, false).as_deref(), Ok(host), "{url}");
        }
        // Private and documentation addresses; nothing is contacted here.
        for url in [
            "http://10.0.0.5:5000",
            "http://gpu-box.internal:8000/v1",
            "http://[2001:db8::1]:80",
            "http://127.0.0.1.example.org/v1",
        ] {
            assert!(
                matches!(check(url, false), Err(EndpointError::NotLoopback { .. })),
                "{url}"
            );
            assert!(check(url, true).is_ok(), "{url}");
        }
    }

    #[test]
    fn malformed_urls_are_refused_whatever_the_opt_in() {
        for url in [
            "127.0.0.1:5000",
            "ftp://127.0.0.1",
            "http://user:pw@127.0.0.1",
            "http://",
            "http://127.0.0.1/?x=1",
            "http://127.0.0.1/v1#frag",
            "http://[::1/v1",
        ] {
            let err = check(url, true).unwrap_err();
            assert!(matches!(err, EndpointError::Invalid { .. }), "{url}: {err}");
        }
    }
}
