package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/authz"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// newStore builds the configured session store. Building it does not
// contact Redis; the client connects lazily and reconnects by itself.
func newStore(cfg config.Config) (session.Store, error) {
	if cfg.Session.Store != "redis" {
		return session.NewMemory(session.MemoryOptions{}), nil
	}
	rc := cfg.Redis
	opts := session.RedisOptions{
		URL:        rc.URL,
		Addrs:      rc.Addrs,
		MasterName: rc.MasterName,
		Cluster:    rc.Cluster,
		Username:   rc.Username,
		Password:   rc.Password,
		DB:         rc.DB,
		KeyPrefix:  rc.KeyPrefix,
	}
	if rc.TLS || rc.CAFile != "" || rc.InsecureSkipVerify {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: rc.InsecureSkipVerify} //nolint:gosec // explicit opt-in for testing
		if rc.CAFile != "" {
			pem, err := os.ReadFile(rc.CAFile)
			if err != nil {
				return nil, fmt.Errorf("redis.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("redis.ca_file: no PEM certificates in %s", rc.CAFile)
			}
			tc.RootCAs = pool
		}
		opts.TLS = tc
	}
	st, err := session.NewRedis(opts)
	if err != nil {
		return nil, fmt.Errorf("redis session store: %w", err)
	}
	return st, nil
}

func headerNames(h config.HeadersConfig) proxy.HeaderNames {
	names := proxy.DefaultHeaderNames()
	if h.Preset == "original" {
		names = proxy.OriginalHeaderNames()
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&names.User, h.User)
	set(&names.Email, h.Email)
	set(&names.Groups, h.Groups)
	set(&names.Name, h.Name)
	set(&names.Username, h.Username)
	return names
}

func rulesFrom(cfg config.Config) authz.Rules {
	r := authz.Rules{
		AllowUnverifiedEmail: cfg.Authz.AllowUnverifiedEmail,
		AllowedEmailDomains:  cfg.Authz.AllowedEmailDomains,
		AllowedEmails:        cfg.Authz.AllowedEmails,
		AllowedGroups:        cfg.Authz.AllowedGroups,
	}
	for _, rc := range cfg.Authz.RequiredClaims {
		if k, v, ok := strings.Cut(rc, "="); ok {
			if r.RequiredClaims == nil {
				r.RequiredClaims = map[string]string{}
			}
			r.RequiredClaims[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return r
}
