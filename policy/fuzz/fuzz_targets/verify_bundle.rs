//! Arbitrary bytes as a signed bundle: decoding and verification refuse or accept, never
//! panic, and accept only what the trusted key signed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| policy::fuzzing::verify_bytes(data));
