#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_agent::fuzzing::line_splitter(data));
