package oauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// downStore is a store whose writes fail, as during a Redis outage.
type downStore struct{ session.Store }

func (downStore) Put(context.Context, string, []byte, time.Duration) error {
	return errors.New("redis: connection refused")
}

// The authorization server's log lines carry the request ID of the request
// they are about (issue 2).
func TestLogLinesCarryTheRequestID(t *testing.T) {
	tests := []struct {
		name   string
		down   bool
		status int
		msg    string
	}{
		{"client registered", false, http.StatusCreated, "oauth: client registered"},
		{"store failure", true, http.StatusServiceUnavailable, "oauth: session store failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var store session.Store = session.NewMemory(session.MemoryOptions{})
			t.Cleanup(func() { _ = store.Close() })
			if tt.down {
				store = downStore{store}
			}
			core, logs := observer.New(zap.DebugLevel)
			s, err := oauth.New(oauth.Options{
				Store:       store,
				BaseURL:     func(*http.Request) string { return issuer },
				Resources:   func(*http.Request) []string { return []string{resource} },
				SigningKeys: pemKeys(t),
				Logger:      zap.New(core),
			})
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			s.Register(mux, testUserWrapper)
			req := httptest.NewRequest(http.MethodPost, oauth.PathRegister,
				strings.NewReader(`{"redirect_uris":["`+loopCB+`"],"token_endpoint_auth_method":"none"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(requestid.Header, "req-oauth-1")
			rec := httptest.NewRecorder()
			requestid.Middleware(mux).ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, tt.status)
			}
			if tt.down && (!strings.Contains(rec.Body.String(), `"temporarily_unavailable"`) ||
				rec.Header().Get("Retry-After") != strconv.Itoa(apierror.StoreDownRetryAfter)) {
				t.Errorf("store outage answered %s with Retry-After %q; want temporarily_unavailable with every store outage's Retry-After %d",
					rec.Body, rec.Header().Get("Retry-After"), apierror.StoreDownRetryAfter)
			}
			lines := logs.FilterMessage(tt.msg).All()
			if len(lines) != 1 {
				t.Fatalf("%d %q lines; all: %v", len(lines), tt.msg, logs.All())
			}
			if got := lines[0].ContextMap()["request_id"]; got != "req-oauth-1" {
				t.Errorf("request_id = %v, want req-oauth-1", got)
			}
		})
	}
}
