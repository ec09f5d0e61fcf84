package headername_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/headername"
)

func TestSame(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"X-Forwarded-User", "x-forwarded-user", true},
		{"X-Forwarded-User", "X_Forwarded_User", true},
		{"Last-Event-ID", "last_event_id", true},
		{"Authorization", "Authorisation", false},
		{"X-Token", "X-Token2", false},
		{"X-Token", "X.Token", false},
	} {
		if got := headername.Same(tc.a, tc.b); got != tc.want {
			t.Errorf("Same(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := headername.Normalize(tc.a) == headername.Normalize(tc.b); got != tc.want {
			t.Errorf("Normalize(%q) == Normalize(%q) is %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestDelete(t *testing.T) {
	h := http.Header{
		"Last-Event-Id": {"1"}, "Last_Event_ID": {"2"}, "last-event-id": {"3"},
		"Last-Event": {"kept"}, "Accept": {"kept"},
	}
	headername.Delete(h, "Last-Event-ID")
	var left []string
	for k := range h {
		left = append(left, k)
	}
	slices.Sort(left)
	if want := []string{"Accept", "Last-Event"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}
