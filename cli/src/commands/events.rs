//! `berth events [-n NS | -A] [-w] [--for KIND/NAME]`: what happened in the
//! cluster, oldest first, as `kubectl events` lists it.
//!
//! One `Events` request on its own stream: the scheduler sends the events
//! that exist in one frame and, with `-w`, a frame with the new or counted
//! again ones on every change (see `scheduler/src/server/events.rs`), so
//! nothing here polls. Each frame becomes a [`Batch`] that
//! [`crate::render::events`] prints.

use anyhow::{Context as _, Result, bail};
use berth_api::quic;
use berth_api::wire::{Request, Response};
use berth_api::{Event, Kind, Object};

use crate::client::Client;

/// Which events.
#[derive(Debug, Clone)]
pub struct Query {
    /// A namespace, or `None` for all.
    pub namespace: Option<String>,
    /// Only those about this object.
    pub involved: Option<(Kind, String)>,
    /// Keep listening.
    pub watch: bool,
}

/// The events of one frame, oldest `lastTimestamp` first; the first
/// batch holds what existed when the command started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Whether this is the first batch (printed with the header).
    pub first: bool,
    /// The events.
    pub events: Vec<Event>,
}

/// Parses `--for KIND/NAME` (`deployment/hello`, `node/n1`, `inst/x`).
pub fn parse_for(text: &str) -> Result<(Kind, String)> {
    let (kind, name) = text
        .split_once('/')
        .with_context(|| format!("--for {text:?}: expected KIND/NAME"))?;
    let kind = Kind::from_cli_name(kind)
        .with_context(|| format!("--for {text:?}: unknown kind {kind:?}"))?;
    if name.is_empty() {
        bail!("--for {text:?}: the name is empty");
    }
    Ok((kind, name.to_owned()))
}

/// Reads events as `query` asks and hands each batch to `each`, which
/// returns `false` to stop (stdout closed). Without `watch`, there is one
/// batch; with it, batches come until the scheduler ends the stream or the
/// process is interrupted.
pub async fn events(
    client: &Client,
    query: &Query,
    mut each: impl FnMut(Batch) -> Result<bool>,
) -> Result<()> {
    let mut recv = client
        .open(&Request::Events {
            namespace: query.namespace.clone(),
            involved: query.involved.clone(),
            watch: query.watch,
        })
        .await?;
    let mut first = true;
    loop {
        match quic::recv_frame::<Response>(&mut recv).await? {
            Some(Response::Objects(raw)) => {
                let mut events = raw
                    .iter()
                    .map(|bytes| match Object::from_json(bytes) {
                        Ok(Object::Event(event)) => Ok(*event),
                        Ok(other) => bail!("scheduler sent a {} among events", other.kind()),
                        Err(e) => bail!("scheduler sent a malformed event: {e}"),
                    })
                    .collect::<Result<Vec<Event>>>()?;
                events.sort_by(|a, b| {
                    (a.last_timestamp, &a.metadata.name).cmp(&(b.last_timestamp, &b.metadata.name))
                });
                if !each(Batch { first, events })? {
                    return Ok(());
                }
                first = false;
            }
            Some(Response::Error(e)) => bail!("{e}"),
            Some(other) => bail!("unexpected answer {other:?}"),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn for_reads_kind_slash_name() {
        assert_eq!(
            parse_for("deployment/hello").unwrap(),
            (Kind::Deployment, "hello".into())
        );
        assert_eq!(parse_for("no/n1").unwrap(), (Kind::Node, "n1".into()));
        assert!(parse_for("hello").is_err());
        assert!(parse_for("widget/x").is_err());
        assert!(parse_for("instance/").is_err());
    }
}
