// Package tracing sets up OpenTelemetry for the sidecar: a server span per
// request and W3C traceparent propagation to the upstream MCP server. It is
// off by default; when off, incoming trace headers pass through untouched.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Options configure tracing.
type Options struct {
	// Endpoint is the OTLP/HTTP endpoint; empty uses the standard
	// OTEL_EXPORTER_OTLP_* environment variables.
	Endpoint string
	// SampleRatio applies to new traces; a sampled parent is always honoured.
	SampleRatio float64
	// Version is reported as service.version.
	Version string
	// Exporter replaces the OTLP exporter (tests use an in-memory one).
	Exporter sdktrace.SpanExporter
}

// Tracer wraps handlers with spans and propagation.
type Tracer struct {
	tp    *sdktrace.TracerProvider
	prop  propagation.TextMapPropagator
	trace trace.Tracer
}

// New builds a tracer provider that exports in batches. It does no network
// I/O until spans are exported.
func New(ctx context.Context, opts Options) (*Tracer, error) {
	exp := opts.Exporter
	if exp == nil {
		var eopts []otlptracehttp.Option
		if opts.Endpoint != "" {
			eopts = append(eopts, otlptracehttp.WithEndpointURL(tracesURL(opts.Endpoint)))
		}
		var err error
		exp, err = otlptracehttp.New(ctx, eopts...)
		if err != nil {
			return nil, fmt.Errorf("creating OTLP exporter: %w", err)
		}
	}
	res := resource.NewSchemaless(semconv.ServiceName("mcp-oidc-proxy"), semconv.ServiceVersion(opts.Version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(opts.SampleRatio))),
	)
	return &Tracer{
		tp:    tp,
		prop:  propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		trace: tp.Tracer("github.com/mcp-oidc-proxy/mcp-oidc-proxy"),
	}, nil
}

// tracesURL turns the configured collector base URL into its OTLP/HTTP
// traces URL, whether it was written with a trailing slash or already names
// /v1/traces (as OTEL_EXPORTER_OTLP_TRACES_ENDPOINT does).
func tracesURL(endpoint string) string {
	endpoint = strings.TrimRight(endpoint, "/")
	if strings.HasSuffix(endpoint, "/v1/traces") {
		return endpoint
	}
	return endpoint + "/v1/traces"
}

// Middleware starts a server span continuing the caller's trace and rewrites
// traceparent on the request, so the upstream's spans become children of
// the proxy's span.
func (t *Tracer) Middleware(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.trace.Start(ctx, route+" "+r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		t.prop.Inject(ctx, propagation.HeaderCarrier(r.Header))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Shutdown flushes pending spans.
func (t *Tracer) Shutdown(ctx context.Context) error { return t.tp.Shutdown(ctx) }
