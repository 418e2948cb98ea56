//! From period aggregates to PutMetricData requests within every limit: at most 1,000 metric
//! data per request, at most 150 distinct values per datum (more become further data of the
//! same series and time), at most 30 dimensions, and an estimated body under 1 MB.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};

use super::aggregate::{Aggregate, SeriesKey};
use crate::sinks::driver::Payload;

pub const MAX_DATA_PER_REQUEST: usize = 1_000;
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// PutMetricData bodies are limited to 1 MB; the estimate below is rough, so keep a margin.
const MAX_REQUEST_BYTES: usize = 800_000;

/// One datum to send, before it becomes the SDK's type.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub key: SeriesKey,
    pub timestamp_ms: i64,
    pub value: DatumValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DatumValue {
    Value(f64),
    Stats {
        min: f64,
        max: f64,
        sum: f64,
        count: f64,
    },
    /// At most `MAX_VALUES_PER_DATUM` entries.
    Values(Vec<f64>, Vec<f64>),
}

impl Datum {
    /// Rough size in the form-encoded (awsQuery) body.
    pub fn estimated_bytes(&self) -> usize {
        let dims: usize = self
            .key
            .dimensions
            .iter()
            .map(|(k, v)| 80 + k.len() + v.len())
            .sum();
        let values = match &self.value {
            DatumValue::Value(_) => 40,
            DatumValue::Stats { .. } => 200,
            DatumValue::Values(v, _) => v.len() * 100,
        };
        150 + self.key.name.len() + dims + values
    }

    pub fn to_sdk(&self, storage_resolution: i32) -> MetricDatum {
        let mut b = MetricDatum::builder()
            .metric_name(&self.key.name)
            .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_millis(
                self.timestamp_ms,
            ))
            .unit(StandardUnit::from(self.key.unit))
            .set_dimensions(Some(
                self.key
                    .dimensions
                    .iter()
                    .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                    .collect(),
            ));
        if storage_resolution == 1 {
            b = b.storage_resolution(1);
        }
        b = match &self.value {
            DatumValue::Value(v) => b.value(*v),
            DatumValue::Stats {
                min,
                max,
                sum,
                count,
            } => b.statistic_values(
                StatisticSet::builder()
                    .minimum(*min)
                    .maximum(*max)
                    .sum(*sum)
                    .sample_count(*count)
                    .build(),
            ),
            DatumValue::Values(v, c) => b.set_values(Some(v.clone())).set_counts(Some(c.clone())),
        };
        b.build()
    }
}

/// The data of one period aggregate (several when it has more than 150 distinct values).
pub fn data_of(start_ms: i64, key: SeriesKey, agg: Aggregate, out: &mut Vec<Datum>) {
    match agg {
        Aggregate::Sum(v) => out.push(Datum {
            key,
            timestamp_ms: start_ms,
            value: DatumValue::Value(v),
        }),
        Aggregate::Stats {
            min,
            max,
            sum,
            count,
        } => out.push(Datum {
            key,
            timestamp_ms: start_ms,
            value: DatumValue::Stats {
                min,
                max,
                sum,
                count,
            },
        }),
        Aggregate::Values(map) => {
            let pairs: Vec<(f64, f64)> = map.into_iter().map(|(v, n)| (v.0, n)).collect();
            for chunk in pairs.chunks(MAX_VALUES_PER_DATUM) {
                out.push(Datum {
                    key: key.clone(),
                    timestamp_ms: start_ms,
                    value: DatumValue::Values(
                        chunk.iter().map(|p| p.0).collect(),
                        chunk.iter().map(|p| p.1).collect(),
                    ),
                });
            }
        }
    }
}

/// One PutMetricData call: one namespace, within the count and size limits.
#[derive(Debug, Default)]
pub struct Request {
    pub namespace: String,
    pub data: Vec<Datum>,
}

impl Payload for Request {
    fn items(&self) -> usize {
        self.data.len()
    }

    /// Halves (to isolate a datum the service refuses).
    fn split(mut self) -> Result<(Request, Request), Request> {
        let b = self.data.split_off(self.data.len() / 2);
        let namespace = self.namespace.clone();
        Ok((self, Request { namespace, data: b }))
    }
}

/// Groups data by namespace and cuts requests at 1,000 data or the size limit.
pub fn requests(mut data: Vec<Datum>, max_data: usize) -> Vec<Request> {
    data.sort_by(|a, b| a.key.namespace.cmp(&b.key.namespace));
    let mut out: Vec<Request> = Vec::new();
    let mut bytes = 0;
    for d in data {
        let size = d.estimated_bytes();
        let start_new = match out.last() {
            None => true,
            Some(r) => {
                r.namespace != d.key.namespace
                    || r.data.len() >= max_data
                    || bytes + size > MAX_REQUEST_BYTES
            }
        };
        if start_new {
            out.push(Request {
                namespace: d.key.namespace.clone(),
                data: Vec::new(),
            });
            bytes = 0;
        }
        bytes += size;
        out.last_mut().expect("pushed").data.push(d);
    }
    out
}

/// UCUM (as OpenTelemetry writes units) → CloudWatch `StandardUnit`.
pub fn standard_unit(ucum: &str) -> &'static str {
    match ucum {
        "s" => "Seconds",
        "ms" => "Milliseconds",
        "us" | "µs" => "Microseconds",
        "By" => "Bytes",
        "kBy" | "KiBy" => "Kilobytes",
        "MBy" | "MiBy" => "Megabytes",
        "GBy" | "GiBy" => "Gigabytes",
        "TBy" | "TiBy" => "Terabytes",
        "bit" => "Bits",
        "kbit" | "Kibit" => "Kilobits",
        "Mbit" | "Mibit" => "Megabits",
        "Gbit" | "Gibit" => "Gigabits",
        "Tbit" | "Tibit" => "Terabits",
        "%" => "Percent",
        "By/s" => "Bytes/Second",
        "kBy/s" | "KiBy/s" => "Kilobytes/Second",
        "MBy/s" | "MiBy/s" => "Megabytes/Second",
        "GBy/s" | "GiBy/s" => "Gigabytes/Second",
        "bit/s" => "Bits/Second",
        "kbit/s" | "Kibit/s" => "Kilobits/Second",
        "Mbit/s" | "Mibit/s" => "Megabits/Second",
        "Gbit/s" | "Gibit/s" => "Gigabits/Second",
        "1/s" | "{count}/s" => "Count/Second",
        // `{request}`, `{packet}`, ...: annotations of a plain count.
        u if u.starts_with('{') && u.ends_with('}') => "Count",
        u if u.starts_with('{') && u.ends_with("}/s") => "Count/Second",
        _ => "None",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::cloudwatch_metrics::aggregate::OrdF64;

    fn key(ns: &str, name: &str) -> SeriesKey {
        SeriesKey {
            namespace: ns.into(),
            name: name.into(),
            dimensions: vec![],
            unit: "None",
        }
    }

    #[test]
    fn splits_values_per_datum_and_data_per_request() {
        let map = (0..400).map(|i| (OrdF64(i as f64), 1.0)).collect();
        let mut data = Vec::new();
        data_of(0, key("A", "lat"), Aggregate::Values(map), &mut data);
        assert_eq!(data.len(), 3);
        for i in 0..2500 {
            data_of(
                0,
                key("B", &format!("m{i}")),
                Aggregate::Sum(1.0),
                &mut data,
            );
        }
        let reqs = requests(data, MAX_DATA_PER_REQUEST);
        let sizes: Vec<_> = reqs
            .iter()
            .map(|r| (r.namespace.as_str(), r.data.len()))
            .collect();
        assert_eq!(sizes, vec![("A", 3), ("B", 1000), ("B", 1000), ("B", 500)]);
    }

    #[test]
    fn maps_units() {
        assert_eq!(standard_unit("ms"), "Milliseconds");
        assert_eq!(standard_unit("By/s"), "Bytes/Second");
        assert_eq!(standard_unit("{request}"), "Count");
        assert_eq!(standard_unit("1"), "None");
        assert_eq!(standard_unit("furlong"), "None");
    }
}
