package httpapi

import (
	"net/http"

	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// Self is the caller as the gateway sees it, and what it may do.
type Self struct {
	// User is the caller's Kubernetes user name.
	User string `json:"user"`
	// Groups are the caller's groups.
	Groups []string `json:"groups"`
	// Namespace is the namespace Operations were checked in.
	Namespace string `json:"namespace"`
	// DefaultNamespace receives Applications deployed without a namespace.
	DefaultNamespace string `json:"defaultNamespace"`
	// SystemNamespace holds the pairing window.
	SystemNamespace string `json:"systemNamespace"`
	// Operations maps each operation id of the OpenAPI document that needs
	// a permission to whether the caller has it in Namespace, so that a
	// client offers only what the caller may do.
	Operations map[string]bool `json:"operations"`
}

// self answers who the caller is and which operations it may perform in a
// namespace (?namespace=, the default namespace when absent). Each answer is
// a SubjectAccessReview, cached like any other.
func (a *api) self(c *call) error {
	if err := c.noQuery("namespace"); err != nil {
		return err
	}
	q := c.r.URL.Query()
	ns := q.Get("namespace")
	if len(q["namespace"]) > 1 {
		return invalidField("namespace", "given more than once")
	}
	if ns == "" {
		ns = a.opts.DefaultNamespace
	}
	if err := validNamespace(ns); err != nil {
		return invalidField("namespace", "%v", err)
	}
	s := Self{
		User: c.user.GetName(), Groups: c.user.GetGroups(), Namespace: ns,
		DefaultNamespace: a.opts.DefaultNamespace, SystemNamespace: a.opts.SystemNamespace,
		Operations: map[string]bool{},
	}
	if s.Groups == nil {
		s.Groups = []string{}
	}
	for _, rt := range a.routes {
		if rt.access.kind != accessResource {
			continue
		}
		probe := &call{api: a, r: c.r, route: rt, user: c.user, namespace: ns}
		if !pathHasNamespace(rt.path) {
			probe.namespace = ""
		}
		allowed := true
		for _, ck := range rt.access.checks {
			d, _, err := a.opts.Authorizer.Authorize(c.r.Context(), ck.attributes(probe))
			if err != nil || d != authorizer.DecisionAllow {
				allowed = false
				break
			}
		}
		s.Operations[rt.op] = allowed
	}
	return c.writeJSON(http.StatusOK, s)
}
