//! The watchdog end to end against real local servers: moto's server for CloudWatch, Auto
//! Scaling, ELBv2, RDS and DynamoDB, a local HTTP server for synthetic checks, and the real
//! `vigil-watchdog` binary. Metric data is put by the test and read back by the watchdog.
//!
//! All scenarios are modules of this one test binary (laid out like `watchdog/src`), so the AWS
//! SDKs are linked once.

// `render` and `report`: dashboards, alarms and the SLO report.
mod dashboards;

mod checks;
mod lambda;
mod notify;
mod slo;
mod support;
