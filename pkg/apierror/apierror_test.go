package apierror

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// A store outage is answered the same way wherever it is met: 503
// session_store_unavailable, the one retry hint, the caller's message and
// the request ID.
func TestWriteStoreDown(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r = r.WithContext(requestid.NewContext(r.Context(), "req-1"))
	rec := httptest.NewRecorder()
	WriteStoreDown(rec, r, "kept; retry")
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	if got := rec.Header().Get("Retry-After"); got != strconv.Itoa(StoreDownRetryAfter) {
		t.Errorf("Retry-After %q, want %d", got, StoreDownRetryAfter)
	}
	var b Body
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if want := (Body{Error: Detail{Code: CodeSessionStoreDown, Message: "kept; retry"}, RequestID: "req-1"}); b != want {
		t.Errorf("body %+v, want %+v", b, want)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", rec.Header().Get("Cache-Control"))
	}
}
