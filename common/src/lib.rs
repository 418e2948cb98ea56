//! What `vigil-agent` and `vigil-watchdog` share: how they log, how they reach AWS and how they
//! report config errors.

pub mod aws;
pub mod config_default;
pub mod config_error;
pub mod error_text;
pub mod fuzzing;
pub mod logging;
