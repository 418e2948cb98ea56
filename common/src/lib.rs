//! What `vigil-agent` and `vigil-watchdog` share: how they log and how they reach AWS.

pub mod aws;
pub mod fuzzing;
pub mod logging;
