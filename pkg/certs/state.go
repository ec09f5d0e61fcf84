package certs

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// Keys of the Secret that holds the injector's certificates.
const (
	KeyCACert     = "ca.crt"
	KeyCAKey      = "ca.key"
	KeyBundle     = "ca-bundle.crt"
	KeyServingCrt = "tls.crt"
	KeyServingKey = "tls.key"
	// AnnotationCAPublished records when a replica confirmed that the
	// current CA is in the webhook configuration's caBundle; serving
	// certificates switch to the new CA only a grace period later.
	AnnotationCAPublished = "mcp-oidc-proxy.io/ca-published-at"
)

// State is what the Secret holds.
type State struct {
	// CA signs new serving certificates.
	CA *KeyPair
	// Trusted is the caBundle: the current CA first, then previous CAs
	// until they expire, so serving certificates they signed still verify.
	Trusted []*x509.Certificate
	// Serving is the webhook server's certificate.
	Serving *KeyPair
	// CAPublishedAt is when the current CA was confirmed in the webhook
	// configuration (zero: not yet).
	CAPublishedAt time.Time
}

// Policy holds the lifetimes and timings of rotation.
type Policy struct {
	CALifetime      time.Duration
	ServingLifetime time.Duration
	// PublishGrace is how long after the new CA was confirmed in the
	// caBundle the serving certificate may switch to it (the API server
	// needs a moment to see the updated webhook configuration).
	PublishGrace time.Duration
	// DNSNames of the serving certificate (the Service's names; IP
	// addresses are accepted too).
	DNSNames []string
	// CommonName of the CA.
	CommonName string
}

// Plan is what one reconcile pass must do; decide computes it without
// generating keys so rotation decisions are table-testable.
type Plan struct {
	NewCA      bool
	NewServing bool
	// Prune lists previous CAs (indexes into Trusted) that have expired.
	Prune []int
	// Reasons explain the plan (logged).
	Reasons []string
}

// Changed reports whether the plan changes the state.
func (p Plan) Changed() bool { return p.NewCA || p.NewServing || len(p.Prune) > 0 }

// decide says what must change at now.
func decide(now time.Time, st State, pol Policy) Plan {
	var p Plan
	caOK := st.CA != nil && now.Before(st.CA.Cert.NotAfter)
	switch {
	case st.CA == nil:
		p.NewCA, p.NewServing = true, true
		p.Reasons = append(p.Reasons, "no CA")
		return p
	case !caOK:
		// Expired: nothing signed by it verifies any more.
		p.NewCA, p.NewServing = true, true
		p.Reasons = append(p.Reasons, "CA expired")
	case !now.Before(renewAt(st.CA.Cert)):
		p.NewCA = true
		p.Reasons = append(p.Reasons, "CA due for renewal")
	}
	for i, c := range st.Trusted {
		if i > 0 || !bytes.Equal(c.Raw, st.CA.Cert.Raw) {
			if !now.Before(c.NotAfter) {
				p.Prune = append(p.Prune, i)
				p.Reasons = append(p.Reasons, "previous CA expired")
			}
		}
	}
	if p.NewServing {
		return p
	}
	s := st.Serving
	switch {
	case s == nil:
		p.NewServing = true
		p.Reasons = append(p.Reasons, "no serving certificate")
	case !now.Before(s.Cert.NotAfter):
		p.NewServing = true
		p.Reasons = append(p.Reasons, "serving certificate expired")
	case !sameNames(certNames(s.Cert), pol.DNSNames):
		p.NewServing = true
		p.Reasons = append(p.Reasons, "serving certificate names changed")
	case !signedBy(s.Cert, st.Trusted):
		p.NewServing = true
		p.Reasons = append(p.Reasons, "serving certificate not signed by a trusted CA")
	case p.NewCA:
		// Keep serving from the old CA until the new one is published.
	case !signedBy(s.Cert, []*x509.Certificate{st.CA.Cert}):
		// Signed by a previous CA: switch once the new CA is in the
		// caBundle and the API server had time to see it.
		if !st.CAPublishedAt.IsZero() && !now.Before(st.CAPublishedAt.Add(pol.PublishGrace)) {
			p.NewServing = true
			p.Reasons = append(p.Reasons, "switching serving certificate to the new CA")
		}
	case !now.Before(renewAt(s.Cert)):
		p.NewServing = true
		p.Reasons = append(p.Reasons, "serving certificate due for renewal")
	}
	return p
}

// sameNames compares name sets (DNS names and IPs keep separate orders in a
// certificate).
func sameNames(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// signedBy reports whether c verifies against one of cas.
func signedBy(c *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if c.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// apply carries out p, issuing keys. The input is not modified.
func apply(now time.Time, st State, pol Policy, p Plan) (State, error) {
	out := st
	out.Trusted = nil
	for i, c := range st.Trusted {
		if !slices.Contains(p.Prune, i) {
			out.Trusted = append(out.Trusted, c)
		}
	}
	if p.NewCA {
		ca, err := NewCA(now, pol.CALifetime, pol.CommonName)
		if err != nil {
			return State{}, err
		}
		out.CA = ca
		out.CAPublishedAt = time.Time{}
		// The new CA goes first; every unexpired previous CA stays trusted.
		out.Trusted = append([]*x509.Certificate{ca.Cert}, out.Trusted...)
	}
	if p.NewServing {
		s, err := NewServing(out.CA, now, pol.ServingLifetime, pol.DNSNames)
		if err != nil {
			return State{}, err
		}
		out.Serving = s
	}
	return out, nil
}

// Bundle is the PEM caBundle of the state.
func (st State) Bundle() []byte { return EncodeBundle(st.Trusted) }

// encode turns the state into Secret data and annotations.
func (st State) encode() (map[string][]byte, map[string]string) {
	data := map[string][]byte{
		KeyCACert:     st.CA.CertPEM,
		KeyCAKey:      st.CA.KeyPEM,
		KeyBundle:     st.Bundle(),
		KeyServingCrt: st.Serving.CertPEM,
		KeyServingKey: st.Serving.KeyPEM,
	}
	ann := map[string]string{}
	if !st.CAPublishedAt.IsZero() {
		ann[AnnotationCAPublished] = st.CAPublishedAt.UTC().Format(time.RFC3339Nano)
	}
	return data, ann
}

// decodeState reads a Secret's data. Missing parts come back nil so that
// decide recreates them; unreadable parts are an error (and are replaced).
func decodeState(data map[string][]byte, ann map[string]string) (State, error) {
	var st State
	if len(data[KeyCACert]) > 0 {
		ca, err := ParseKeyPair(data[KeyCACert], data[KeyCAKey])
		if err != nil {
			return State{}, fmt.Errorf("reading CA: %w", err)
		}
		st.CA = ca
		trusted, err := ParseCertificates(data[KeyBundle])
		if err != nil {
			return State{}, fmt.Errorf("reading CA bundle: %w", err)
		}
		// The current CA is always trusted, and first.
		st.Trusted = []*x509.Certificate{ca.Cert}
		for _, c := range trusted {
			if !c.Equal(ca.Cert) {
				st.Trusted = append(st.Trusted, c)
			}
		}
	}
	if len(data[KeyServingCrt]) > 0 {
		s, err := ParseKeyPair(data[KeyServingCrt], data[KeyServingKey])
		if err != nil {
			return State{}, fmt.Errorf("reading serving certificate: %w", err)
		}
		st.Serving = s
	}
	if v := ann[AnnotationCAPublished]; v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return State{}, fmt.Errorf("reading annotation %s: %w", AnnotationCAPublished, err)
		}
		st.CAPublishedAt = t
	}
	return st, nil
}
