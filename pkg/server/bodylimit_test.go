package server

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLimitOwnBody(t *testing.T) {
	tests := []struct {
		name       string
		size       int
		chunked    bool
		wantStatus int
		wantRead   error // what the handler's read returns
	}{
		{name: "within the limit", size: maxOwnBody, wantStatus: http.StatusOK},
		{name: "declared too large", size: maxOwnBody + 1, wantStatus: http.StatusRequestEntityTooLarge},
		{name: "chunked too large is cut off", size: maxOwnBody + 1, chunked: true, wantStatus: http.StatusOK, wantRead: &http.MaxBytesError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var called bool
			var readErr error
			h := limitOwnBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				_, readErr = io.ReadAll(r.Body)
			}))
			req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(strings.Repeat("a", tt.size)))
			if tt.chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus == http.StatusRequestEntityTooLarge {
				if called || rec.Header().Get("Connection") != "close" {
					t.Fatalf("handler called %v, Connection %q; want the body refused unread and the connection closed", called, rec.Header().Get("Connection"))
				}
				return
			}
			var mbe *http.MaxBytesError
			if got := errors.As(readErr, &mbe); got != (tt.wantRead != nil) {
				t.Fatalf("handler read error %v, want a MaxBytesError: %v", readErr, tt.wantRead != nil)
			}
		})
	}
}
