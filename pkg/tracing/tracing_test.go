package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestMiddlewareContinuesTraceAndPropagatesChildSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr, err := New(context.Background(), Options{SampleRatio: 1, Version: "test", Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const parentSpan = "00f067aa0ba902b7"

	var forwarded string
	h := tr.Middleware("mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forwarded = r.Header.Get("traceparent")
	}))
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentSpan+"-01")
	h.ServeHTTP(httptest.NewRecorder(), req)

	parts := strings.Split(forwarded, "-")
	if len(parts) != 4 {
		t.Fatalf("forwarded traceparent %q is not W3C format", forwarded)
	}
	if parts[1] != traceID {
		t.Errorf("trace ID not continued: got %s, want %s", parts[1], traceID)
	}
	if parts[2] == parentSpan {
		t.Errorf("upstream got the caller's span ID; want the proxy's own span as parent")
	}
	if err := tr.tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("exported %d spans, want 1", len(spans))
	}
	if got := spans[0].SpanContext.SpanID().String(); got != parts[2] {
		t.Errorf("forwarded parent %s is not the exported span %s", parts[2], got)
	}
	if got := spans[0].Parent.SpanID().String(); got != parentSpan {
		t.Errorf("span parent = %s, want the caller's %s", got, parentSpan)
	}
}

func TestMiddlewareStartsTraceWithoutIncomingHeader(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr, err := New(context.Background(), Options{SampleRatio: 1, Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	var forwarded string
	tr.Middleware("mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forwarded = r.Header.Get("traceparent")
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	if !strings.HasPrefix(forwarded, "00-") || !strings.HasSuffix(forwarded, "-01") {
		t.Fatalf("forwarded traceparent = %q, want a sampled W3C traceparent", forwarded)
	}
}

// Spans reach an OTLP/HTTP collector at <endpoint>/v1/traces however the
// endpoint is written.
func TestExportsToTheConfiguredEndpoint(t *testing.T) {
	for _, suffix := range []string{"", "/", "/v1/traces"} {
		t.Run("endpoint"+suffix, func(t *testing.T) {
			paths := make(chan string, 8)
			collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				paths <- r.URL.Path
			}))
			defer collector.Close()
			tr, err := New(context.Background(), Options{Endpoint: collector.URL + suffix, SampleRatio: 1})
			if err != nil {
				t.Fatal(err)
			}
			tr.Middleware("mcp", http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatalf("flushing spans to the collector: %v", err)
			}
			select {
			case p := <-paths:
				if p != "/v1/traces" {
					t.Errorf("collector got %s, want /v1/traces", p)
				}
			default:
				t.Fatal("no export reached the collector")
			}
		})
	}
}
