//! Bytes a peer sends as a request frame's body: the scheduler decodes them
//! before it knows who sent them. Decoding must never panic, and whatever
//! decodes must encode again to bytes that decode to the same request.
#![no_main]

use berth_api::wire::{Request, decode_body, decode_request_body, encode_request_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_body::<Request>(data);
    let Ok((request, trace)) = decode_request_body(data) else {
        return;
    };
    let Ok(frame) = encode_request_frame(&request, trace.as_ref()) else {
        return;
    };
    let body = frame.get(4..).unwrap_or_default();
    let (again, trace_again) = decode_request_body(body).expect("a re-encoded request decodes");
    // Compare encodings rather than values: floats may hold NaN.
    let frame_again =
        encode_request_frame(&again, trace_again.as_ref()).expect("a decoded request encodes");
    assert_eq!(frame, frame_again, "request changed across a round trip");
});
