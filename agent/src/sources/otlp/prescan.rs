//! Counting a request's items before decoding it. Decoding multiplies memory: an empty log
//! record is two bytes on the wire and a couple of hundred bytes decoded, so four megabytes of
//! them would take hundreds of megabytes before any limit on decoded events could act. The
//! count is read straight off the encoding (protobuf fields, or JSON objects) and checked
//! against the request's memory share first.

/// Bytes one decoded item (a protobuf `Span`, `LogRecord` or data point, before conversion)
/// is taken to cost, besides its own bytes on the wire: the message struct and its vectors.
pub const ITEM_COST: usize = 256;

/// An upper bound on the items a JSON body decodes into: every item is an object.
pub fn json_items(body: &[u8]) -> usize {
    memchr::memchr_iter(b'{', body).count()
}

/// The items (spans, log records, metric data points) of a protobuf export request, or `None`
/// when the encoding is broken (the decoder will say how).
pub fn protobuf_items(body: &[u8], signal: super::Signal) -> Option<usize> {
    use super::Signal;
    // Paths of length-delimited fields from the request down to the items:
    // request.resource_*(1) → scope_*(2) → spans / log_records / metrics (2).
    let mut count = 0;
    for resource in fields(body, 1) {
        for scope in fields(resource?, 2) {
            for item in fields(scope?, 2) {
                let item = item?;
                match signal {
                    Signal::Traces | Signal::Logs => count += 1,
                    Signal::Metrics => {
                        // Metric.data: gauge 5, sum 7, histogram 9, exponential 10, summary 11;
                        // each holds data_points (1).
                        count += 1;
                        for data in [5, 7, 9, 10, 11] {
                            for points in fields(item, data) {
                                count += fields(points?, 1).count();
                            }
                        }
                    }
                }
            }
        }
    }
    Some(count)
}

/// The length-delimited fields numbered `wanted` of one message, in order; `Some(Err)`-like
/// `None` items mark a broken encoding.
fn fields(mut msg: &[u8], wanted: u64) -> impl Iterator<Item = Option<&[u8]>> {
    std::iter::from_fn(move || {
        loop {
            if msg.is_empty() {
                return None;
            }
            let Some(key) = varint(&mut msg) else {
                msg = &[];
                return Some(None);
            };
            let (number, wire) = (key >> 3, key & 7);
            let skipped = match wire {
                0 => varint(&mut msg).map(|_| None),
                1 => take(&mut msg, 8).map(|_| None),
                5 => take(&mut msg, 4).map(|_| None),
                2 => varint(&mut msg)
                    .and_then(|len| take(&mut msg, usize::try_from(len).ok()?))
                    .map(Some),
                _ => None.map(Some),
            };
            match skipped {
                None => {
                    msg = &[];
                    return Some(None);
                }
                Some(Some(bytes)) if number == wanted && wire == 2 => return Some(Some(bytes)),
                Some(_) => {}
            }
        }
    })
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
    use crate::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
    use crate::otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use crate::otlp::proto::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
    };
    use crate::sources::otlp::Signal;
    use prost::Message;

    #[test]
    fn counts_items_off_the_wire() {
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![
                ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![LogRecord::default(); 3],
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                2
            ],
        };
        let body = logs.encode_to_vec();
        assert_eq!(protobuf_items(&body, Signal::Logs), Some(6));
        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint::default(); 5],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = metrics.encode_to_vec();
        assert_eq!(protobuf_items(&body, Signal::Metrics), Some(6));
        // Cut short: broken.
        assert_eq!(
            protobuf_items(&body[..body.len() - 1], Signal::Metrics),
            None
        );
        assert_eq!(json_items(br#"{"resourceLogs":[{"scopeLogs":[{}]}]}"#), 3);
    }
}
