package webhook

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ClientNamespaces reads namespaces through the manager's cache and falls
// back to a live read when the cache has not seen a namespace yet (a pod
// created right after its namespace must not be refused for it).
type ClientNamespaces struct {
	// Cached is the manager's client (informer-backed).
	Cached client.Reader
	// Live is an uncached reader (mgr.GetAPIReader()); nil disables the
	// fallback.
	Live client.Reader
}

var _ NamespaceGetter = ClientNamespaces{}

// GetNamespace implements NamespaceGetter.
func (c ClientNamespaces) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	ns := &corev1.Namespace{}
	err := c.Cached.Get(ctx, types.NamespacedName{Name: name}, ns)
	if err == nil {
		return ns, nil
	}
	if !apierrors.IsNotFound(err) || c.Live == nil {
		return nil, fmt.Errorf("reading namespace from the cache: %w", err)
	}
	if err := c.Live.Get(ctx, types.NamespacedName{Name: name}, ns); err != nil {
		return nil, fmt.Errorf("reading namespace: %w", err)
	}
	return ns, nil
}
