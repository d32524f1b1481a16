package httpapi

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the generated parts of the docs")

const (
	securityDoc = "../../../docs/security.md"
	httpAPIDoc  = "../../../docs/http-api.md"
	rolesFile   = "../../../config/rbac/http-api-roles.yaml"
	tableBegin  = "<!-- BEGIN http-api-roles: generated from the route table and config/rbac by `go test ./internal/gateway/httpapi -run TestSecurityDoc -update` -->"
	tableEnd    = "<!-- END http-api-roles -->"
)

// loadRoles reads the shipped ClusterRoles.
func loadRoles(t *testing.T) map[string]rbacv1.ClusterRole {
	t.Helper()
	b, err := os.ReadFile(rolesFile)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]rbacv1.ClusterRole{}
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var r rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
			t.Fatalf("%s: %v", rolesFile, err)
		}
		if r.Name != "" {
			roles[r.Name] = r
		}
	}
	return roles
}

// allows evaluates RBAC rules for one action, as Kubernetes' RBAC
// authorizer does for the fields the API's checks use.
func allows(rules []rbacv1.PolicyRule, verb, group, resource, name string) bool {
	has := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, r := range rules {
		if has(r.Verbs, verb) && has(r.APIGroups, group) && has(r.Resources, resource) &&
			(len(r.ResourceNames) == 0 || name != "" && slices.Contains(r.ResourceNames, name)) {
			return true
		}
	}
	return false
}

// roleAllows reports whether a ClusterRole bound cluster-wide allows a
// route (both verbs of a watchable list).
func roleAllows(role rbacv1.ClusterRole, rt *route) bool {
	if rt.access.kind != accessResource {
		return true
	}
	for _, ck := range rt.access.checks {
		verbs := []string{ck.verb}
		if rt.watchable && ck.verb == "list" {
			verbs = append(verbs, "watch")
		}
		name := ck.name
		if name == "{name}" {
			name = "some-object"
		}
		for _, v := range verbs {
			if !allows(role.Rules, v, ck.group, ck.resource, name) {
				return false
			}
		}
	}
	return true
}

// rolesTable renders the route-to-permission table of docs/security.md.
func rolesTable(t *testing.T) string {
	e := newTestEnv(t)
	roles := loadRoles(t)
	names := []string{"wasmbed-viewer", "wasmbed-operator", "wasmbed-admin"}
	var b strings.Builder
	b.WriteString("| Route | Operation | Kubernetes permission | viewer | operator | admin |\n|---|---|---|:-:|:-:|:-:|\n")
	for _, rt := range e.api.routes {
		var perm string
		switch rt.access.kind {
		case accessPublic:
			perm = "none: unauthenticated"
		case accessAuthenticated:
			perm = "any authenticated caller"
		default:
			var parts []string
			for _, ck := range rt.access.checks {
				s := ck.doc(rt.path)
				if rt.watchable && ck.verb == "list" {
					s += ", `watch` with `?watch=true`"
				}
				parts = append(parts, s)
			}
			perm = strings.Join(parts, "; and ")
		}
		fmt.Fprintf(&b, "| `%s %s` | %s | %s |", rt.method, rt.path, rt.op, perm)
		for _, n := range names {
			role, ok := roles[n]
			if !ok {
				t.Fatalf("%s has no ClusterRole %s", rolesFile, n)
			}
			mark := "–"
			if roleAllows(role, rt) {
				mark = "✓"
			}
			b.WriteString(" " + mark + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestSecurityDoc checks that docs/security.md holds the route-to-permission
// table as the routes and the shipped roles make it.
func TestSecurityDoc(t *testing.T) {
	doc, err := os.ReadFile(securityDoc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, tableBegin), strings.Index(s, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q and %q", securityDoc, tableBegin, tableEnd)
	}
	want := tableBegin + "\n\n" + rolesTable(t) + "\n" + tableEnd
	if got := s[i : j+len(tableEnd)]; got != want {
		if *update {
			if err := os.WriteFile(securityDoc, []byte(s[:i]+want+s[j+len(tableEnd):]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("the table in %s is out of date; run with -update and read the diff:\n%s", filepath.Base(securityDoc), want)
	}
}

// TestRoleHierarchy checks the shipped roles against the intended model:
// the viewer only reads; the operator may do what the viewer may and change
// applications; the admin may do everything.
func TestRoleHierarchy(t *testing.T) {
	e := newTestEnv(t)
	roles := loadRoles(t)
	for _, rt := range e.api.routes {
		viewer := roleAllows(roles["wasmbed-viewer"], rt)
		operator := roleAllows(roles["wasmbed-operator"], rt)
		admin := roleAllows(roles["wasmbed-admin"], rt)
		reads := rt.method == "GET"
		apps := strings.Contains(rt.path, "/applications") && !strings.Contains(rt.path, "/devices")
		if viewer != reads || operator != (reads || apps) || !admin {
			t.Errorf("%s %s: viewer %v operator %v admin %v", rt.method, rt.path, viewer, operator, admin)
		}
	}
}

// TestHTTPAPIDoc checks that docs/http-api.md describes every route (a
// heading with its method and path) and no route that does not exist.
func TestHTTPAPIDoc(t *testing.T) {
	e := newTestEnv(t)
	doc, err := os.ReadFile(httpAPIDoc)
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for line := range strings.SplitSeq(string(doc), "\n") {
		if rest, ok := strings.CutPrefix(line, "### `"); ok {
			documented = append(documented, strings.TrimSuffix(rest, "`"))
		}
	}
	var routes []string
	for _, rt := range e.api.routes {
		routes = append(routes, rt.method+" "+rt.path)
	}
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("%s has no section \"### `%s`\"", httpAPIDoc, r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("%s documents %s, which is not a route", httpAPIDoc, d)
		}
	}
}
