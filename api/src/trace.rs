//! W3C trace context (`traceparent`) as berth carries it between processes.
//!
//! A trace starts in the CLI (`berth apply`), travels with the request to
//! the scheduler (a frame trailer, see [`crate::wire::encode_request_frame`]),
//! is recorded on the objects the request creates
//! ([`ANNOTATION`] in `metadata.annotations`), rides on the node's
//! [`crate::wire::Assignment`], and from the node's ingress into the
//! component's outbound HTTP calls (the [`HEADER`] header).
//!
//! [`TraceParent`] is the text form, parsed and printed without
//! dependencies. With the `otel` feature, [`current`], [`of`] and
//! [`set_parent`] join it to the OpenTelemetry context of `tracing` spans
//! (through `tracing-opentelemetry`); without an OpenTelemetry layer in the
//! process's subscriber they do nothing, so untraced processes pay nothing.
//!
//! Out of scope: `tracestate` (not carried), baggage, sampling decisions
//! other than the `sampled` flag.

use std::fmt;

/// The annotation on a Deployment or Job holding the trace context of the
/// request that created it.
pub const ANNOTATION: &str = "berth.dev/traceparent";

/// The HTTP header carrying the trace context.
pub const HEADER: &str = "traceparent";

/// A W3C `traceparent`: `00-<trace id, 32 hex>-<parent id, 16 hex>-<flags, 2 hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace id; never all zeros.
    pub trace_id: [u8; 16],
    /// The id of the parent span; never all zeros.
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

impl TraceParent {
    /// Parses the header value; `None` when it is not a valid version-00
    /// `traceparent` (the W3C rule: an invalid header is ignored). Later
    /// versions are read by their first four fields, as the spec asks.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let text = text.trim();
        let mut parts = text.split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let parent_id = parts.next()?;
        let flags = parts.next()?;
        let rest = parts.next();
        let [version] = hex_bytes::<1>(version)?;
        // Version ff is forbidden; version 00 has exactly four fields.
        if version == 0xff || (version == 0 && rest.is_some()) {
            return None;
        }
        let [flags] = hex_bytes::<1>(flags)?;
        let parsed = TraceParent {
            trace_id: hex_bytes(trace_id)?,
            parent_id: hex_bytes(parent_id)?,
            flags,
        };
        parsed.is_valid().then_some(parsed)
    }

    /// Whether neither id is all zeros.
    pub fn is_valid(&self) -> bool {
        self.trace_id != [0; 16] && self.parent_id != [0; 8]
    }

    /// Whether the `sampled` flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly `N` bytes from `2 * N` lowercase hex digits (W3C forbids
/// uppercase).
fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let (high, low) = match pair {
            [high, low] => (digit(*high)?, digit(*low)?),
            _ => return None,
        };
        *slot = high << 4 | low;
    }
    Some(out)
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::Context;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::TraceParent;

    /// The trace context of the current `tracing` span, if it is part of an
    /// OpenTelemetry trace.
    pub fn current() -> Option<TraceParent> {
        of(&tracing::Span::current())
    }

    /// The trace context of `span`, naming it as the parent, if it is part
    /// of an OpenTelemetry trace.
    pub fn of(span: &tracing::Span) -> Option<TraceParent> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let otel = context.span();
        let span_context = otel.span_context();
        if !span_context.is_valid() {
            return None;
        }
        Some(TraceParent {
            trace_id: span_context.trace_id().to_bytes(),
            parent_id: span_context.span_id().to_bytes(),
            flags: span_context.trace_flags().to_u8(),
        })
    }

    /// Makes `span` a child of the remote span `parent` (before it is first
    /// entered); nothing without an OpenTelemetry layer.
    pub fn set_parent(span: &tracing::Span, parent: &TraceParent) {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.parent_id),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        // Errors mean no layer, a disabled span or one already started: the
        // span then stays in its own trace, which is all that can be done.
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }

    /// [`set_parent`] from a `traceparent` text; nothing when it is empty
    /// or invalid.
    pub fn set_parent_text(span: &tracing::Span, parent: &str) {
        if let Some(parent) = TraceParent::parse(parent) {
            set_parent(span, &parent);
        }
    }
}

#[cfg(feature = "otel")]
pub use otel::{current, of, set_parent, set_parent_text};

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_w3c_example() {
        let parsed = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            parsed.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(parsed.sampled());
        assert_eq!(parsed.to_string(), EXAMPLE);
    }

    #[test]
    fn invalid_values_are_ignored() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?} parsed");
        }
    }

    #[test]
    fn later_versions_are_read_by_their_first_fields() {
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-next";
        let parsed = TraceParent::parse(future).unwrap();
        assert_eq!(parsed.to_string(), EXAMPLE);
    }
}
