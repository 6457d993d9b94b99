//! `Events` on the scheduler: the events that match, then, with `watch`,
//! the ones added or counted again as they happen, on the caller's stream.
//!
//! Every write that records an event stamps it with the store revision of
//! that write ([`crate::store::Txn::put`]), so the stream needs no log of
//! its own: after sending what exists, it wakes on every change of the
//! store (the same channel the node `Watch` loop uses), reads the events
//! again and sends those whose `resourceVersion` is past the newest one
//! already sent. Changes that come while a frame is being sent are folded
//! into the next read. An event removed by expiry is not told.

use std::sync::Arc;

use berth_api::quic::send_frame;
use berth_api::wire::{ApiError, Response};
use berth_api::{Event, Kind, Object};

use super::blocking;
use crate::cluster::Cluster;

/// An `Events` request.
#[derive(Debug, Clone)]
pub(super) struct Query {
    /// A namespace, or `None` for all.
    pub namespace: Option<String>,
    /// Only events about this kind and name.
    pub involved: Option<(Kind, String)>,
    /// Keep sending.
    pub watch: bool,
}

/// Answers an `Events` request on `send`: the matching events, then with
/// `watch` every new or updated one until the caller stops the stream; an
/// `Error` frame if the store cannot be read.
pub(super) async fn stream(cluster: &Arc<Cluster>, query: Query, send: &mut quinn::SendStream) {
    let mut changes = cluster.subscribe();
    let mut sent_up_to = 0;
    let mut first = true;
    loop {
        changes.mark_unchanged();
        let events = {
            let (cluster, query) = (cluster.clone(), query.clone());
            blocking(move || read(&cluster, &query, sent_up_to)).await
        };
        let events = match events {
            Ok(events) => events,
            Err(error) => {
                let _ = send_frame(send, &Response::Error(error)).await;
                return;
            }
        };
        if first || !events.is_empty() {
            sent_up_to = events.iter().map(revision).max().unwrap_or(sent_up_to);
            let frame = Response::Objects(
                events
                    .into_iter()
                    .map(|e| Object::Event(Box::new(e)).to_json())
                    .collect(),
            );
            if send_frame(send, &frame).await.is_err() {
                return;
            }
        }
        if !query.watch {
            return;
        }
        first = false;
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = send.stopped() => return,
        }
    }
}

/// The events `query` asks for whose revision is past `after`, oldest
/// `lastTimestamp` first.
fn read(cluster: &Cluster, query: &Query, after: u64) -> Result<Vec<Event>, ApiError> {
    let mut events: Vec<Event> = cluster
        .store
        .list(Kind::Event, query.namespace.as_deref())?
        .into_iter()
        .filter_map(|object| match object {
            Object::Event(event) => Some(*event),
            _ => None,
        })
        .filter(|event| revision(event) > after && about(event, query.involved.as_ref()))
        .collect();
    events.sort_by(|a, b| {
        (a.last_timestamp, &a.metadata.name).cmp(&(b.last_timestamp, &b.metadata.name))
    });
    Ok(events)
}

/// Whether `event` is about `involved` (any object when `None`).
fn about(event: &Event, involved: Option<&(Kind, String)>) -> bool {
    involved.is_none_or(|(kind, name)| {
        event.involved_object.kind == kind.as_str() && event.involved_object.name == *name
    })
}

/// The store revision `event` was last written at.
fn revision(event: &Event) -> u64 {
    event
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::events::{Happening, Severity, record};
    use berth_api::ObjectReference;
    use jiff::Timestamp;

    fn reference(kind: &str, name: &str) -> ObjectReference {
        ObjectReference {
            kind: kind.into(),
            namespace: Some("default".into()),
            name: name.into(),
            uid: format!("{name}-uid"),
        }
    }

    #[test]
    fn the_request_keeps_its_wire_form() {
        use berth_api::wire::{Request, decode_body, encode_frame};
        let request = Request::Events {
            namespace: None,
            involved: Some((Kind::Node, "n".into())),
            watch: true,
        };
        let frame = encode_frame(&request).unwrap();
        // Variant 14, None, Some((Kind 3 (Node), "n")), true: the bytes
        // docs/wire-protocol.md shows.
        assert_eq!(frame, [0, 0, 0, 8, 1, 0x0e, 0, 1, 3, 1, b'n', 1]);
        assert_eq!(decode_body::<Request>(&frame[4..]).unwrap(), request);
    }

    #[test]
    fn reads_what_is_new_and_about_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("berth.redb")).unwrap();
        let cluster = Cluster::new(
            store,
            crate::pki::Authority::load_or_create(dir.path()).unwrap(),
        )
        .unwrap();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let happening = |reason: &str| Happening {
            severity: Severity::Normal,
            reason: reason.into(),
            message: reason.into(),
        };
        let (_, first) = cluster
            .store
            .write(|txn| {
                record(
                    txn,
                    &reference("Instance", "a"),
                    &happening("Started"),
                    "node/n",
                    t0,
                )?;
                record(
                    txn,
                    &reference("Node", "n"),
                    &happening("NodeReady"),
                    "scheduler",
                    t0,
                )
            })
            .unwrap();
        let all = Query {
            namespace: None,
            involved: None,
            watch: true,
        };
        assert_eq!(read(&cluster, &all, 0).unwrap().len(), 2);
        assert!(read(&cluster, &all, first).unwrap().is_empty());
        let later = t0 + jiff::SignedDuration::from_secs(5);
        cluster
            .store
            .write(|txn| {
                record(
                    txn,
                    &reference("Instance", "a"),
                    &happening("Started"),
                    "node/n",
                    later,
                )
            })
            .unwrap();
        let counted = read(&cluster, &all, first).unwrap();
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0].count, 2);
        let node = Query {
            involved: Some((Kind::Node, "n".into())),
            ..all
        };
        let about_node = read(&cluster, &node, 0).unwrap();
        assert_eq!(about_node.len(), 1);
        assert_eq!(about_node[0].reason, "NodeReady");
    }
}
