//! Bytes a scheduler sends back: nodes and the CLI decode them. Decoding
//! must never panic, and what decodes must round-trip.
#![no_main]

use berth_api::wire::{Response, decode_body, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = decode_body::<Response>(data) else {
        return;
    };
    let Ok(frame) = encode_frame(&response) else {
        return;
    };
    let body = frame.get(4..).unwrap_or_default();
    let again = decode_body::<Response>(body).expect("a re-encoded response decodes");
    let frame_again = encode_frame(&again).expect("a decoded response encodes");
    assert_eq!(frame, frame_again, "response changed across a round trip");
});
