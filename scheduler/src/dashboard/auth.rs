//! Who may read the dashboard: whoever holds the bearer token the
//! scheduler keeps in its data directory (`dashboard-token`, mode 0600,
//! created on the first start with an admin listener). Browsers cannot
//! present the API's client certificates, so the token stands in for
//! them: given once as `?token=` (then kept in an HttpOnly, SameSite=Strict
//! cookie scoped to `/dashboard`), or as `Authorization: Bearer` by scripts.
//! The checks here are pure functions of the request head.

use std::path::{Path, PathBuf};

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

use crate::pki::{PkiError, write_file};

/// The token's file in the scheduler's data directory.
pub const TOKEN_FILE: &str = "dashboard-token";

/// The file where a running scheduler records its admin listener's
/// address, for `berth dashboard`; removed when it starts without one.
pub const ADDRESS_FILE: &str = "admin-address";

/// The cookie the token is kept in.
pub const COOKIE_NAME: &str = "berth_dashboard";

/// Random bytes in a token (hex-encoded: twice as many characters).
const TOKEN_BYTES: usize = 32;

/// The bearer token that opens the dashboard.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads the token from `dir`, creating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<Token, PkiError> {
        let path = dir.join(TOKEN_FILE);
        if !path.exists() {
            write_file(
                &path,
                &format!("{}\n", crate::pki::random_hex(TOKEN_BYTES)),
                true,
            )?;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| PkiError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Token(text.trim().to_owned()))
    }

    /// A token with this text (tests).
    pub fn new(text: impl Into<String>) -> Token {
        Token(text.into())
    }

    /// The token's text, to print for the operator.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token, compared in constant time.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        !a.is_empty()
            && a.len() == b.len()
            && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Whether a request head carries this token, in its cookie or its
    /// `Authorization: Bearer` header.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|t| self.matches(t.trim()));
        bearer || cookie(headers).is_some_and(|t| self.matches(t))
    }

    /// The `Set-Cookie` value that keeps this token for the dashboard.
    pub fn set_cookie(&self) -> String {
        format!(
            "{COOKIE_NAME}={}; Path=/dashboard; HttpOnly; SameSite=Strict",
            self.0
        )
    }
}

/// The value of the dashboard cookie, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

/// The `token` parameter of a query string, if given.
pub fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value)
}

/// Records (or, with `None`, forgets) the admin listener's address in
/// `dir`.
pub fn publish_address(dir: &Path, address: Option<std::net::SocketAddr>) -> Result<(), PkiError> {
    let path: PathBuf = dir.join(ADDRESS_FILE);
    match address {
        Some(address) => write_file(&path, &format!("{address}\n"), false),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(PkiError::Io { path, source: e })
            }
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = Token::load_or_create(dir.path()).unwrap();
        let second = Token::load_or_create(dir.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.as_str().len(), TOKEN_BYTES * 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the token file is the owner's only");
        }
    }

    #[test]
    fn admits_the_cookie_or_the_bearer_header_only_with_the_token() {
        let token = Token::new("s3cret");
        assert!(token.admits(&headers(&[(AUTHORIZATION, "Bearer s3cret")])));
        assert!(token.admits(&headers(&[(COOKIE, "a=b; berth_dashboard=s3cret")])));
        assert!(!token.admits(&headers(&[(AUTHORIZATION, "Bearer s3cre")])));
        assert!(!token.admits(&headers(&[(AUTHORIZATION, "Basic s3cret")])));
        assert!(!token.admits(&headers(&[(COOKIE, "berth_dashboard=other")])));
        assert!(!token.admits(&headers(&[(COOKIE, "xberth_dashboard=s3cret")])));
        assert!(!token.admits(&HeaderMap::new()));
        assert!(!Token::new("").matches(""), "an empty token admits no one");
    }

    #[test]
    fn reads_the_token_parameter() {
        assert_eq!(query_token(Some("a=1&token=abc")), Some("abc"));
        assert_eq!(query_token(Some("tokenx=abc")), None);
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn publishes_and_forgets_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADDRESS_FILE);
        publish_address(dir.path(), Some("127.0.0.1:9000".parse().unwrap())).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "127.0.0.1:9000\n");
        publish_address(dir.path(), None).unwrap();
        assert!(!path.exists());
        publish_address(dir.path(), None).unwrap();
    }
}
