#![no_main]
// The watchdog is a binary crate: its spec loader (spec/, which needs only serde, yaml_serde,
// jiff and vigil-common's config errors) is compiled into this target from its sources.
#![allow(dead_code, unused_imports)]

#[path = "../../watchdog/src/spec/mod.rs"]
mod spec;

libfuzzer_sys::fuzz_target!(|data: &[u8]| spec::fuzzing::spec_loader(data));
