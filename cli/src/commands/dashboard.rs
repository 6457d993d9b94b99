//! `berth dashboard`: the address of the web dashboard, with its token.
//!
//! The token and the admin listener's address are read from the
//! scheduler's data directory (`dashboard-token`, `admin-address`), so
//! this verb works where the scheduler runs, as whoever may read its
//! data; it sends nothing over the network. A remote operator gets the
//! address from whoever runs the scheduler: the wire protocol has no
//! request for it yet.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, Result};
use berth_scheduler::dashboard::auth::{ADDRESS_FILE, TOKEN_FILE};

use crate::commands::scheduler::dial_address;

/// Where to open the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// The admin listener, as a browser on this machine dials it.
    pub admin: SocketAddr,
    /// The bearer token.
    pub token: String,
}

impl Dashboard {
    /// The address to open: the token is traded for a cookie and dropped
    /// from the address on first load.
    pub fn url(&self) -> String {
        format!("http://{}/dashboard/?token={}", self.admin, self.token)
    }
}

impl fmt::Display for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.url())
    }
}

/// Reads the dashboard's address and token from the scheduler's data
/// directory `data`.
pub fn dashboard(data: &Path) -> Result<Dashboard> {
    let address_path = data.join(ADDRESS_FILE);
    let address = std::fs::read_to_string(&address_path).with_context(|| {
        format!(
            "cannot read {}: is a scheduler running on {} with --admin ADDR?",
            address_path.display(),
            data.display()
        )
    })?;
    let admin: SocketAddr = address
        .trim()
        .parse()
        .with_context(|| format!("{}: not a socket address", address_path.display()))?;
    let token_path = data.join(TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read {}", token_path.display()))?
        .trim()
        .to_owned();
    anyhow::ensure!(!token.is_empty(), "{} is empty", token_path.display());
    Ok(Dashboard {
        admin: dial_address(admin),
        token,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_and_token_the_scheduler_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dashboard(dir.path()).unwrap_err().to_string();
        assert!(missing.contains("--admin"), "{missing}");
        std::fs::write(dir.path().join(ADDRESS_FILE), "0.0.0.0:9100\n").unwrap();
        std::fs::write(dir.path().join(TOKEN_FILE), "abc\n").unwrap();
        let found = dashboard(dir.path()).unwrap();
        assert_eq!(
            found.to_string(),
            "http://127.0.0.1:9100/dashboard/?token=abc\n",
            "a wildcard bind is dialled on loopback"
        );
    }
}
