//! Embedded Metric Format: each aggregated datum becomes one JSON log event that CloudWatch
//! Logs turns into a metric (billed as log ingestion instead of PutMetricData calls, and with
//! no per-request limit on dimension values: suited to high-cardinality application metrics).
//!
//! ```json
//! {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"Shop",
//!   "Dimensions":[["Module","route"]],"Metrics":[{"Name":"latency","Unit":"Milliseconds"}]}]},
//!  "Module":"checkout","route":"/pay","latency":{"Values":[12,40],"Counts":[3,1],
//!  "Min":12,"Max":40,"Count":4,"Sum":76}}
//! ```
//! Counters are plain numbers (the period's total); gauges and distributions use the
//! Values/Counts object with exact Min, Max, Count and Sum (a gauge's one value is its mean).

use serde_json::{Map, Value, json};

use super::request::{Datum, DatumValue};

/// EMF allows at most 100 values in one metric's array.
pub const MAX_VALUES: usize = 100;

/// The log event text for one datum (Values data come here at most `MAX_VALUES` long).
pub fn document(d: &Datum, resolution_secs: u32) -> String {
    let mut metric = Map::new();
    metric.insert("Name".into(), d.key.name.clone().into());
    metric.insert("Unit".into(), d.key.unit.into());
    if resolution_secs == 1 {
        metric.insert("StorageResolution".into(), 1.into());
    }
    let dims: Vec<&str> = d.key.dimensions.iter().map(|(k, _)| k.as_str()).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": d.timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": d.key.namespace,
                "Dimensions": [dims],
                "Metrics": [Value::Object(metric)],
            }],
        }),
    );
    for (k, v) in &d.key.dimensions {
        root.insert(k.clone(), v.clone().into());
    }
    let value = match &d.value {
        DatumValue::Value(v) => json!(v),
        DatumValue::Stats {
            min,
            max,
            sum,
            count,
        } => json!({
            "Values": [if *count > 0.0 { sum / count } else { 0.0 }],
            "Counts": [count],
            "Min": min, "Max": max, "Count": count, "Sum": sum,
        }),
        DatumValue::Values(values, counts) => {
            let count: f64 = counts.iter().sum();
            let sum: f64 = values.iter().zip(counts).map(|(v, c)| v * c).sum();
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            json!({
                "Values": values, "Counts": counts,
                "Min": min, "Max": max, "Count": count, "Sum": sum,
            })
        }
    };
    root.insert(d.key.name.clone(), value);
    Value::Object(root).to_string()
}

/// Splits `Values` data into pieces of at most `MAX_VALUES` values.
pub fn split_for_emf(data: Vec<Datum>) -> Vec<Datum> {
    let mut out = Vec::with_capacity(data.len());
    for d in data {
        match &d.value {
            DatumValue::Values(v, c) if v.len() > MAX_VALUES => {
                for (vs, cs) in v.chunks(MAX_VALUES).zip(c.chunks(MAX_VALUES)) {
                    out.push(Datum {
                        key: d.key.clone(),
                        timestamp_ms: d.timestamp_ms,
                        value: DatumValue::Values(vs.to_vec(), cs.to_vec()),
                    });
                }
            }
            _ => out.push(d),
        }
    }
    out
}
