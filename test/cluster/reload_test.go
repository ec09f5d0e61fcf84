package cluster

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// reloadBound is how long a ConfigMap edit may take to change what a
// running sidecar does: the kubelet rewrites the mounted file at its next
// pod sync (syncFrequency 10s in hack/cluster/kubelet.yaml.in; the default
// of 1m would need about two minutes), then the sidecar sees the change and
// reloads. No pod restarts.
const reloadBound = 90 * time.Second

// configMapName is the README's ConfigMap (and Secret) name.
const configMapName = "mcp-server-auth"

// Step 5: an allow-list edit in the ConfigMap shuts the logged-in user out
// on both pods, and reverting it lets them back in, within reloadBound and
// without restarting a pod.
func (s *suite) stepReload(t *testing.T) {
	s.diagnoseOnFailure(t, s.appNS)
	ctx, cancel := apiCtx()
	defer cancel()
	cms := s.kube.CoreV1().ConfigMaps(s.appNS)
	cm, err := cms.Get(ctx, configMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orig := cm.Data["config.yaml"]
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(orig), &doc); err != nil {
		t.Fatalf("the README's config.yaml: %v", err)
	}
	authz, _ := doc["authz"].(map[string]any)
	if authz == nil {
		authz = map[string]any{}
	}
	authz["allowed_email_domains"] = []string{"excluded.example"}
	doc["authz"] = authz
	edited, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	before := map[types.UID]int32{}
	for _, p := range s.app.pods {
		before[p.UID] = restarts(&p)
	}

	setConfig := func(content string) {
		t.Helper()
		ctx, cancel := apiCtx()
		defer cancel()
		cm, err := cms.Get(ctx, configMapName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["config.yaml"] = content
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update ConfigMap %s: %v", configMapName, err)
		}
	}
	// Later steps need the user allowed again, also when this one fails.
	t.Cleanup(func() {
		if t.Failed() {
			setConfig(orig)
		}
	})

	setConfig(string(edited))
	start := time.Now()
	for _, tg := range s.podTargets() {
		eventually(t, reloadBound-time.Since(start), tg.name+" refusing the user after the allow-list edit (403)", func() error {
			r, err := mcpInitialize(context.Background(), tg, s.cookie)
			if err != nil {
				return err
			}
			if r.status != http.StatusForbidden {
				return fmt.Errorf("answered %s, want 403", r)
			}
			return nil
		})
	}
	t.Logf("allow-list edit applied on both pods after %s (bound %s)", time.Since(start).Round(100*time.Millisecond), reloadBound)

	setConfig(orig)
	start = time.Now()
	for _, tg := range s.podTargets() {
		eventually(t, reloadBound-time.Since(start), tg.name+" letting the user in again after the revert", func() error {
			return checkInitialize(context.Background(), tg, s.cookie)
		})
	}
	t.Logf("revert applied on both pods after %s (bound %s)", time.Since(start).Round(100*time.Millisecond), reloadBound)

	ctx2, cancel2 := apiCtx()
	defer cancel2()
	list, err := s.kube.CoreV1().Pods(s.appNS).List(ctx2, metav1.ListOptions{LabelSelector: appSelector})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, p := range list.Items {
		n, ok := before[p.UID]
		if !ok {
			t.Errorf("pod %s is new: the edit must not replace pods", p.Name)
			continue
		}
		seen++
		if restarts(&p) != n {
			t.Errorf("pod %s: %s; the edit must not restart a container", p.Name, podState(&p))
		}
	}
	if seen != len(before) {
		t.Errorf("%d of the %d pods are still there; the edit must not replace pods", seen, len(before))
	}
}
