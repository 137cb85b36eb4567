//! OpenTelemetry traces over OTLP/HTTP, off unless the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set.
//!
//! ```no_run
//! use mcp_auth_core::settings::ProcessEnv;
//! use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Inside the runtime: spans are exported from it.
//! let otel = mcp_auth_transport::otel::layer_from_settings(&ProcessEnv, "my-mcp-server")?;
//! let (layer, _guard) = otel.unzip();
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer().with_filter(EnvFilter::new("info")))
//!     .with(layer)
//!     .init();
//! // ... serve; dropping the guard at the end exports what is left.
//! # Ok(()) }
//! ```
//!
//! Each request to the MCP routes is one `mcp.request` span (span kind
//! server; see [`observe`](crate::observe) for its attributes), with the
//! session store's operations, JWKS fetches and token introspection as its
//! children. A request carrying a W3C `traceparent` continues the caller's
//! trace: its span's parent is the caller's span.
//!
//! What is exported: these crates' spans (any level), and your own spans
//! at `INFO` or above; not rmcp's, and no log events (they carry fields
//! chosen for the log, a client's address among them).
//!
//! The settings are OpenTelemetry's own: `OTEL_EXPORTER_OTLP_ENDPOINT` (a
//! base URL, `/v1/traces` appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! (used as it is), `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the
//! only one supported; `grpc` is refused by name), `OTEL_SERVICE_NAME`
//! (else the name you give), `OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`,
//! from the settings or the process environment). `OTEL_SDK_DISABLED=true`
//! turns it off.

use std::time::Duration;

use mcp_auth_core::settings::{ConfigError, Lookup};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, filter::filter_fn, registry::LookupSpan};

/// A boxed tracing layer for a subscriber `S`.
pub type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// Exports what is left when dropped (at the end of `main`).
#[derive(Debug)]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("OpenTelemetry: the last spans were not exported: {e}");
        }
    }
}

/// The spans' resource: the service, and `OTEL_RESOURCE_ATTRIBUTES`
/// (`key=value,key=value`) from the settings as well as from the process
/// environment (an attack pass: set in `.env`, it was dropped), the
/// settings' winning.
fn resource(l: &dyn Lookup, default_service: &str) -> Resource {
    // The default name first, the attributes over it, `OTEL_SERVICE_NAME`
    // over both (OpenTelemetry's order).
    let mut builder = Resource::builder().with_service_name(default_service.to_owned());
    if let Some(list) = l.get("OTEL_RESOURCE_ATTRIBUTES") {
        for (k, v) in list.split(',').filter_map(|kv| kv.split_once('=')) {
            let (k, v) = (k.trim(), v.trim());
            if !k.is_empty() {
                builder = builder
                    .with_attribute(opentelemetry::KeyValue::new(k.to_owned(), v.to_owned()));
            }
        }
    }
    if let Some(name) = l.get("OTEL_SERVICE_NAME") {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

/// The layer that exports spans, when the settings ask for it (`None`
/// when no OTLP endpoint is set, or `OTEL_SDK_DISABLED=true`).
/// `service_name` is used unless `OTEL_SERVICE_NAME` is set. Call it inside
/// the Tokio runtime that will run the server: the exports run on it.
///
/// The layer sees every span of the `mcp_auth*` crates (their per-request
/// spans are at debug level, so logs filtered at `info` keep them out of
/// log lines) and other crates' spans at `info` and above.
pub fn layer_from_settings<S>(
    l: &dyn Lookup,
    service_name: &str,
) -> Result<Option<(BoxedLayer<S>, OtelGuard)>, ConfigError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if l.get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Ok(None);
    }
    let endpoint = match (
        l.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        l.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(traces), _) if !traces.is_empty() => {
            check_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces)?;
            traces
        }
        (_, Some(base)) if !base.is_empty() => {
            check_url("OTEL_EXPORTER_OTLP_ENDPOINT", &base)?;
            format!("{}/v1/traces", base.trim_end_matches('/'))
        }
        _ => return Ok(None),
    };
    // Named as the variable it came from.
    let protocol = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|name| l.get(name).map(|p| (name, p)));
    if let Some((name, p)) = protocol.filter(|(_, p)| p != "http/protobuf") {
        return Err(ConfigError::new(
            name,
            format!("{p:?} is not supported: traces are exported as http/protobuf"),
        ));
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Err(ConfigError::new(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "traces are exported from the Tokio runtime: set them up inside it",
        ));
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", e.to_string()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime { client, runtime })
        .with_endpoint(endpoint)
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", e.to_string()))?;
    // Every request is traced whatever the caller's `traceparent` says
    // (its sampled flag would let a client hide its requests from the
    // traces, or flood the collector); the caller's trace is continued.
    let provider = SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_batch_exporter(exporter)
        .with_resource(resource(l, service_name))
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("mcp-auth");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Spans, whose fields are chosen for the trace: not log events,
        // which became span events with whatever fields they carry (an
        // attack pass: a refused API key's event exported the client's
        // address, which traces leave out).
        .with_filter(filter_fn(is_exported));
    Ok(Some((Box::new(layer), OtelGuard { provider })))
}

/// What goes into the traces: spans only, this project's crates' at any
/// level, an embedder's own at `INFO` or above, none of rmcp's (its
/// per-session and per-request spans say nothing the `mcp.request` span
/// does not).
fn is_exported(m: &tracing::Metadata<'_>) -> bool {
    let target = m.target();
    m.is_span()
        && (target.starts_with("mcp_auth")
            || (*m.level() <= tracing::Level::INFO && target.split("::").next() != Some("rmcp")))
}

fn check_url(name: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(ConfigError::new(name, "expected an http(s):// URL")),
    }
}

/// Makes `span` a child of the caller's span when `headers` carry a W3C
/// `traceparent` (and its `tracestate`).
pub(crate) fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    let _ = span.set_parent(cx);
}

/// reqwest's client, driven on the server's runtime (the exporter's batch
/// thread has none of its own).
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let resp = client.execute(request).await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        });
        let (status, body) = sent.await??;
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tracing_subscriber::Registry;

    fn read(
        pairs: &[(&str, &str)],
    ) -> Result<Option<(BoxedLayer<Registry>, OtelGuard)>, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        layer_from_settings::<Registry>(&vars, "test")
    }

    #[tokio::test]
    async fn off_unless_an_endpoint_is_set() {
        assert!(read(&[]).unwrap().is_none());
        assert!(read(&[("OTEL_SERVICE_NAME", "x")]).unwrap().is_none());
        let disabled = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(disabled.unwrap().is_none());
        let on = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]);
        assert!(on.unwrap().is_some());
    }

    #[tokio::test]
    async fn errors_name_the_setting() {
        for (pairs, at_fault) in [
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318")][..],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x/v1/traces")][..],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ][..],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                ][..],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
        ] {
            match read(pairs) {
                Err(e) => assert_eq!(e.variable, at_fault, "{pairs:?}: {e}"),
                Ok(_) => panic!("{pairs:?} accepted"),
            }
        }
    }

    /// `OTEL_RESOURCE_ATTRIBUTES` from the settings reaches the resource
    /// (an attack pass: set in `.env` it was dropped, only the process
    /// environment's was read).
    #[test]
    fn resource_attributes_are_read_from_the_settings() {
        let m = std::collections::HashMap::from([(
            "OTEL_RESOURCE_ATTRIBUTES".to_owned(),
            "deployment.environment=prod, team = auth,novalue".to_owned(),
        )]);
        let r = resource(&m, "svc");
        let get = |r: &Resource, k: &'static str| {
            r.get(&opentelemetry::Key::from_static_str(k))
                .map(|v| v.to_string())
        };
        assert_eq!(get(&r, "deployment.environment").as_deref(), Some("prod"));
        assert_eq!(get(&r, "team").as_deref(), Some("auth"));
        assert_eq!(get(&r, "service.name").as_deref(), Some("svc"));
        // The attributes name the service over the default, and
        // OTEL_SERVICE_NAME over them (a review: the attributes won).
        let mut m = m;
        m.insert(
            "OTEL_RESOURCE_ATTRIBUTES".to_owned(),
            "service.name=from-attributes".to_owned(),
        );
        assert_eq!(
            get(&resource(&m, "svc"), "service.name").as_deref(),
            Some("from-attributes")
        );
        m.insert("OTEL_SERVICE_NAME".to_owned(), "named".to_owned());
        assert_eq!(
            get(&resource(&m, "svc"), "service.name").as_deref(),
            Some("named")
        );
    }

    /// Spans of the crates (any level) and an embedder's (`INFO` or
    /// above) go out; rmcp's spans and log events do not (an attack pass:
    /// events carried a client's address into the trace).
    #[test]
    fn spans_are_exported_and_log_events_and_rmcp_spans_are_not() {
        use std::sync::{Arc, Mutex};
        use tracing::{Metadata, span};
        type Seen = Arc<Mutex<Vec<&'static Metadata<'static>>>>;
        struct Collect(Seen);
        impl Subscriber for Collect {
            fn register_callsite(
                &self,
                m: &'static Metadata<'static>,
            ) -> tracing::subscriber::Interest {
                self.0.lock().unwrap().push(m);
                tracing::subscriber::Interest::always()
            }
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
                span::Id::from_u64(1)
            }
            fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
            fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
            fn event(&self, _: &tracing::Event<'_>) {}
            fn enter(&self, _: &span::Id) {}
            fn exit(&self, _: &span::Id) {}
        }
        let seen = Seen::default();
        tracing::subscriber::with_default(Collect(seen.clone()), || {
            let _ = tracing::info_span!(target: "mcp_auth_transport::observe", "ours-info");
            let _ = tracing::debug_span!(target: "mcp_auth_session::metered", "ours-debug");
            let _ = tracing::info_span!(target: "my_server::tools", "embedder-info");
            let _ = tracing::debug_span!(target: "my_server::tools", "embedder-debug");
            let _ = tracing::info_span!(target: "rmcp::service", "rmcp-info");
            tracing::warn!(target: "mcp_auth_transport::ratelimit", "an event");
        });
        let seen = seen.lock().unwrap();
        let exported: Vec<&str> = seen
            .iter()
            .filter(|m| is_exported(m))
            .map(|m| m.name())
            .collect();
        assert_eq!(exported, ["ours-info", "ours-debug", "embedder-info"]);
        assert_eq!(seen.len(), 6, "every callsite was seen");
    }

    #[test]
    fn outside_a_runtime_it_says_so() {
        let err = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])
            .err()
            .expect("refused outside a runtime");
        assert!(err.to_string().contains("Tokio runtime"), "{err}");
    }
}
