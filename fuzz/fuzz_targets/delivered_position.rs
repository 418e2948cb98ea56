#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_agent::fuzzing::delivered_position(data));
