//! `allowedOutboundHosts`: the hosts an instance may call over HTTP.
//!
//! An instance gets no outbound network unless its template lists the
//! destination, in Spin's form: `scheme://host[:port]`, where the scheme is
//! `http`, `https` or `*`, the host is a name, `*` or `*.suffix`, and the
//! port is a number or `*` (absent: the scheme's default port).

use std::fmt;

/// One parsed entry of `allowedOutboundHosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
    any_port: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    Suffix(String),
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHost {
    /// Parses `scheme://host[:port]`.
    pub fn parse(text: &str) -> Result<AllowedHost, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} must read scheme://host[:port]"))?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_owned()),
            other => {
                return Err(format!(
                    "{text:?}: scheme {other:?} must be http, https or *"
                ));
            }
        };
        if rest.contains('/') {
            return Err(format!("{text:?}: give no path, only scheme://host[:port]"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let host = match host {
            "" => return Err(format!("{text:?}: the host is empty")),
            "*" => HostPattern::Any,
            h if h.starts_with("*.") && h.len() > 2 => {
                HostPattern::Suffix(h.get(1..).unwrap_or_default().to_ascii_lowercase())
            }
            h if h.contains('*') => {
                return Err(format!("{text:?}: a wildcard host reads * or *.domain"));
            }
            h => HostPattern::Exact(h.to_ascii_lowercase()),
        };
        let (port, any_port) = match port {
            Some("*") => (None, true),
            Some(p) => (
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("{text:?}: port {p:?} is not a number or *"))?,
                ),
                false,
            ),
            None => (None, false),
        };
        Ok(AllowedHost {
            scheme,
            host,
            port,
            any_port,
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this entry.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(exact) => *exact == host,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
        };
        let port = port.or_else(|| default_port(scheme));
        let port_ok = self.any_port
            || match self.port {
                Some(allowed) => port == Some(allowed),
                None => port.is_some() && port == default_port(scheme),
            };
        host_ok && port_ok
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostPattern::Any => "*".to_owned(),
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Suffix(s) => format!("*{s}"),
        };
        write!(f, "{}://{host}", self.scheme.as_deref().unwrap_or("*"))?;
        match (self.any_port, self.port) {
            (true, _) => f.write_str(":*"),
            (false, Some(port)) => write!(f, ":{port}"),
            (false, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_allow_what_they_name_and_nothing_else() {
        let exact = AllowedHost::parse("https://api.example.com").unwrap();
        assert!(exact.allows("https", "api.example.com", None));
        assert!(exact.allows("https", "API.example.com", Some(443)));
        assert!(!exact.allows("http", "api.example.com", None));
        assert!(!exact.allows("https", "api.example.com", Some(8443)));
        assert!(!exact.allows("https", "evil.com", None));

        let port = AllowedHost::parse("http://127.0.0.1:8080").unwrap();
        assert!(port.allows("http", "127.0.0.1", Some(8080)));
        assert!(!port.allows("http", "127.0.0.1", Some(8081)));

        let wild = AllowedHost::parse("*://*.example.com:*").unwrap();
        assert!(wild.allows("http", "a.example.com", Some(1)));
        assert!(!wild.allows("http", "example.org", Some(1)));
        assert!(!wild.allows("http", "badexample.com", Some(1)));

        assert!(
            AllowedHost::parse("*://*:*")
                .unwrap()
                .allows("https", "x", Some(9))
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "example.com",
            "ftp://x",
            "https://",
            "https://x/path",
            "https://a*b",
            "http://x:port",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad} parsed");
        }
        assert_eq!(
            AllowedHost::parse("http://x:99").unwrap().to_string(),
            "http://x:99"
        );
    }
}
