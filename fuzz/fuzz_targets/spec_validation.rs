#![no_main]
//! Fuzz target `spec_validation`: the check of the same name in tests/fuzz/props.rs.

#[path = "../../tests/fuzz/props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::spec_validation(data));
