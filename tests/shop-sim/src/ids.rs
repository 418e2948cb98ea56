//! Trace and span ids in the X-Ray-compatible form: a trace id's first four bytes are its start
//! time in epoch seconds (X-Ray refuses ids older than 30 days), the rest comes from the seeded
//! generator.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::IdGenerator;

#[derive(Debug, Clone)]
pub struct XRayIds {
    rng: Arc<Mutex<fastrand::Rng>>,
}

impl XRayIds {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Arc::new(Mutex::new(fastrand::Rng::with_seed(seed ^ 0x05ee_d1d5))),
        }
    }
}

impl IdGenerator for XRayIds {
    fn new_trace_id(&self) -> TraceId {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let mut rng = self.rng.lock().expect("not poisoned");
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&secs.to_be_bytes());
        for b in &mut bytes[4..] {
            *b = rng.u8(..);
        }
        TraceId::from_bytes(bytes)
    }

    fn new_span_id(&self) -> SpanId {
        let mut rng = self.rng.lock().expect("not poisoned");
        // Zero is the invalid span id.
        SpanId::from_bytes(rng.u64(1..).to_be_bytes())
    }
}
