//! Resources for events that came without one (file logs, host metrics): built from the
//! attributes the `enrich` processor adds, under the OpenTelemetry names New Relic uses to attach
//! data to host and service entities. Events with the same values share one resource, so they
//! stay in one group of a request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::{Attributes, Resource};

/// enrich attribute → resource attribute.
const MAPPING: &[(&str, &str)] = &[
    ("module", "service.name"),
    ("host", "host.name"),
    ("instance_id", "host.id"),
    ("region", "cloud.region"),
    ("availability_zone", "cloud.availability_zone"),
];

/// Distinct resources kept; more (a sign of unbounded values) start the cache over.
const MAX_CACHED: usize = 1024;

#[derive(Default)]
pub struct EntityResources {
    cache: HashMap<Vec<Option<String>>, Arc<Resource>>,
}

impl EntityResources {
    /// The resource for an event with these attributes; `None` when it has none of them.
    pub fn for_attributes(&mut self, attrs: &Attributes) -> Option<Arc<Resource>> {
        let values: Vec<Option<String>> = MAPPING
            .iter()
            .map(|(from, _)| attrs.get(*from).and_then(|v| v.as_str()).map(str::to_owned))
            .collect();
        if values.iter().all(Option::is_none) {
            return None;
        }
        if let Some(r) = self.cache.get(&values) {
            return Some(Arc::clone(r));
        }
        let mut attributes = Attributes::new();
        for ((_, to), v) in MAPPING.iter().zip(&values) {
            if let Some(v) = v {
                attributes.insert((*to).to_owned(), v.clone().into());
            }
        }
        if attributes.contains_key("host.id") {
            attributes.insert("cloud.provider".into(), "aws".into());
            attributes.insert("cloud.platform".into(), "aws_ec2".into());
        }
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        let r = Arc::new(Resource { attributes });
        self.cache.insert(values, Arc::clone(&r));
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrich_attributes_become_one_shared_resource() {
        let mut e = EntityResources::default();
        let attrs: Attributes = serde_json::from_value(serde_json::json!({
            "module": "checkout", "host": "ip-10-0-0-1", "instance_id": "i-0abc", "region": "eu-west-1", "level": "info"
        }))
        .unwrap();
        let a = e.for_attributes(&attrs).unwrap();
        let b = e.for_attributes(&attrs).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.attributes["service.name"], "checkout");
        assert_eq!(a.attributes["host.id"], "i-0abc");
        assert_eq!(a.attributes["host.name"], "ip-10-0-0-1");
        assert_eq!(a.attributes["cloud.provider"], "aws");
        assert!(e.for_attributes(&Attributes::new()).is_none());
    }
}
