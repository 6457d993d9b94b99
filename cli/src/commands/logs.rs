//! `berth logs INSTANCE | deployment/NAME [-f] [--tail N] [--since D]`:
//! guest output, relayed by the scheduler from the instances' nodes and
//! printed as it arrives.

use std::io::Write;

use anyhow::{Context as _, Result, bail};
use berth_api::Kind;
use berth_api::quic;
use berth_api::wire::{Request, Response};

use crate::client::Client;

/// Whose logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One instance, by name.
    Instance(String),
    /// Every instance of a Deployment; lines are prefixed `[INSTANCE] `.
    Deployment(String),
}

/// Parses `NAME`, `instance/NAME` or `deployment/NAME` (`deploy/NAME`).
pub fn parse_target(text: &str) -> Result<Target> {
    let (kind, name) = match text.split_once('/') {
        None => (Kind::Instance, text),
        Some((kind, name)) => match Kind::from_cli_name(kind) {
            Some(kind @ (Kind::Instance | Kind::Deployment)) => (kind, name),
            _ => bail!("logs are for instances and deployments, not {kind:?}"),
        },
    };
    if name.is_empty() {
        bail!("the name in {text:?} is empty");
    }
    Ok(match kind {
        Kind::Deployment => Target::Deployment(name.to_owned()),
        _ => Target::Instance(name.to_owned()),
    })
}

/// Parses a duration such as `10s`, `5m`, `1h` or `1h30m` into seconds.
pub fn parse_since(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid duration {text:?}: expected e.g. 10s, 5m, 1h or 1h30m");
    let mut seconds: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(invalid()),
        };
        let value: u64 = number.parse().map_err(|_| invalid())?;
        number.clear();
        seconds = value
            .checked_mul(unit)
            .and_then(|v| seconds.checked_add(v))
            .ok_or_else(invalid)?;
    }
    if !number.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(seconds)
}

/// What to print.
#[derive(Debug, Clone)]
pub struct Query {
    /// The namespace of the instance or Deployment.
    pub namespace: String,
    /// Whose logs.
    pub target: Target,
    /// Only the last N lines of each instance.
    pub tail: Option<u64>,
    /// Only lines of the last this many seconds.
    pub since_seconds: Option<u64>,
    /// Keep printing new lines until interrupted or the instances stop.
    pub follow: bool,
}

/// Writes the lines `query` selects to `out` as they arrive. Ends when the
/// scheduler ends the stream, or quietly when `out` is closed (`| head`).
pub async fn logs(client: &Client, query: &Query, out: &mut impl Write) -> Result<()> {
    let (instance, deployment) = match &query.target {
        Target::Instance(name) => (Some(name.clone()), None),
        Target::Deployment(name) => (None, Some(name.clone())),
    };
    let mut recv = client
        .open(&Request::Logs {
            namespace: query.namespace.clone(),
            instance,
            deployment,
            tail: query.tail,
            since_seconds: query.since_seconds,
            follow: query.follow,
        })
        .await?;
    loop {
        match quic::recv_frame::<Response>(&mut recv).await? {
            Some(Response::LogLines(lines)) => {
                let written = lines
                    .iter()
                    .try_for_each(|line| writeln!(out, "{line}"))
                    .and_then(|()| out.flush());
                match written {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("cannot write to stdout"),
                }
            }
            Some(Response::Error(e)) => bail!("{e}"),
            Some(other) => bail!("unexpected answer {other:?}"),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_like_kubectl() {
        assert_eq!(
            parse_target("hello-abc12").unwrap(),
            Target::Instance("hello-abc12".into())
        );
        assert_eq!(
            parse_target("deployment/hello").unwrap(),
            Target::Deployment("hello".into())
        );
        assert_eq!(
            parse_target("deploy/hello").unwrap(),
            Target::Deployment("hello".into())
        );
        assert_eq!(
            parse_target("instance/h-1").unwrap(),
            Target::Instance("h-1".into())
        );
        assert!(parse_target("node/n1").is_err());
        assert!(parse_target("deployment/").is_err());
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(parse_since("10s"), Ok(10));
        assert_eq!(parse_since("5m"), Ok(300));
        assert_eq!(parse_since("1h"), Ok(3600));
        assert_eq!(parse_since("1h30m5s"), Ok(5405));
        for bad in ["", "10", "s", "1d", "-1s", "1.5h", "99999999999999999999s"] {
            assert!(parse_since(bad).is_err(), "{bad:?}");
        }
    }
}
