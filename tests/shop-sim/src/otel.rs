//! One OpenTelemetry tracer provider per module, each with its own resource, exporting OTLP
//! through the official exporter (gRPC via tonic, or HTTP/protobuf).

use std::time::Duration;

use anyhow::Context;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};

use crate::ids::XRayIds;
use crate::{Args, Protocol};

pub struct Exporters {
    endpoint: Option<(String, Protocol)>,
    ids: XRayIds,
    /// The gRPC exporter's connection lives on this runtime.
    handle: tokio::runtime::Handle,
}

impl Exporters {
    pub fn new(args: &Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Self> {
        let endpoint = args.otlp_endpoint.as_ref().map(|e| {
            let e = e.trim_end_matches('/').to_owned();
            let protocol = match args.protocol {
                Protocol::Auto if e.ends_with(":4318") => Protocol::Http,
                Protocol::Auto => Protocol::Grpc,
                p => p,
            };
            (e, protocol)
        });
        Ok(Self {
            endpoint,
            ids: XRayIds::new(args.seed),
            handle: runtime.handle().clone(),
        })
    }

    /// A provider for one module (`service.name` = `module`).
    pub fn provider(&self, module: &str) -> anyhow::Result<(SdkTracerProvider, SdkTracer)> {
        let resource = Resource::builder_empty()
            .with_service_name(module.to_owned())
            .with_attributes([
                KeyValue::new("service.namespace", "shop"),
                KeyValue::new("deployment.environment.name", "test"),
                KeyValue::new("host.name", format!("{module}-sim")),
            ])
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_id_generator(self.ids.clone());
        if let Some((endpoint, protocol)) = &self.endpoint {
            let exporter = match protocol {
                Protocol::Http => opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(format!("{endpoint}/v1/traces"))
                    .with_timeout(Duration::from_secs(10))
                    .with_headers(Default::default())
                    .build(),
                _ => {
                    // tonic's channel spawns its connection task on the current runtime.
                    let _guard = self.handle.enter();
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint.clone())
                        .with_timeout(Duration::from_secs(10))
                        .build()
                }
            }
            .with_context(|| format!("OTLP exporter for {endpoint}"))?;
            // A queue large enough that a test run never drops spans inside the SDK.
            let config = BatchConfigBuilder::default()
                .with_max_queue_size(1 << 18)
                .with_max_export_batch_size(512)
                .with_scheduled_delay(Duration::from_millis(200))
                .build();
            builder = builder.with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(config)
                    .build(),
            );
        }
        let provider = builder.build();
        let tracer = provider.tracer("vigil-shop-sim");
        Ok((provider, tracer))
    }
}
