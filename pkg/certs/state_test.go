package certs

import (
	"crypto/x509"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testPolicy() Policy {
	return Policy{CALifetime: 300 * time.Hour, ServingLifetime: 90 * time.Hour, PublishGrace: time.Minute,
		DNSNames: []string{"svc.ns.svc", "svc.ns.svc.cluster.local"}, CommonName: "test-ca"}
}

// fixture builds a state at t0: one CA and a serving certificate it signed.
func fixture(t *testing.T) State {
	t.Helper()
	pol := testPolicy()
	st, err := apply(t0, State{}, pol, Plan{NewCA: true, NewServing: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestDecide(t *testing.T) {
	pol := testPolicy()
	base := fixture(t)
	// The CA late in its life, with a serving certificate renewed at 190h.
	late, err := apply(t0.Add(190*time.Hour), base, pol, Plan{NewServing: true})
	if err != nil {
		t.Fatal(err)
	}
	// A CA rotation that kept the serving certificate of the old CA.
	rotated, err := apply(t0.Add(201*time.Hour), late, pol, Plan{NewCA: true})
	if err != nil {
		t.Fatal(err)
	}
	published := rotated
	published.CAPublishedAt = t0.Add(201 * time.Hour)
	otherNames := base
	otherNames.Serving, _ = NewServing(base.CA, t0, pol.ServingLifetime, []string{"other.ns.svc"})
	caOnly := base
	caOnly.Serving = nil

	tests := []struct {
		name           string
		st             State
		at             time.Duration
		wantCA, wantSv bool
		wantPrune      int
	}{
		{"empty secret", State{}, 0, true, true, 0},
		{"fresh", base, time.Hour, false, false, 0},
		{"serving just before 2/3", base, 59 * time.Hour, false, false, 0},
		{"serving at 2/3", base, 61 * time.Hour, false, true, 0},
		{"missing serving", caOnly, time.Hour, false, true, 0},
		{"serving names changed", otherNames, time.Hour, false, true, 0},
		{"CA at 2/3 keeps serving from the old CA", late, 201 * time.Hour, true, false, 0},
		{"CA expired", base, 301 * time.Hour, true, true, 0},
		{"new CA not yet published: keep old serving", rotated, 202 * time.Hour, false, false, 0},
		{"new CA published, within grace", published, 201*time.Hour + 30*time.Second, false, false, 0},
		{"new CA published, after grace: switch", published, 201*time.Hour + 2*time.Minute, false, true, 0},
		{"old CA expired: pruned", published, 301 * time.Hour, false, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := decide(t0.Add(tc.at), tc.st, pol)
			if p.NewCA != tc.wantCA || p.NewServing != tc.wantSv || len(p.Prune) != tc.wantPrune {
				t.Errorf("decide = %+v, want NewCA=%v NewServing=%v prune=%d", p, tc.wantCA, tc.wantSv, tc.wantPrune)
			}
		})
	}
}

func TestRotationKeepsOldCAInBundle(t *testing.T) {
	pol := testPolicy()
	st, err := apply(t0.Add(190*time.Hour), fixture(t), pol, Plan{NewServing: true})
	if err != nil {
		t.Fatal(err)
	}
	oldCA := st.CA.Cert
	now := t0.Add(201 * time.Hour)
	p := decide(now, st, pol)
	next, err := apply(now, st, pol, p)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := ParseCertificates(next.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle) != 2 || !bundle[0].Equal(next.CA.Cert) || !bundle[1].Equal(oldCA) {
		t.Fatalf("bundle during overlap = %d certs, want [new CA, old CA]", len(bundle))
	}
	// The serving certificate still verifies against the bundle.
	pool := x509.NewCertPool()
	for _, c := range bundle {
		pool.AddCert(c)
	}
	if _, err := next.Serving.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: pol.DNSNames[0], CurrentTime: now}); err != nil {
		t.Errorf("serving certificate does not verify during overlap: %v", err)
	}
	if !next.Serving.Cert.Equal(st.Serving.Cert) {
		t.Error("serving certificate switched before the new CA was published")
	}
	// After the old CA expires it leaves the bundle.
	later := oldCA.NotAfter.Add(time.Second)
	next.CAPublishedAt = now
	final, err := apply(later, next, pol, decide(later, next, pol))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ParseCertificates(final.Bundle()); len(got) != 1 || !got[0].Equal(next.CA.Cert) {
		t.Errorf("bundle after the old CA expired has %d certs, want only the new CA", len(got))
	}
	if final.Serving.Cert.CheckSignatureFrom(next.CA.Cert) != nil {
		t.Error("serving certificate not from the new CA")
	}
}

func TestServingNeverOutlivesCA(t *testing.T) {
	pol := testPolicy()
	st := fixture(t)
	s, err := NewServing(st.CA, st.CA.Cert.NotAfter.Add(-time.Hour), pol.ServingLifetime, []string{"a.svc", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Cert.NotAfter.Equal(st.CA.Cert.NotAfter) {
		t.Errorf("serving NotAfter %v, CA NotAfter %v", s.Cert.NotAfter, st.CA.Cert.NotAfter)
	}
	if got := certNames(s.Cert); !slices.Equal(got, []string{"a.svc", "127.0.0.1"}) {
		t.Errorf("names = %v", got)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	st := fixture(t)
	st.CAPublishedAt = t0.Add(time.Minute)
	data, ann := st.encode()
	got, err := decodeState(data, ann)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CA.Cert.Equal(st.CA.Cert) || !got.Serving.Cert.Equal(st.Serving.Cert) ||
		!got.CAPublishedAt.Equal(st.CAPublishedAt) || len(got.Trusted) != 1 {
		t.Errorf("round trip changed the state: %+v", got)
	}
	data[KeyServingKey] = data[KeyCAKey] // a key that does not match
	if _, err := decodeState(data, ann); err == nil {
		t.Error("mismatched serving key accepted")
	}
}
