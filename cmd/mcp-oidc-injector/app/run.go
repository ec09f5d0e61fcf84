package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/certs"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/webhook"
)

// Main parses args and the environment, sets up logging and runs the
// injector against the cluster it finds (in-cluster or KUBECONFIG) until ctx
// ends.
func Main(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := ParseOptions(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fs := (&Options{}).FlagSet(getenv)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return nil
	}
	if err != nil {
		fmt.Fprintf(stderr, "mcp-oidc-injector: %v\n", err)
		return err
	}
	log := NewLogger(o.LogLevel, stderr)
	// controller-runtime's own components log through its global logger.
	ctrl.SetLogger(log)
	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "no Kubernetes configuration")
		return fmt.Errorf("kubernetes configuration: %w", err)
	}
	if err := Run(ctx, o, Deps{REST: cfg, Log: log}); err != nil {
		log.Error(err, "injector stopped")
		return err
	}
	return nil
}

// NewLogger is a JSON zap logger at level behind logr.
func NewLogger(level string, w io.Writer) logr.Logger {
	lvl := zapcore.InfoLevel
	_ = lvl.UnmarshalText([]byte(level))
	return crzap.New(crzap.WriteTo(w), crzap.Level(lvl), crzap.UseDevMode(false))
}

// Deps are what Run needs from outside.
type Deps struct {
	// REST reaches the API server.
	REST *rest.Config
	// Log is the structured logger.
	Log logr.Logger
	// Metrics receives the admission metrics; default controller-runtime's
	// metrics.Registry, which --metrics-bind-address serves.
	Metrics *webhook.Metrics
}

// Run serves the webhook until ctx ends: it prepares certificates
// (self-managed: from the shared Secret, written to --cert-dir before the
// server starts), builds the manager with the webhook server, health probes
// and metrics, and starts it.
func Run(ctx context.Context, o Options, d Deps) error {
	log := d.Log
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building scheme: %w", err)
	}
	if err := admissionregistrationv1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building scheme: %w", err)
	}
	settings, err := o.settings(d.REST)
	if err != nil {
		return err
	}

	var certManager *certs.Manager
	if o.CertMode == CertModeSelfManaged {
		live, err := client.New(d.REST, client.Options{Scheme: scheme})
		if err != nil {
			return fmt.Errorf("creating API client: %w", err)
		}
		certManager, err = certs.New(live, certs.Config{
			Namespace: o.Namespace, SecretName: o.CertSecretName, WebhookConfigName: o.WebhookConfigName,
			ServiceName: o.WebhookServiceName, ExtraDNSNames: o.CertExtraNames, CertDir: o.CertDir,
			CALifetime: o.CALifetime, ServingLifetime: o.ServingLifetime, PublishGrace: o.CAPublishGrace,
			Resync: o.CertResync, Log: log.WithName("certs"),
		})
		if err != nil {
			return err
		}
		// The files must exist before the webhook server starts. A failed
		// caBundle update is retried by the loop; a missing Secret is not.
		if err := certManager.Reconcile(ctx); err != nil {
			log.Error(err, "initial certificate reconcile incomplete; retrying in the background")
		}
	}
	watcher, err := certwatcher.New(filepath.Join(o.CertDir, "tls.crt"), filepath.Join(o.CertDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("loading webhook serving certificate from %s: %w", o.CertDir, err)
	}
	watcher = watcher.WithWatchInterval(o.CertWatchPoll)

	server := crwebhook.NewServer(crwebhook.Options{
		Host: o.WebhookHost,
		Port: o.WebhookPort,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.GetCertificate = watcher.GetCertificate
			c.MinVersion = tls.VersionTLS12
			// HTTP/2 is off, as in kubebuilder's scaffold (rapid reset).
			c.NextProtos = []string{"http/1.1"}
		}},
	})
	mgr, err := ctrl.NewManager(d.REST, manager.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress: o.HealthBindAddress,
		WebhookServer:          server,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.Add(watcher); err != nil {
		return fmt.Errorf("adding certificate watcher: %w", err)
	}
	if certManager != nil {
		if err := mgr.Add(certManager); err != nil {
			return fmt.Errorf("adding certificate manager: %w", err)
		}
	}
	m := d.Metrics
	if m == nil {
		if m, err = webhook.NewMetrics(metrics.Registry); err != nil {
			return err
		}
	}
	handler, err := webhook.NewHandler(webhook.Options{
		Decoder:    admission.NewDecoder(scheme),
		Namespaces: webhook.ClientNamespaces{Cached: mgr.GetClient(), Live: mgr.GetAPIReader()},
		Settings:   settings,
		Observer:   m,
		Log:        log.WithName("admission"),
	})
	if err != nil {
		return err
	}
	// GetWebhookServer (not the variable) adds the server to the manager.
	server = mgr.GetWebhookServer()
	server.Register(webhook.Path, &admission.Webhook{Handler: handler, RecoverPanic: ptr(true)})
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	if certManager != nil {
		// A started server is not enough: until the caBundle trusts its
		// certificate the API server rejects every call to it.
		if err := mgr.AddReadyzCheck("ca-bundle", certManager.PublishedChecker()); err != nil {
			return fmt.Errorf("adding readiness check: %w", err)
		}
	}
	log.Info("starting injector", "certMode", o.CertMode, "webhookPort", o.WebhookPort,
		"nativeSidecars", settings.NativeSidecars, "defaultMode", settings.DefaultMode, "namespace", o.Namespace)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// settings turns the options into the mutation's Settings; native sidecars
// in auto mode are decided from the API server's version.
func (o *Options) settings(cfg *rest.Config) (inject.Settings, error) {
	defaults, err := LoadProxyDefaults(o.ProxyDefaultsFile)
	if err != nil {
		return inject.Settings{}, err
	}
	native, err := strconv.ParseBool(o.NativeSidecars)
	if o.NativeSidecars == "auto" {
		native, err = supportsNativeSidecars(cfg)
	}
	if err != nil {
		return inject.Settings{}, err
	}
	return inject.Settings{
		Image:                o.SidecarImage,
		ImagePullPolicy:      corev1.PullPolicy(o.ImagePullPolicy),
		DefaultMode:          inject.Mode(o.DefaultMode),
		RebindWhenRestricted: o.RebindWhenRestricted,
		NativeSidecars:       native,
		Resources:            o.Resources(),
		DrainDelay:           o.DrainDelay,
		ProxyDefaults:        defaults,
		InjectorNamespace:    o.Namespace,
		RedisSecret:          o.RedisSecret,
	}, nil
}

// nativeSidecarsSince is the first Kubernetes version with sidecar
// containers enabled by default.
var nativeSidecarsSince = version.MajorMinor(1, 29)

func supportsNativeSidecars(cfg *rest.Config) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, fmt.Errorf("creating discovery client: %w", err)
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return false, fmt.Errorf("reading API server version (set --native-sidecars to skip): %w", err)
	}
	return NativeSidecarsFor(info.GitVersion)
}

// NativeSidecarsFor says whether an API server of gitVersion supports
// native sidecars (>= 1.29).
func NativeSidecarsFor(gitVersion string) (bool, error) {
	v, err := version.ParseGeneric(gitVersion)
	if err != nil {
		return false, fmt.Errorf("parsing API server version %q: %w", gitVersion, err)
	}
	return v.AtLeast(nativeSidecarsSince), nil
}
