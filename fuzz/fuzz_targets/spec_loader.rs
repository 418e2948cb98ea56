#![no_main]
// The watchdog is a binary crate: its spec loader (spec/ and notify/config.rs, which need only
// serde, yaml_serde and jiff) is compiled into this target from its sources.
#![allow(dead_code, unused_imports)]

#[path = "../../watchdog/src/spec/mod.rs"]
mod spec;

#[path = "../../watchdog/src/notify/config.rs"]
pub mod notify_config;

/// Where the spec module looks for its receivers' settings (`crate::notify::config`).
mod notify {
    pub use super::notify_config as config;
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| spec::fuzzing::spec_loader(data));
