//! The shop: which module calls which, how long each step takes, what fails, and the exact
//! account of it all (the summary).
//!
//! Flows (shares of user requests): login 30 % (proxy → authentication → users database), view
//! cart 35 % (proxy → cart → session store), add to cart 15 % (proxy → cart → inventory →
//! database, session store), checkout 20 % (proxy → checkout → inventory, payment → payment
//! gateway, notification).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use serde::Serialize;

use crate::Args;
use crate::otel::Exporters;

/// The latency threshold the summary counts against (the checkout latency SLO's).
pub const THRESHOLD_NS: u64 = 300_000_000;

pub const MODULES: &[&str] = &[
    "proxy",
    "authentication",
    "cart",
    "checkout",
    "inventory",
    "payment",
    "notification",
];

struct Module {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    log: Option<BufWriter<File>>,
}

/// Counts of one (service, route), computed the way span metrics compute them.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
    pub under_300ms: u64,
}

#[derive(Debug, Serialize)]
pub struct SeriesSummary {
    pub service: String,
    /// `METHOD /route` as span metrics name it.
    pub route: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub requests: u64,
    pub spans: u64,
    pub series: Vec<SeriesSummary>,
    /// Traces with a failed span (status Error or HTTP ≥ 500), as 32 hex digits.
    pub error_trace_ids: Vec<String>,
    /// Traces with a span slower than 300 ms.
    pub slow_trace_ids: Vec<String>,
    /// Every trace id.
    pub trace_ids: Vec<String>,
}

/// What a server answered and when it finished.
#[derive(Debug, Clone, Copy)]
struct Reply {
    end: u64,
    status: u16,
}

/// State of the trace being generated.
#[derive(Default)]
struct TraceState {
    failed: bool,
    slow: bool,
}

pub struct Shop {
    rng: fastrand::Rng,
    seed: u64,
    checkout_failure_rate: f64,
    failure_rate: f64,
    slow_checkout_rate: f64,
    modules: BTreeMap<&'static str, Module>,
    outage: Option<OutageSwitch>,
    counts: BTreeMap<(String, String), Counts>,
    requests: u64,
    spans: u64,
    trace: TraceState,
    error_traces: Vec<String>,
    slow_traces: Vec<String>,
    traces: Vec<String>,
}

fn nanos_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn ms(n: f64) -> u64 {
    (n * 1e6) as u64
}

impl Shop {
    pub fn new(args: &Args, exporters: Exporters) -> anyhow::Result<Self> {
        let mut modules = BTreeMap::new();
        if let Some(dir) = &args.log_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        for name in MODULES {
            let (provider, tracer) = exporters.provider(name)?;
            let log = match &args.log_dir {
                Some(dir) => {
                    let path = dir.join(format!("{name}.log"));
                    let f = File::options()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .with_context(|| format!("opening {}", path.display()))?;
                    Some(BufWriter::new(f))
                }
                None => None,
            };
            modules.insert(
                *name,
                Module {
                    provider,
                    tracer,
                    log,
                },
            );
        }
        Ok(Self {
            rng: fastrand::Rng::with_seed(args.seed),
            seed: args.seed,
            checkout_failure_rate: args.checkout_failure_rate,
            failure_rate: args.failure_rate,
            slow_checkout_rate: args.slow_checkout_rate,
            modules,
            outage: args.outage_file.clone().map(OutageSwitch::new),
            counts: BTreeMap::new(),
            requests: 0,
            spans: 0,
            trace: TraceState::default(),
            error_traces: Vec::new(),
            slow_traces: Vec::new(),
            traces: Vec::new(),
        })
    }

    fn tracer(&self, module: &str) -> SdkTracer {
        self.modules[module].tracer.clone()
    }

    /// Uniform milliseconds in [lo, hi), as nanoseconds.
    fn between(&mut self, lo: f64, hi: f64) -> u64 {
        ms(lo + (hi - lo) * self.rng.f64())
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.f64() < p
    }

    /// One user request through the proxy.
    pub fn user_request(&mut self) -> anyhow::Result<()> {
        self.requests += 1;
        self.trace = TraceState::default();
        let start = nanos_now();
        let roll = self.rng.f64();
        let user = self.rng.u32(1..5000);
        let (method, route, path, target): (&str, &str, String, Target) = if roll < 0.30 {
            ("POST", "/login", "/login".into(), Target::Login)
        } else if roll < 0.65 {
            ("GET", "/cart", "/cart".into(), Target::ViewCart(user))
        } else if roll < 0.80 {
            (
                "POST",
                "/cart/items",
                "/cart/items".into(),
                Target::AddItem(user),
            )
        } else {
            (
                "POST",
                "/checkout",
                "/checkout".into(),
                Target::Checkout(user),
            )
        };
        let root = Context::new();
        let trace_id = self.server(
            "proxy",
            method,
            route,
            &path,
            &root,
            start,
            |shop, cx, t| {
                let t = t + shop.between(0.2, 1.0);
                let reply = match target {
                    Target::Login => shop.call(
                        cx,
                        "proxy",
                        "authentication",
                        "POST",
                        "/login",
                        "/login",
                        t,
                        |s, cx, t| s.login(cx, t),
                    ),
                    Target::ViewCart(u) => {
                        let p = format!("/cart/{u}");
                        shop.call(
                            cx,
                            "proxy",
                            "cart",
                            "GET",
                            "/cart/{id}",
                            &p,
                            t,
                            move |s, cx, t| s.view_cart(cx, t, u),
                        )
                    }
                    Target::AddItem(u) => {
                        let p = format!("/cart/{u}/items");
                        shop.call(
                            cx,
                            "proxy",
                            "cart",
                            "POST",
                            "/cart/{id}/items",
                            &p,
                            t,
                            move |s, cx, t| s.add_item(cx, t, u),
                        )
                    }
                    Target::Checkout(u) => shop.call(
                        cx,
                        "proxy",
                        "checkout",
                        "POST",
                        "/checkout",
                        "/checkout",
                        t,
                        move |s, cx, t| s.checkout(cx, t, u),
                    ),
                };
                Reply {
                    end: reply.end + shop.between(0.2, 1.0),
                    status: reply.status,
                }
            },
        );
        let id = format!("{trace_id:032x}");
        if self.trace.failed {
            self.error_traces.push(id.clone());
        }
        if self.trace.slow {
            self.slow_traces.push(id.clone());
        }
        self.traces.push(id);
        Ok(())
    }

    fn login(&mut self, cx: &Context, t: u64) -> Reply {
        let t = t + self.between(1.0, 5.0);
        let q = self.db(
            cx,
            "authentication",
            "postgresql",
            "users",
            "SELECT id, password_hash FROM users WHERE email = $1",
            t,
            1.0,
            8.0,
        );
        let fail = self.chance(self.failure_rate);
        let status = if fail {
            500
        } else if self.chance(0.05) {
            401
        } else {
            200
        };
        Reply {
            end: q + self.between(3.0, 30.0),
            status,
        }
    }

    fn view_cart(&mut self, cx: &Context, t: u64, user: u32) -> Reply {
        let t = t + self.between(0.5, 3.0);
        let q = self.db(
            cx,
            "cart",
            "redis",
            "0",
            &format!("GET cart:{user}"),
            t,
            0.2,
            2.5,
        );
        let status = if self.chance(self.failure_rate) {
            500
        } else {
            200
        };
        Reply {
            end: q + self.between(1.0, 10.0),
            status,
        }
    }

    fn add_item(&mut self, cx: &Context, t: u64, user: u32) -> Reply {
        let t = t + self.between(0.5, 3.0);
        let sku = self.rng.u32(100..999);
        let path = format!("/inventory/{sku}");
        let stock = self.call(
            cx,
            "cart",
            "inventory",
            "GET",
            "/inventory/{sku}",
            &path,
            t,
            |s, cx, t| {
                let t = t + s.between(0.5, 2.0);
                let q = s.db(
                    cx,
                    "inventory",
                    "postgresql",
                    "inventory",
                    "SELECT quantity FROM stock WHERE sku = $1",
                    t,
                    1.0,
                    12.0,
                );
                let status = if s.chance(s.failure_rate) { 500 } else { 200 };
                Reply {
                    end: q + s.between(0.5, 4.0),
                    status,
                }
            },
        );
        if stock.status >= 500 {
            return Reply {
                end: stock.end + self.between(0.5, 2.0),
                status: 502,
            };
        }
        let t = stock.end + self.between(0.2, 1.0);
        let q = self.db(
            cx,
            "cart",
            "redis",
            "0",
            &format!("HSET cart:{user} {sku} 1"),
            t,
            0.2,
            2.5,
        );
        Reply {
            end: q + self.between(1.0, 8.0),
            status: 201,
        }
    }

    fn checkout(&mut self, cx: &Context, t: u64, _user: u32) -> Reply {
        // During an outage the gateway refuses every payment; otherwise who fails is the
        // payment gateway mostly, else the inventory database. (Without an outage the random
        // draws are the same as without the switch, so seeded runs stay reproducible.)
        let outage = self.outage.as_mut().is_some_and(OutageSwitch::on);
        let fails = outage || self.chance(self.checkout_failure_rate);
        let payment_fails = outage || (fails && self.chance(0.7));
        let inventory_fails = fails && !payment_fails;
        let slow = !fails && self.chance(self.slow_checkout_rate);
        let t = t + self.between(2.0, 10.0);
        let reserve = self.call(
            cx,
            "checkout",
            "inventory",
            "POST",
            "/inventory/reserve",
            "/inventory/reserve",
            t,
            |s, cx, t| {
                let t = t + s.between(0.5, 2.0);
                let q = s.db(
                    cx,
                    "inventory",
                    "postgresql",
                    "inventory",
                    "UPDATE stock SET reserved = reserved + $2 WHERE sku = $1",
                    t,
                    2.0,
                    20.0,
                );
                if inventory_fails {
                    Reply {
                        end: q + s.between(0.5, 3.0),
                        status: 500,
                    }
                } else {
                    Reply {
                        end: q + s.between(0.5, 4.0),
                        status: 200,
                    }
                }
            },
        );
        if reserve.status >= 500 {
            return Reply {
                end: reserve.end + self.between(0.5, 3.0),
                status: 500,
            };
        }
        let t = reserve.end + self.between(0.2, 1.0);
        let pay = self.call(
            cx,
            "checkout",
            "payment",
            "POST",
            "/payments",
            "/payments",
            t,
            |s, cx, t| {
                let t = t + s.between(1.0, 5.0);
                let extra = if slow { s.between(300.0, 700.0) } else { 0 };
                let gateway_ms = s.between(20.0, 110.0) + extra;
                let status = if payment_fails { 502 } else { 200 };
                let end = s.gateway(cx, t, gateway_ms, status);
                Reply {
                    end: end + s.between(1.0, 5.0),
                    status: if payment_fails { 500 } else { 201 },
                }
            },
        );
        if pay.status >= 500 {
            return Reply {
                end: pay.end + self.between(0.5, 3.0),
                status: 500,
            };
        }
        // Notification failures are logged by checkout but do not fail the order.
        let t = pay.end + self.between(0.2, 1.0);
        let note = self.call(
            cx,
            "checkout",
            "notification",
            "POST",
            "/notifications",
            "/notifications",
            t,
            |s, _cx, t| {
                let status = if s.chance(s.failure_rate) { 500 } else { 202 };
                Reply {
                    end: t + s.between(2.0, 15.0),
                    status,
                }
            },
        );
        Reply {
            end: note.end + self.between(1.0, 5.0),
            status: 201,
        }
    }

    /// The external payment gateway: a client span only (it is not ours).
    fn gateway(&mut self, cx: &Context, t: u64, dur: u64, status: u16) -> u64 {
        let tracer = self.tracer("payment");
        let mut attrs = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("url.full", "https://gateway.payments.example/v1/charges"),
            KeyValue::new("server.address", "gateway.payments.example"),
            KeyValue::new("peer.service", "payment-gateway"),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        attrs.push(KeyValue::new("payment.provider", "example"));
        let mut span = tracer
            .span_builder("POST")
            .with_kind(SpanKind::Client)
            .with_start_time(at(t))
            .with_attributes(attrs)
            .start_with_context(&tracer, cx);
        if status >= 500 {
            span.set_status(Status::error("payment gateway unavailable"));
            self.trace.failed = true;
        }
        if dur > THRESHOLD_NS {
            self.trace.slow = true;
        }
        span.end_with_timestamp(at(t + dur));
        self.spans += 1;
        t + dur
    }

    /// A database call (client span with `db.*` attributes); returns its end.
    #[allow(clippy::too_many_arguments)]
    fn db(
        &mut self,
        cx: &Context,
        module: &str,
        system: &str,
        namespace: &str,
        query: &str,
        t: u64,
        lo: f64,
        hi: f64,
    ) -> u64 {
        let tracer = self.tracer(module);
        let dur = self.between(lo, hi);
        let op = query
            .split_whitespace()
            .next()
            .unwrap_or("query")
            .to_owned();
        let host = format!("{system}.shop.internal");
        let span = tracer
            .span_builder(format!("{op} {namespace}"))
            .with_kind(SpanKind::Client)
            .with_start_time(at(t))
            .with_attributes([
                KeyValue::new("db.system.name", system.to_owned()),
                KeyValue::new("db.namespace", namespace.to_owned()),
                KeyValue::new("db.query.text", query.to_owned()),
                KeyValue::new("server.address", host),
            ])
            .start_with_context(&tracer, cx);
        let mut span = span;
        span.end_with_timestamp(at(t + dur));
        self.spans += 1;
        t + dur
    }

    /// `from` calls `to`: a client span in `from`, the server span in `to` under it.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        cx: &Context,
        from: &str,
        to: &'static str,
        method: &str,
        route: &str,
        path: &str,
        t: u64,
        body: impl FnOnce(&mut Self, &Context, u64) -> Reply,
    ) -> Reply {
        let tracer = self.tracer(from);
        let host = format!("{to}.shop.internal");
        let span = tracer
            .span_builder(method.to_owned())
            .with_kind(SpanKind::Client)
            .with_start_time(at(t))
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("url.full", format!("http://{host}{path}")),
                KeyValue::new("server.address", host),
                KeyValue::new("peer.service", to),
            ])
            .start_with_context(&tracer, cx);
        let client_cx = cx.with_span(span);
        let net = self.between(0.2, 1.5);
        let mut reply = Reply { end: t, status: 0 };
        self.server(to, method, route, path, &client_cx, t + net, |s, cx, t| {
            reply = body(s, cx, t);
            reply
        });
        let end = reply.end + self.between(0.2, 1.5);
        let span = client_cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(reply.status),
        ));
        if reply.status >= 500 {
            span.set_status(Status::error(format!("{to} answered {}", reply.status)));
        }
        span.end_with_timestamp(at(end));
        self.spans += 1;
        Reply {
            end,
            status: reply.status,
        }
    }

    /// A server span of `module`; `body` plays the handler. Returns the trace id.
    #[allow(clippy::too_many_arguments)]
    fn server(
        &mut self,
        module: &'static str,
        method: &str,
        route: &str,
        path: &str,
        parent: &Context,
        t: u64,
        body: impl FnOnce(&mut Self, &Context, u64) -> Reply,
    ) -> u128 {
        let tracer = self.tracer(module);
        let span = tracer
            .span_builder(format!("{method} {route}"))
            .with_kind(SpanKind::Server)
            .with_start_time(at(t))
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("url.path", path.to_owned()),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("server.address", format!("{module}.shop.internal")),
                KeyValue::new("client.address", "10.0.1.17"),
                KeyValue::new("user_agent.original", "vigil-shop-sim"),
            ])
            .start_with_context(&tracer, parent);
        let cx = parent.with_span(span);
        let reply = body(self, &cx, t);
        let span = cx.span();
        let ctx = span.span_context().clone();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(reply.status),
        ));
        let failed = reply.status >= 500;
        if failed {
            span.add_event_with_timestamp(
                "exception",
                at(reply.end),
                vec![
                    KeyValue::new("exception.type", "UpstreamError"),
                    KeyValue::new(
                        "exception.message",
                        format!("{module} could not serve {method} {route}"),
                    ),
                    KeyValue::new(
                        "exception.stacktrace",
                        format!("at {module}::handle\nat {module}::serve"),
                    ),
                ],
            );
            span.set_status(Status::error(format!("HTTP {}", reply.status)));
            self.trace.failed = true;
        }
        let dur = reply.end - t;
        if dur > THRESHOLD_NS {
            self.trace.slow = true;
        }
        span.end_with_timestamp(at(reply.end));
        self.spans += 1;
        let key = (module.to_owned(), format!("{method} {route}"));
        let c = self.counts.entry(key).or_default();
        c.requests += 1;
        c.errors += u64::from(failed);
        c.under_300ms += u64::from(dur <= THRESHOLD_NS);
        self.log_line(module, method, route, &ctx, reply, dur);
        ctx.trace_id()
            .to_bytes()
            .iter()
            .fold(0u128, |a, b| (a << 8) | u128::from(*b))
    }

    fn log_line(
        &mut self,
        module: &str,
        method: &str,
        route: &str,
        ctx: &opentelemetry::trace::SpanContext,
        reply: Reply,
        dur: u64,
    ) {
        let Some(log) = self.modules.get_mut(module).and_then(|m| m.log.as_mut()) else {
            return;
        };
        let level = if reply.status >= 500 { "error" } else { "info" };
        let line = serde_json::json!({
            "timestamp": reply.end / 1_000_000,
            "level": level,
            "service": module,
            "message": format!("{method} {route} {} in {:.1} ms", reply.status, dur as f64 / 1e6),
            "trace_id": format!("{:032x}", u128::from_be_bytes(ctx.trace_id().to_bytes())),
            "span_id": format!("{:016x}", u64::from_be_bytes(ctx.span_id().to_bytes())),
            "route": route,
            "status": reply.status,
            "duration_ms": dur as f64 / 1e6,
        });
        // A full disk must not stop the traffic; the summary still says what was generated.
        let _ = writeln!(log, "{line}");
    }

    /// Writes buffered log lines to their files (errors ignored, as for each line).
    pub fn flush_logs(&mut self) {
        for m in self.modules.values_mut() {
            if let Some(log) = m.log.as_mut() {
                let _ = log.flush();
            }
        }
    }

    /// Flushes every exporter and log, and returns the account of what was generated.
    pub fn finish(mut self) -> anyhow::Result<Summary> {
        for (name, m) in &mut self.modules {
            if let Some(log) = m.log.as_mut() {
                log.flush().with_context(|| format!("writing {name}.log"))?;
            }
            m.provider
                .shutdown()
                .with_context(|| format!("flushing the spans of {name}"))?;
        }
        let series = self
            .counts
            .into_iter()
            .map(|((service, route), counts)| SeriesSummary {
                service,
                route,
                counts,
            })
            .collect();
        Ok(Summary {
            seed: self.seed,
            requests: self.requests,
            spans: self.spans,
            series,
            error_trace_ids: self.error_traces,
            slow_trace_ids: self.slow_traces,
            trace_ids: self.traces,
        })
    }
}

/// The outage switch: a file whose existence means "the payment gateway is down", looked at
/// no more often than every 100 ms.
struct OutageSwitch {
    path: std::path::PathBuf,
    checked: Option<std::time::Instant>,
    on: bool,
}

impl OutageSwitch {
    fn new(path: std::path::PathBuf) -> Self {
        Self {
            path,
            checked: None,
            on: false,
        }
    }

    fn on(&mut self) -> bool {
        if self
            .checked
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            self.on = self.path.exists();
            self.checked = Some(std::time::Instant::now());
        }
        self.on
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Login,
    ViewCart(u32),
    AddItem(u32),
    Checkout(u32),
}
