//! A manifest file as `berth apply -f` reads it. Parsing must never panic,
//! and every object it accepts must be accepted again by the scheduler,
//! which decodes the JSON form the CLI sends and validates it once more.
#![no_main]

use berth_api::Object;
use berth_api::manifest::parse_manifests;
use berth_api::validate::validate_object;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = parse_manifests("fuzz.yaml", text) else {
        return;
    };
    for object in objects {
        let json = object.to_json();
        let decoded = Object::from_json(&json).expect("an accepted object decodes from its JSON");
        if let Err(error) = validate_object(&decoded) {
            panic!("{}: accepted from YAML, refused from JSON: {error}", object.describe());
        }
    }
});
