package deploy_test

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/controlplane/controlplanetest"
)

var env *controlplanetest.Env

func TestMain(m *testing.M) { os.Exit(controlplanetest.Run(m, &env)) }

const sys = wasmbedv1.DefaultSystemNamespace

// render builds a kustomization as `kubectl apply -k` does: files only from
// inside each kustomization's root, resources in kubectl's (legacy) order.
func render(dir string) ([]*unstructured.Unstructured, error) {
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy
	rm, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		// Through JSON, for the number types unstructured objects hold.
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

// id names an object as kubectl does: Kind/namespace/name.
func id(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + "/" + u.GetName()
	}
	return u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

// manifests is the rendered installation.
type manifests struct {
	objs []*unstructured.Unstructured
	byID map[string]*unstructured.Unstructured
}

// rendered renders deploy/ and the example overlay once for all the tests.
var rendered = sync.OnceValues(func() (map[string]*manifests, error) {
	out := map[string]*manifests{}
	for _, dir := range []string{".", exampleOverlay} {
		objs, err := render(dir)
		if err != nil {
			return nil, err
		}
		m := &manifests{objs: objs, byID: map[string]*unstructured.Unstructured{}}
		for _, o := range objs {
			m.byID[id(o)] = o
		}
		out[dir] = m
	}
	return out, nil
})

// exampleOverlay is the installation of docs/install.md.
var exampleOverlay = filepath.Join("..", "examples", "install")

// load returns the rendered deploy/.
func load(t *testing.T) *manifests { return loadDir(t, ".") }

func loadDir(t *testing.T, dir string) *manifests {
	t.Helper()
	m, err := rendered()
	if err != nil {
		t.Fatal(err)
	}
	return m[dir]
}

// get converts the object named by ident into T, refusing fields T does not
// have (a misspelt field would otherwise vanish silently).
func get[T any](t *testing.T, m *manifests, ident string) *T {
	t.Helper()
	u, ok := m.byID[ident]
	if !ok {
		t.Fatalf("no %s in the manifests", ident)
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s: %v", ident, err)
	}
	return out
}

// TestInstallationObjects checks what `kubectl apply -k deploy/` creates,
// and in which order: the namespace, then the CRDs, then everything else.
func TestInstallationObjects(t *testing.T) {
	m := load(t)
	var got []string
	for _, o := range m.objs {
		got = append(got, id(o))
	}
	want := []string{
		"Namespace/wasmbed-system",
		"CustomResourceDefinition/applications.wasmbed.github.io",
		"CustomResourceDefinition/deviceapplications.wasmbed.github.io",
		"CustomResourceDefinition/devices.wasmbed.github.io",
		"ServiceAccount/wasmbed-system/wasmbed-controller",
		"ServiceAccount/wasmbed-system/wasmbed-gateway",
		"Role/wasmbed-system/wasmbed-controller",
		"Role/wasmbed-system/wasmbed-gateway",
		"Role/wasmbed-system/wasmbed-gateway-pairing",
		"ClusterRole/wasmbed-admin",
		"ClusterRole/wasmbed-controller",
		"ClusterRole/wasmbed-gateway",
		"ClusterRole/wasmbed-gateway-http-api",
		"ClusterRole/wasmbed-operator",
		"ClusterRole/wasmbed-viewer",
		"RoleBinding/wasmbed-system/wasmbed-controller",
		"RoleBinding/wasmbed-system/wasmbed-gateway",
		"RoleBinding/wasmbed-system/wasmbed-gateway-pairing",
		"ClusterRoleBinding/wasmbed-controller",
		"ClusterRoleBinding/wasmbed-gateway",
		"ClusterRoleBinding/wasmbed-gateway-http-api",
		"ConfigMap/wasmbed-system/wasmbed-alerts",
		"Secret/wasmbed-system/wasmbed-session-tickets",
		"Service/wasmbed-system/wasmbed-gateway",
		"Service/wasmbed-system/wasmbed-gateway-headless",
		"Deployment/wasmbed-system/wasmbed-controller",
		"StatefulSet/wasmbed-system/wasmbed-gateway",
		"PodDisruptionBudget/wasmbed-system/wasmbed-gateway",
	}
	if !slices.Equal(got, want) {
		t.Errorf("objects:\ngot  %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	for _, o := range m.objs {
		if ns := o.GetNamespace(); ns != "" && ns != sys {
			t.Errorf("%s: in namespace %s, want %s", id(o), ns, sys)
		}
		if o.GetLabels()["app.kubernetes.io/part-of"] != "wasmbed" {
			t.Errorf("%s: no app.kubernetes.io/part-of=wasmbed label", id(o))
		}
	}
}

// podSpec is a workload's pod template as the checks below need it.
type podSpec struct {
	name     string
	labels   map[string]string
	spec     corev1.PodSpec
	replicas int32
}

func workloads(t *testing.T, m *manifests) []podSpec {
	d := get[appsv1.Deployment](t, m, "Deployment/wasmbed-system/wasmbed-controller")
	s := get[appsv1.StatefulSet](t, m, "StatefulSet/wasmbed-system/wasmbed-gateway")
	return []podSpec{
		{"controller", d.Spec.Template.Labels, d.Spec.Template.Spec, *d.Spec.Replicas},
		{"gateway", s.Spec.Template.Labels, s.Spec.Template.Spec, *s.Spec.Replicas},
	}
}

// TestWorkloadsHardened checks each pod runs as a non-root user on a
// read-only root filesystem, without privileges, with resource requests, a
// memory limit and both probes, from the one image.
func TestWorkloadsHardened(t *testing.T) {
	m := load(t)
	for _, w := range workloads(t, m) {
		t.Run(w.name, func(t *testing.T) {
			ps := w.spec.SecurityContext
			if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 {
				t.Errorf("pod security context %+v: want runAsNonRoot and a non-zero runAsUser", ps)
			}
			if ps != nil && (ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
				t.Errorf("seccomp profile %+v, want RuntimeDefault", ps.SeccompProfile)
			}
			if len(w.spec.Containers) != 1 {
				t.Fatalf("got %d containers, want 1", len(w.spec.Containers))
			}
			c := w.spec.Containers[0]
			if c.Image != "wasmbed:dev" {
				t.Errorf("image %q, want wasmbed:dev (the kustomization's images entry)", c.Image)
			}
			if len(c.Args) == 0 || c.Args[0] != w.name {
				t.Errorf("args %q: want the %s subcommand first", c.Args, w.name)
			}
			cs := c.SecurityContext
			switch {
			case cs == nil:
				t.Error("no container security context")
			case cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem:
				t.Error("root filesystem not read-only")
			case cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation:
				t.Error("privilege escalation allowed")
			case cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(cs.Capabilities.Add) > 0:
				t.Errorf("capabilities %+v, want all dropped", cs.Capabilities)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("requests %v: want CPU and memory", c.Resources.Requests)
			}
			if c.Resources.Limits.Memory().Cmp(*c.Resources.Requests.Memory()) < 0 {
				t.Errorf("memory limit %v below the request or missing", c.Resources.Limits.Memory())
			}
			for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("no HTTP %s probe", name)
					continue
				}
				if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.HTTPGet.Port.String() }) {
					t.Errorf("%s probe on port %q, which the container does not name", name, p.HTTPGet.Port.String())
				}
			}
		})
	}
}

// TestControllerLeaderElection checks the controller's replicas share the
// work through leader election.
func TestControllerLeaderElection(t *testing.T) {
	d := get[appsv1.Deployment](t, load(t), "Deployment/wasmbed-system/wasmbed-controller")
	args := d.Spec.Template.Spec.Containers[0].Args
	if *d.Spec.Replicas > 1 && !slices.Contains(args, "--leader-elect=true") {
		t.Errorf("%d replicas with args %q: want --leader-elect=true", *d.Spec.Replicas, args)
	}
	if d.Spec.Template.Spec.ServiceAccountName != "wasmbed-controller" {
		t.Errorf("service account %q, want wasmbed-controller (the one config/rbac lets read the keys)", d.Spec.Template.Spec.ServiceAccountName)
	}
}

// TestGatewayNamesSigned checks every name a gateway asks a serving
// certificate for is one the controller signs: otherwise its request is
// denied and it never serves.
func TestGatewayNamesSigned(t *testing.T) {
	for _, dir := range []string{".", exampleOverlay} {
		m := loadDir(t, dir)
		d := get[appsv1.Deployment](t, m, "Deployment/wasmbed-system/wasmbed-controller")
		s := get[appsv1.StatefulSet](t, m, "StatefulSet/wasmbed-system/wasmbed-gateway")
		allowed := map[string]bool{}
		for _, a := range d.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--gateway-dns-name="); ok {
				allowed[v] = true
			}
		}
		var asked int
		for _, a := range s.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--dns-name="); ok {
				asked++
				if !allowed[v] {
					t.Errorf("%s: gateways ask for %s, which the controller does not sign (%v)", dir, v, allowed)
				}
			}
		}
		if asked == 0 {
			t.Errorf("%s: gateways ask for no name: they cannot have a serving certificate", dir)
		}
	}
}

// TestGatewayServices checks the gateway's Services expose the device,
// enrollment and HTTP ports of its pods, that the StatefulSet's governing
// Service is headless, and that the PodDisruptionBudget covers the pods.
func TestGatewayServices(t *testing.T) {
	m := load(t)
	s := get[appsv1.StatefulSet](t, m, "StatefulSet/wasmbed-system/wasmbed-gateway")
	pod := labels.Set(s.Spec.Template.Labels)
	containerPorts := map[string]int32{}
	for _, p := range s.Spec.Template.Spec.Containers[0].Ports {
		containerPorts[p.Name] = p.ContainerPort
	}
	wantPorts := map[string]int32{"device": 4423, "enroll": 4424, "http": 8080}
	for _, name := range []string{"wasmbed-gateway", "wasmbed-gateway-headless"} {
		svc := get[corev1.Service](t, m, "Service/wasmbed-system/"+name)
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(pod) || len(svc.Spec.Selector) == 0 {
			t.Errorf("%s: selector %v does not select the gateway pods %v", name, svc.Spec.Selector, pod)
		}
		got := map[string]int32{}
		for _, p := range svc.Spec.Ports {
			got[p.Name] = p.Port
			if cp, ok := containerPorts[p.TargetPort.String()]; !ok || cp != p.Port {
				t.Errorf("%s: port %s targets %q, not a container port of the same number", name, p.Name, p.TargetPort.String())
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(wantPorts) {
			t.Errorf("%s: ports %v, want %v", name, got, wantPorts)
		}
	}
	if h := get[corev1.Service](t, m, "Service/wasmbed-system/"+s.Spec.ServiceName); h.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("governing Service %s is not headless", s.Spec.ServiceName)
	}
	if s.Spec.Template.Spec.ServiceAccountName != "wasmbed-gateway" {
		t.Errorf("service account %q, want wasmbed-gateway (the identity the controller signs for)", s.Spec.Template.Spec.ServiceAccountName)
	}
	pdb := get[policyv1.PodDisruptionBudget](t, m, "PodDisruptionBudget/wasmbed-system/wasmbed-gateway")
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(pod) {
		t.Errorf("PodDisruptionBudget selects %v, not the gateway pods %v", sel, pod)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("maxUnavailable %v, want 1: one replica's devices move at a time", pdb.Spec.MaxUnavailable)
	}
}

// TestBindingsResolve checks every binding names a role and service account
// of the installation (or a role Kubernetes ships).
func TestBindingsResolve(t *testing.T) {
	m := load(t)
	n := 0
	for _, o := range m.objs {
		var ref rbacv1.RoleRef
		var subjects []rbacv1.Subject
		switch o.GetKind() {
		case "RoleBinding":
			b := get[rbacv1.RoleBinding](t, m, id(o))
			ref, subjects = b.RoleRef, b.Subjects
		case "ClusterRoleBinding":
			b := get[rbacv1.ClusterRoleBinding](t, m, id(o))
			ref, subjects = b.RoleRef, b.Subjects
		default:
			continue
		}
		n++
		role := ref.Kind + "/" + ref.Name
		if ref.Kind == "Role" {
			role = ref.Kind + "/" + o.GetNamespace() + "/" + ref.Name
		}
		if _, ok := m.byID[role]; !ok {
			t.Errorf("%s: binds %s, which the installation does not have", id(o), role)
		}
		for _, s := range subjects {
			if _, ok := m.byID["ServiceAccount/"+s.Namespace+"/"+s.Name]; s.Kind != "ServiceAccount" || !ok {
				t.Errorf("%s: subject %s %s/%s is not a service account of the installation", id(o), s.Kind, s.Namespace, s.Name)
			}
		}
	}
	if n != 6 {
		t.Errorf("checked %d bindings, want 6", n)
	}
}

// TestAlertRulesShipped checks the alert rules ConfigMap holds
// config/prometheus/wasmbed-alerts.yaml byte for byte: the file promtool
// checks is the one installed.
func TestAlertRulesShipped(t *testing.T) {
	cm := get[corev1.ConfigMap](t, load(t), "ConfigMap/wasmbed-system/wasmbed-alerts")
	want, err := os.ReadFile(filepath.Join("..", "config", "prometheus", "wasmbed-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.Data["wasmbed-alerts.yaml"]; got != string(want) {
		t.Errorf("ConfigMap data (%d bytes) differs from wasmbed-alerts.yaml (%d bytes)", len(got), len(want))
	}
}

// TestSessionTicketSecretEmpty checks the installation creates the
// session-ticket Secret without keys, so that applying it again never
// replaces the keys the gateways share.
func TestSessionTicketSecretEmpty(t *testing.T) {
	s := get[corev1.Secret](t, load(t), "Secret/wasmbed-system/"+wasmbedv1.TicketKeysSecret)
	if len(s.Data) > 0 || len(s.StringData) > 0 {
		t.Errorf("the Secret carries data %v: applying it would overwrite the gateways' keys", slices.Collect(maps.Keys(s.Data)))
	}
}

// warnings collects the API server's warnings (deprecated APIs, pod
// security violations) for one client.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}

// TestApply applies every object to a real API server, first with a
// server-side dry run, as `kubectl apply -k deploy/ --server-side
// --dry-run=server` would: the API server validates each object against its
// schema, its admission (the namespace's restricted Pod Security level
// included) and, for RBAC, against escalation. Any refusal or warning
// fails. Then it installs everything for real and asks the API server's
// authorizer what each identity may do.
func TestApply(t *testing.T) {
	m := load(t)
	ctx := t.Context()
	dryRun(t, m)
	var d appsv1.Deployment
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: sys, Name: "wasmbed-controller"}, &d); !apierrors.IsNotFound(err) {
		t.Fatalf("after the dry run, get the controller's Deployment: %v, want not found", err)
	}
	if t.Failed() {
		return
	}
	for _, o := range m.objs {
		apply(ctx, t, env.Client, o)
	}
	checkAccess(t)
}

// TestExampleOverlay checks the installation of docs/install.md changes what
// it says and is valid too.
func TestExampleOverlay(t *testing.T) {
	m := loadDir(t, exampleOverlay)
	d := get[appsv1.Deployment](t, m, "Deployment/wasmbed-system/wasmbed-controller")
	s := get[appsv1.StatefulSet](t, m, "StatefulSet/wasmbed-system/wasmbed-gateway")
	svc := get[corev1.Service](t, m, "Service/wasmbed-system/wasmbed-gateway")
	for _, c := range []corev1.Container{d.Spec.Template.Spec.Containers[0], s.Spec.Template.Spec.Containers[0]} {
		if c.Image != "registry.example.com/wasmbed:v0.1.0" {
			t.Errorf("%s: image %q, want the overlay's", c.Name, c.Image)
		}
	}
	if args := d.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--gateway-dns-name=gateways.example.com") {
		t.Errorf("controller args %q lack the name devices dial", args)
	}
	if args := s.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--dns-name=gateways.example.com") {
		t.Errorf("gateway args %q lack the name devices dial", args)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("gateway Service type %q, want LoadBalancer", svc.Spec.Type)
	}
	if *s.Spec.Replicas != 3 {
		t.Errorf("%d gateway replicas, want 3", *s.Spec.Replicas)
	}
	dryRun(t, m)
}

// dryRun creates the namespace for real (nothing can be dry-run into a
// namespace that does not exist) and applies every other object with a
// server-side dry run, failing on any refusal or warning.
func dryRun(t *testing.T, m *manifests) {
	t.Helper()
	c, w := warningClient(t)
	ctx := t.Context()
	ns := m.objs[0]
	if ns.GetKind() != "Namespace" {
		t.Fatalf("first object %s, want the Namespace", id(ns))
	}
	apply(ctx, t, c, ns)
	for _, text := range w.take() {
		t.Errorf("%s: warning: %s", id(ns), text)
	}
	for _, o := range m.objs[1:] {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner("wasmbed-install"), client.ForceOwnership, client.DryRunAll); err != nil {
			t.Errorf("dry run: %s: %v", id(o), err)
		}
		for _, text := range w.take() {
			t.Errorf("dry run: %s: warning: %s", id(o), text)
		}
	}
}

// TestUpgradeSteps checks the label selectors docs/install.md upgrades with
// split the installation into three steps that cover every object once:
// CRDs, roles and the rest first, then the controller, then the gateways.
func TestUpgradeSteps(t *testing.T) {
	m := load(t)
	steps := []string{
		"app.kubernetes.io/component notin (controller,gateway)",
		"app.kubernetes.io/component=controller",
		"app.kubernetes.io/component=gateway",
	}
	step := map[string]int{}
	for i, expr := range steps {
		sel, err := labels.Parse(expr)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		for _, o := range m.objs {
			if !sel.Matches(labels.Set(o.GetLabels())) {
				continue
			}
			if prev, ok := step[id(o)]; ok {
				t.Errorf("%s: in steps %d and %d", id(o), prev+1, i+1)
			}
			step[id(o)] = i
		}
	}
	for _, o := range m.objs {
		if _, ok := step[id(o)]; !ok {
			t.Errorf("%s: in no step", id(o))
		}
	}
	for ident, want := range map[string]int{
		"CustomResourceDefinition/devices.wasmbed.github.io": 0,
		"ClusterRole/wasmbed-gateway":                        0,
		"Deployment/wasmbed-system/wasmbed-controller":       1,
		"StatefulSet/wasmbed-system/wasmbed-gateway":         2,
		"Service/wasmbed-system/wasmbed-gateway":             2,
	} {
		if got := step[ident]; got != want {
			t.Errorf("%s: in step %d, want %d", ident, got+1, want+1)
		}
	}
}

// warningClient returns an admin client whose API warnings are collected.
func warningClient(t *testing.T) (client.Client, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandlerWithContext = w
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

func apply(ctx context.Context, t *testing.T, c client.Client, o *unstructured.Unstructured) {
	t.Helper()
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner("wasmbed-install"), client.ForceOwnership); err != nil {
		t.Fatalf("%s: %v", id(o), err)
	}
}

// access is one question to the API server's authorizer.
type access struct {
	who                                  string // service account in the system namespace
	verb, group, resource, sub, ns, name string
	allowed                              bool
}

// checkAccess asks the API server's authorizer what each identity may do:
// the gateways what their sessions and HTTP API need and none of the keys
// the controller alone holds.
func checkAccess(t *testing.T) {
	ctx := t.Context()
	const wb, cert, core, coord = "wasmbed.github.io", "certificates.k8s.io", "", "coordination.k8s.io"
	cases := []access{
		// The gateways' device sessions.
		{"wasmbed-gateway", "create", wb, "devices", "", "fleet", "", true},
		{"wasmbed-gateway", "patch", wb, "devices", "status", "fleet", "d1", true},
		{"wasmbed-gateway", "watch", wb, "deviceapplications", "", "", "", true},
		{"wasmbed-gateway", "patch", wb, "deviceapplications", "status", "fleet", "a-d1", true},
		{"wasmbed-gateway", "create", cert, "certificatesigningrequests", "", "", "", true},
		{"wasmbed-gateway", "delete", cert, "certificatesigningrequests", "", "", "x", true},
		{"wasmbed-gateway", "get", core, "configmaps", "", "fleet", "blinky-module-0123", true},
		{"wasmbed-gateway", "get", core, "configmaps", "", sys, wasmbedv1.IssuerConfigMap, true},
		{"wasmbed-gateway", "update", coord, "leases", "", sys, "wasmbed-gateway-0", true},
		{"wasmbed-gateway", "get", core, "secrets", "", sys, wasmbedv1.TicketKeysSecret, true},
		{"wasmbed-gateway", "update", core, "secrets", "", sys, wasmbedv1.TicketKeysSecret, true},
		{"wasmbed-gateway", "create", "events.k8s.io", "events", "", "fleet", "", true},
		{"wasmbed-gateway", "create", "authentication.k8s.io", "tokenreviews", "", "", "", true},
		{"wasmbed-gateway", "create", "authorization.k8s.io", "subjectaccessreviews", "", "", "", true},
		// ... and nothing of the controller's keys.
		{"wasmbed-gateway", "create", core, "secrets", "", sys, "", false},
		{"wasmbed-gateway", "get", core, "secrets", "", sys, wasmbedv1.SigningKeySecret, false},
		{"wasmbed-gateway", "get", core, "secrets", "", sys, wasmbedv1.DeviceCASecret, false},
		{"wasmbed-gateway", "list", core, "secrets", "", sys, "", false},
		{"wasmbed-gateway", "sign", cert, "signers", "", "", wasmbedv1.DeviceSignerName, false},
		{"wasmbed-gateway", "update", core, "configmaps", "", sys, wasmbedv1.IssuerConfigMap, false},
		{"wasmbed-gateway", "update", wb, "deviceapplications", "", "fleet", "a-d1", false},
		// The controller holds the keys and signs.
		{"wasmbed-controller", "get", core, "secrets", "", sys, wasmbedv1.SigningKeySecret, true},
		{"wasmbed-controller", "create", core, "secrets", "", sys, "", true},
		{"wasmbed-controller", "sign", cert, "signers", "", "", wasmbedv1.GatewaySignerName, true},
		{"wasmbed-controller", "update", coord, "leases", "", sys, "wasmbed-controller", true},
		{"wasmbed-controller", "get", core, "secrets", "", "fleet", "anything", false},
	}
	ask := func(a access) (bool, string) {
		user := "system:serviceaccount:" + sys + ":" + a.who
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + sys, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.sub, Namespace: a.ns, Name: a.name,
			},
		}}
		if err := env.Client.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed, sar.Status.Reason
	}
	// The authorizer reads roles from its informers: wait until every
	// allowed case is allowed before trusting a denial.
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range cases {
		if !a.allowed {
			continue
		}
		for {
			ok, _ := ask(a)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s may not %s", a.who, describe(a))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, a := range cases {
		if a.allowed {
			continue
		}
		if ok, reason := ask(a); ok {
			t.Errorf("%s may %s (%s), want denied", a.who, describe(a), reason)
		}
	}
}

func describe(a access) string {
	res := a.resource
	if a.sub != "" {
		res += "/" + a.sub
	}
	if a.group != "" {
		res += "." + a.group
	}
	return fmt.Sprintf("%s %s %s in %q", a.verb, res, cmp.Or(a.name, "(any)"), a.ns)
}
