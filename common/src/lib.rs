//! What `vigil-agent` and `vigil-watchdog` share: how they log, how they reach AWS, what its errors
//! mean, and how they report config errors.

pub mod aws;
pub mod aws_error;
pub mod config_default;
pub mod config_error;
pub mod error_text;
pub mod fuzzing;
pub mod logging;
