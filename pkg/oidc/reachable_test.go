package oidc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestReachable(t *testing.T) {
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return "http://" + l.Addr().String()
	}()
	tests := []struct {
		name    string
		status  int // 0: nothing listens
		wantErr bool
	}{
		{"answers", http.StatusOK, false},
		{"answers with a client error", http.StatusNotFound, false},
		{"server error", http.StatusBadGateway, true},
		{"nothing listens", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issuer := closed
			var probes atomic.Int32
			if tt.status != 0 {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == wellKnownSuffix {
						probes.Add(1)
					}
					w.WriteHeader(tt.status)
				}))
				defer srv.Close()
				issuer = srv.URL
			}
			rp, err := New(Options{Issuer: issuer, ClientID: "c"})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				err := rp.Reachable(context.Background())
				if got := errors.Is(err, ErrUnreachable); got != tt.wantErr {
					t.Fatalf("Reachable = %v, want ErrUnreachable: %v", err, tt.wantErr)
				}
			}
			if tt.status != 0 && probes.Load() != 1 {
				t.Fatalf("%d probes for 3 calls within %s, want 1", probes.Load(), reachableTTL)
			}
		})
	}
}
