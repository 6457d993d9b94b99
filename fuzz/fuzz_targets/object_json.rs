//! An object's JSON form as a client sends it in `Request::Apply`: the
//! scheduler decodes and validates it. Neither step may panic.
#![no_main]

use berth_api::Object;
use berth_api::validate::validate_object;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(object) = Object::from_json(data) {
        let _ = validate_object(&object);
        let _ = object.describe();
    }
});
