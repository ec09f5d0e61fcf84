package httpjson

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name      string
		preset    string // Cache-Control set by the handler before Write
		wantCache string
	}{
		{"default is no-store", "", "no-store"},
		{"handler's caching is kept", "public, max-age=300", "public, max-age=300"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if tt.preset != "" {
				rec.Header().Set("Cache-Control", tt.preset)
			}
			Write(rec, http.StatusCreated, map[string]any{"ok": true})
			if rec.Code != http.StatusCreated {
				t.Errorf("status %d, want 201", rec.Code)
			}
			if got := rec.Body.String(); got != "{\"ok\":true}\n" {
				t.Errorf("body %q", got)
			}
			for k, want := range map[string]string{
				"Content-Type": "application/json", "Cache-Control": tt.wantCache,
				"Pragma": "no-cache", "X-Content-Type-Options": "nosniff",
			} {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}
