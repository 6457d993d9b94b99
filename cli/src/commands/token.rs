//! `berth token create NAME [--user U] [--ttl 24h]`: a bearer token for
//! automation. The secret is shown once; the scheduler keeps its hash. A
//! command run with `BERTH_TOKEN=SECRET` connects without a client
//! certificate and authenticates with the token instead.

use anyhow::{Result, bail};
use berth_api::wire::{Request, Response};

use crate::client::Client;

/// A new token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The secret.
    pub secret: String,
    /// When it expires, RFC 3339.
    pub expires: String,
}

/// Parses a duration as `90`, `90s`, `15m`, `24h` or `7d`, in seconds.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: use 90s, 15m, 24h or 7d"
            ));
        }
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: use 90s, 15m, 24h or 7d"))?;
    match value.checked_mul(scale) {
        Some(0) | None => Err(format!("invalid duration {text:?}: must be at least 1s")),
        Some(seconds) => Ok(seconds),
    }
}

/// Creates token `name` for `user` (the caller when `None`).
pub async fn create(
    client: &Client,
    name: &str,
    user: Option<String>,
    ttl_seconds: u64,
) -> Result<Created> {
    let request = Request::CreateToken {
        name: name.to_owned(),
        user: user.unwrap_or_default(),
        ttl_seconds,
    };
    match client.call(&request).await? {
        Response::Token { secret, expires } => Ok(Created { secret, expires }),
        other => bail!("unexpected answer {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_ttl("24h"), Ok(86_400));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}

/// `berth token ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create a bearer token and print its secret (shown only once); run
    /// commands with BERTH_TOKEN=SECRET to use it.
    #[command(after_help = "Examples:\n  \
        berth token create deploy-bot --ttl 24h\n  \
        BERTH_TOKEN=$(berth token create ci --user alice --ttl 1h) berth get deployments")]
    Create {
        /// The token's name.
        name: String,
        /// The user it acts as (default: yourself; another user needs
        /// `create` on `tokens`).
        #[arg(long)]
        user: Option<String>,
        /// How long it is valid: 90s, 15m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: u64,
    },
}
