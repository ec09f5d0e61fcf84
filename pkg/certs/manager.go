package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Config configures the self-managed certificates.
type Config struct {
	// Namespace and SecretName locate the Secret shared by every replica.
	Namespace  string
	SecretName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose webhooks
	// get the caBundle.
	WebhookConfigName string
	// ServiceName is the webhook Service; the serving certificate is for
	// <service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local.
	ServiceName string
	// ExtraDNSNames are added to the serving certificate (tests: localhost).
	ExtraDNSNames []string
	// CertDir receives CertName and KeyName for the webhook server.
	CertDir, CertName, KeyName string
	// CALifetime defaults to one year, ServingLifetime to 90 days,
	// PublishGrace to 30 seconds, Resync to 10 seconds.
	CALifetime, ServingLifetime, PublishGrace, Resync time.Duration
	// ReadyGrace is how long readiness survives failed passes that leave
	// the served certificate unchanged (default one minute), so a short API
	// server blip does not take every replica out of the Service at once.
	ReadyGrace time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	Log logr.Logger
}

// Manager keeps the Secret, the cert dir and the caBundle converged. Every
// replica runs one; they agree through the Secret's resourceVersion
// (create-if-absent, update-if-unchanged, re-read and adopt on conflict), so
// leader election is not needed.
type Manager struct {
	cfg    Config
	pol    Policy
	client client.Client

	// mu guards notReady: nil once the last Reconcile made every webhook's
	// caBundle trust the CA that signed the serving certificate written to
	// the cert dir, else why not (errNotReconciled before the first pass).
	mu       sync.Mutex
	notReady error
	// confirmed is the serving certificate (DER) last confirmed to be
	// trusted by the published caBundle, at confirmedAt.
	confirmed   []byte
	confirmedAt time.Time
}

// errNotReconciled is the readiness answer before the first Reconcile.
var errNotReconciled = errors.New("caBundle not published yet")

var (
	_ manager.Runnable               = (*Manager)(nil)
	_ manager.LeaderElectionRunnable = (*Manager)(nil)
)

// New returns a Manager. c must read from the API server, not a cache
// (mgr.GetAPIReader semantics), so that conflicting replicas see each
// other's writes; the injector passes an uncached client.
func New(c client.Client, cfg Config) (*Manager, error) {
	var missing []string
	for name, v := range map[string]string{"namespace": cfg.Namespace, "secret name": cfg.SecretName,
		"webhook configuration name": cfg.WebhookConfigName, "service name": cfg.ServiceName, "cert dir": cfg.CertDir} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("certs: missing %v", missing)
	}
	if cfg.CertName == "" {
		cfg.CertName = "tls.crt"
	}
	if cfg.KeyName == "" {
		cfg.KeyName = "tls.key"
	}
	if cfg.CALifetime <= 0 {
		cfg.CALifetime = 365 * 24 * time.Hour
	}
	if cfg.ServingLifetime <= 0 {
		cfg.ServingLifetime = 90 * 24 * time.Hour
	}
	if cfg.PublishGrace <= 0 {
		cfg.PublishGrace = 30 * time.Second
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 10 * time.Second
	}
	if cfg.ReadyGrace <= 0 {
		cfg.ReadyGrace = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	svc := cfg.ServiceName + "." + cfg.Namespace + ".svc"
	return &Manager{cfg: cfg, client: c, notReady: errNotReconciled, pol: Policy{
		CALifetime:      cfg.CALifetime,
		ServingLifetime: cfg.ServingLifetime,
		PublishGrace:    cfg.PublishGrace,
		DNSNames:        append([]string{svc, svc + ".cluster.local"}, cfg.ExtraDNSNames...),
		CommonName:      "mcp-oidc-injector-ca." + cfg.Namespace,
	}}, nil
}

// NeedLeaderElection is false: every replica must write its own cert dir.
func (m *Manager) NeedLeaderElection() bool { return false }

// Start reconciles every Resync until ctx ends. Errors are logged and retried
// on the next tick: a transient API error must not stop the injector, which
// keeps serving its current certificate.
func (m *Manager) Start(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Resync)
	defer t.Stop()
	for {
		if err := m.Reconcile(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Log.Error(err, "reconciling webhook certificates")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PublishedChecker is a readiness check: it fails unless the last Reconcile
// published a caBundle that trusts the serving certificate. Without it a
// replica that cannot update the webhook configuration (RBAC, wrong name)
// looks healthy while the API server rejects every call to it with
// "certificate signed by unknown authority".
func (m *Manager) PublishedChecker() healthz.Checker {
	return func(*http.Request) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.notReady
	}
}

// Reconcile makes one pass: rotate what is due in the Secret, publish the
// caBundle, and write the serving pair to the cert dir. The injector calls it
// once before starting the webhook server so the files exist. Its outcome
// is what PublishedChecker reports.
func (m *Manager) Reconcile(ctx context.Context) error {
	bundle, served, err := m.reconcile(ctx)
	notReady := err
	if err == nil && !signedBy(served.Cert, bundle) {
		// The Secret moved on after the bundle was written (another
		// replica rotated in between); the next pass publishes it.
		notReady = errors.New("the published caBundle does not hold the serving certificate's CA yet")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case notReady == nil:
		m.confirmed, m.confirmedAt = served.Cert.Raw, m.cfg.Now()
	case m.confirmed != nil && (served == nil || bytes.Equal(served.Cert.Raw, m.confirmed)) &&
		m.cfg.Now().Sub(m.confirmedAt) < m.cfg.ReadyGrace:
		// A failed pass (an API server blip, a conflict) that left the
		// served certificate as it was changes nothing for admissions yet:
		// the bundle confirmed moments ago still trusts it. Staying ready
		// for a grace period keeps every replica from leaving the Service
		// at once; a lasting failure still turns readiness off.
		return err
	}
	if notReady != nil {
		notReady = fmt.Errorf("caBundle not published: %w", notReady)
	}
	m.notReady = notReady
	return err
}

// reconcile is Reconcile's pass; it returns the CAs it published (nil if
// publishing failed) and the serving pair it wrote.
func (m *Manager) reconcile(ctx context.Context) ([]*x509.Certificate, *KeyPair, error) {
	st, err := m.converge(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	published, pubErr := m.publish(ctx, st, false)
	if errors.Is(pubErr, errStaleView) {
		// Another replica rotated and published after this one read the
		// Secret: adopt its state rather than drop its CA from the bundle.
		if st, err = m.converge(ctx, nil); err != nil {
			return nil, nil, err
		}
		published, pubErr = m.publish(ctx, st, true)
	}
	var bundle []*x509.Certificate
	if published {
		bundle = st.Trusted
	}
	if published && st.CAPublishedAt.IsZero() {
		if st, err = m.converge(ctx, st.CA.Cert); err != nil {
			return nil, nil, err
		}
	}
	if err := m.writeFiles(st.Serving); err != nil {
		return nil, nil, err
	}
	return bundle, st.Serving, pubErr
}

// converge reads the Secret, applies what is due, and writes it back with
// optimistic concurrency; on conflict it re-reads and decides again, adopting
// whatever another replica wrote. published, when set, is a CA just
// confirmed in the caBundle; if it is still the current CA, the time is
// recorded.
func (m *Manager) converge(ctx context.Context, published *x509.Certificate) (State, error) {
	key := types.NamespacedName{Namespace: m.cfg.Namespace, Name: m.cfg.SecretName}
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			return State{}, fmt.Errorf("updating secret %s: too many conflicts", key)
		}
		secret := &corev1.Secret{}
		exists := true
		if err := m.client.Get(ctx, key, secret); apierrors.IsNotFound(err) {
			exists = false
		} else if err != nil {
			return State{}, fmt.Errorf("reading secret %s: %w", key, err)
		}
		st, err := decodeState(secret.Data, secret.Annotations)
		if err != nil {
			m.cfg.Log.Error(err, "certificate secret unreadable; issuing new certificates", "secret", key.String())
			st = State{}
		}
		now := m.cfg.Now()
		plan := decide(now, st, m.pol)
		next, err := apply(now, st, m.pol, plan)
		if err != nil {
			return State{}, err
		}
		mark := published != nil && next.CAPublishedAt.IsZero() && next.CA.Cert.Equal(published)
		if mark {
			next.CAPublishedAt = now
		}
		if !plan.Changed() && !mark {
			return next, nil
		}
		data, ann := next.encode()
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		delete(secret.Annotations, AnnotationCAPublished)
		for k, v := range ann {
			secret.Annotations[k] = v
		}
		secret.Data = data
		if exists {
			err = m.client.Update(ctx, secret)
		} else {
			secret.ObjectMeta = metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Annotations: secret.Annotations,
				Labels: map[string]string{"app.kubernetes.io/name": "mcp-oidc-injector"}}
			secret.Type = corev1.SecretTypeOpaque
			err = m.client.Create(ctx, secret)
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			continue // another replica won: adopt its state and decide again
		}
		if err != nil {
			return State{}, fmt.Errorf("writing secret %s: %w", key, err)
		}
		if plan.Changed() {
			m.cfg.Log.Info("rotated webhook certificates", "reasons", plan.Reasons,
				"servingSerial", next.Serving.Cert.SerialNumber.String(), "caSerial", next.CA.Cert.SerialNumber.String())
		}
		return next, nil
	}
}

// errStaleView means the caBundle holds a valid CA the Secret as this
// replica read it does not know: most likely another replica rotated the CA
// and published it in between, and writing this replica's bundle would
// remove the new CA just before serving certificates switch to it.
var errStaleView = errors.New("the caBundle holds a CA unknown to the Secret as read")

// publish writes the state's bundle into the caBundle of every webhook of
// the configuration (re-applying it if someone overwrote it), and reports
// whether they all carry it now. Unless force is set it refuses, with
// errStaleView, to remove an unexpired CA it does not know; the caller
// re-reads the Secret and publishes again with force (a CA still unknown
// then is foreign, e.g. from a deleted Secret, and is replaced).
func (m *Manager) publish(ctx context.Context, st State, force bool) (bool, error) {
	bundle := st.Bundle()
	key := types.NamespacedName{Name: m.cfg.WebhookConfigName}
	for attempt := 0; attempt < 5; attempt++ {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := m.client.Get(ctx, key, cfg); err != nil {
			return false, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", key.Name, err)
		}
		if len(cfg.Webhooks) == 0 {
			return false, fmt.Errorf("MutatingWebhookConfiguration %s has no webhooks", key.Name)
		}
		if !force && m.holdsUnknownCA(cfg, st.Trusted) {
			return false, errStaleView
		}
		changed := false
		for i := range cfg.Webhooks {
			if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, bundle) {
				cfg.Webhooks[i].ClientConfig.CABundle = bundle
				changed = true
			}
		}
		if !changed {
			return true, nil
		}
		err := m.client.Update(ctx, cfg)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("updating caBundle of MutatingWebhookConfiguration %s: %w", key.Name, err)
		}
		m.cfg.Log.Info("published caBundle", "webhookConfiguration", key.Name, "webhooks", len(cfg.Webhooks))
		return true, nil
	}
	return false, fmt.Errorf("updating caBundle of MutatingWebhookConfiguration %s: too many conflicts", key.Name)
}

// holdsUnknownCA reports whether a webhook's caBundle has an unexpired
// certificate that is not in trusted.
func (m *Manager) holdsUnknownCA(cfg *admissionregistrationv1.MutatingWebhookConfiguration, trusted []*x509.Certificate) bool {
	now := m.cfg.Now()
	for _, wh := range cfg.Webhooks {
		certs, err := ParseCertificates(wh.ClientConfig.CABundle)
		if err != nil {
			continue // unreadable: nothing worth keeping, replace it
		}
		for _, c := range certs {
			if now.Before(c.NotAfter) && !slices.ContainsFunc(trusted, c.Equal) {
				return true
			}
		}
	}
	return false
}

// writeFiles puts the serving pair where the webhook server's certwatcher
// reads it, only when it changed. Each file is replaced atomically (the
// watcher never reads half a file); between the two renames the pair does
// not match and the watcher keeps serving the previous, still valid pair.
func (m *Manager) writeFiles(s *KeyPair) error {
	if err := os.MkdirAll(m.cfg.CertDir, 0o700); err != nil {
		return fmt.Errorf("creating cert dir: %w", err)
	}
	certPath := filepath.Join(m.cfg.CertDir, m.cfg.CertName)
	keyPath := filepath.Join(m.cfg.CertDir, m.cfg.KeyName)
	onDisk, err := os.ReadFile(certPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading serving certificate: %w", err)
	}
	if bytes.Equal(onDisk, s.CertPEM) {
		return nil
	}
	if err := writeAtomic(keyPath, s.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(certPath, s.CertPEM, 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Current reads the Secret's state (tests and diagnostics).
func (m *Manager) Current(ctx context.Context) (State, error) {
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: m.cfg.Namespace, Name: m.cfg.SecretName}
	if err := m.client.Get(ctx, key, secret); err != nil {
		return State{}, fmt.Errorf("reading secret %s: %w", key, err)
	}
	return decodeState(secret.Data, secret.Annotations)
}
