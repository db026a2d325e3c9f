//! Arbitrary requests against a compiled estate: no panic, no allow without credentials
//! past authentication, whatever the path's spelling.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| policy::fuzzing::evaluate_bytes(data));
