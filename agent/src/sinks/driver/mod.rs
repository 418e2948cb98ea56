//! The delivery driver every network sink shares: what happens between "an event reached the
//! sink" and "its batch is acknowledged".
//!
//! A sink supplies two small things and the driver does the rest:
//! - an [`Open`] request: how items gather into one request within the backend's limits;
//! - a [`Backend`]: how to send one request once and what the answer means ([`Verdict`]).
//!
//! The driver ([`run`]) gathers items per key into requests cut by size, count and age
//! ([`Batches`]), hands closed requests to [`Dispatch`] (a concurrency limit, and for sinks that
//! need it one request in flight per key, in order), and [`Delivery`] sends each one until it
//! is answered for good: full-jitter backoff, `Retry-After`, halving a refused request until the
//! item at fault is alone, re-sending items the backend left unprocessed. Only then are the
//! request's acknowledgements settled, each exactly once. What it counts is written on
//! [`Delivery`].

mod backend;
mod backoff;
mod batches;
mod delivery;
mod dispatch;
mod run;
pub mod settings;
#[cfg(test)]
mod tests;

pub use backend::{Backend, ErrorNames, Job, Payload, Verdict};
pub use backoff::backoff;
pub use batches::{Batches, Open, TooLarge};
pub use delivery::{Delivery, RetryPolicy, Tally};
pub use dispatch::{Dispatch, Lanes};
pub use run::{Intake, Ready, Schedule, run, sleep_until_due};
