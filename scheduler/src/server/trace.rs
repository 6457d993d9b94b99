//! Trace context on the objects a traced `Apply` creates.
//!
//! The request's span continues the caller's trace (its frame trailer, see
//! `berth_api::wire::decode_request_body`); the Deployments and Jobs it
//! applies are annotated with that span's `traceparent`
//! ([`berth_api::trace::ANNOTATION`]), so that their instances' assignments
//! carry it to the nodes (`crate::nodes::assignments`) and a node's work
//! joins the same trace. The annotation is kept from creation: applying the
//! object again keeps the first trace (admission keeps a stored object's
//! metadata but for its labels).

use berth_api::trace::{ANNOTATION, TraceParent};
use berth_api::wire::Request;
use serde_json::Value;

/// Kinds whose instances inherit the trace of the request that made them.
const TRACED_KINDS: [&str; 2] = ["Deployment", "Job"];

/// `request` with the trace context of `span` recorded on each Deployment
/// and Job of an `Apply`; any other request, an untraced span, or an object
/// that is not a JSON object is left as it is (admission reports malformed
/// objects).
pub(super) fn annotate(request: Request, span: &tracing::Span) -> Request {
    let Request::Apply { .. } = &request else {
        return request;
    };
    with_trace(request, berth_api::trace::of(span))
}

fn with_trace(request: Request, trace: Option<TraceParent>) -> Request {
    let (Request::Apply { objects }, Some(trace)) = (&request, trace) else {
        return request;
    };
    let objects = objects
        .iter()
        .map(|raw| annotate_object(raw, &trace).unwrap_or_else(|| raw.clone()))
        .collect();
    Request::Apply { objects }
}

fn annotate_object(raw: &[u8], trace: &TraceParent) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(raw).ok()?;
    let kind = value.get("kind")?.as_str()?;
    if !TRACED_KINDS.contains(&kind) {
        return None;
    }
    let metadata = value.get_mut("metadata")?.as_object_mut()?;
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(serde_json::Map::new()))
        .as_object_mut()?;
    annotations.insert(ANNOTATION.to_owned(), Value::String(trace.to_string()));
    serde_json::to_vec(&value).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn deployments_and_jobs_are_annotated_others_not() {
        let trace =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let deployment =
            br#"{"kind":"Deployment","metadata":{"name":"a","annotations":{"x":"y"}}}"#;
        let namespace = br#"{"kind":"Namespace","metadata":{"name":"n"}}"#;
        let job = br#"{"kind":"Job","metadata":{"name":"j"}}"#;
        let request = Request::Apply {
            objects: vec![
                deployment.to_vec(),
                namespace.to_vec(),
                job.to_vec(),
                b"[".to_vec(),
            ],
        };
        let Request::Apply { objects } = with_trace(request, Some(trace)) else {
            panic!("not an apply");
        };
        let read = |raw: &[u8]| serde_json::from_slice::<Value>(raw).unwrap();
        let d = read(&objects[0]);
        assert_eq!(d["metadata"]["annotations"][ANNOTATION], trace.to_string());
        assert_eq!(d["metadata"]["annotations"]["x"], "y");
        assert_eq!(objects[1], namespace.to_vec());
        assert_eq!(
            read(&objects[2])["metadata"]["annotations"][ANNOTATION],
            trace.to_string()
        );
        assert_eq!(objects[3], b"[".to_vec());
        // Without trace context nothing changes.
        let untouched = Request::Apply {
            objects: vec![job.to_vec()],
        };
        assert_eq!(with_trace(untouched.clone(), None), untouched);
        assert_eq!(
            annotate(untouched.clone(), &tracing::Span::none()),
            untouched
        );
    }
}
