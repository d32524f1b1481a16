package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/client-go/kubernetes"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// accessKind says who may call a route.
type accessKind int

const (
	// accessResource: authenticated callers whom Kubernetes allows every
	// check of the route.
	accessResource accessKind = iota
	// accessAuthenticated: any authenticated caller (the OpenAPI document,
	// the caller's own identity), as Kubernetes serves discovery.
	accessAuthenticated
	// accessPublic: anyone (health and metrics); these reveal no fleet data.
	accessPublic
)

// Where a check's namespace comes from.
const (
	nsPath    = "{namespace}" // the path's namespace; all namespaces on routes without one
	nsSystem  = "$system"     // Options.SystemNamespace
	nsDefault = "$default"    // Options.DefaultNamespace
)

// access is the Kubernetes permission a route maps to.
type access struct {
	kind   accessKind
	checks []check
}

// check is one Kubernetes action the caller must be allowed, in group
// wasmbed.github.io unless group says otherwise ("" is written "core").
type check struct {
	verb     string
	group    string
	resource string
	// namespace is nsPath, nsSystem or nsDefault.
	namespace string
	// name is "{name}" for the path's name, a fixed object name, or empty.
	name string
}

func wasmbed(verb, resource, namespace, name string) check {
	return check{verb: verb, group: wasmbedv1.GroupVersion.Group, resource: resource, namespace: namespace, name: name}
}

func resourceAccess(checks ...check) access { return access{kind: accessResource, checks: checks} }

// attributes resolves a check for a call.
func (ck check) attributes(c *call) authorizer.AttributesRecord {
	verb := ck.verb
	if c.watch && verb == "list" {
		verb = "watch"
	}
	var ns string
	switch ck.namespace {
	case nsPath:
		ns = c.namespace
	case nsSystem:
		ns = c.api.opts.SystemNamespace
	case nsDefault:
		ns = c.api.opts.DefaultNamespace
	}
	name := ck.name
	if name == "{name}" {
		name = c.name
	}
	version := "v1"
	return authorizer.AttributesRecord{
		User: c.user, Verb: verb, Namespace: ns, APIGroup: ck.group, APIVersion: version,
		Resource: ck.resource, Name: name, ResourceRequest: true, Path: c.r.URL.Path,
	}
}

// authenticate identifies the caller. Every failure is a 401: Kubernetes
// reports a rejected token as an error too, and the cause is only logged.
func (a *api) authenticate(r *http.Request) (user.Info, error) {
	resp, ok, err := a.opts.Authenticator.AuthenticateRequest(r)
	switch {
	case r.Header.Get("Authorization") == "" && (err != nil || !ok):
		return nil, newProblem(http.StatusUnauthorized, ProblemUnauthenticated, "a bearer token is required").withCause(err)
	case err != nil:
		return nil, newProblem(http.StatusUnauthorized, ProblemUnauthenticated, "the bearer token was not accepted").withCause(err)
	case !ok || resp == nil || resp.User == nil:
		return nil, newProblem(http.StatusUnauthorized, ProblemUnauthenticated, "the bearer token was not accepted")
	}
	return resp.User, nil
}

// authorize asks Kubernetes whether the caller may do what the route maps
// to.
func (a *api) authorize(c *call) error {
	for _, ck := range c.route.access.checks {
		attrs := ck.attributes(c)
		decision, reason, err := a.opts.Authorizer.Authorize(c.r.Context(), attrs)
		if decision == authorizer.DecisionAllow {
			continue
		}
		if err != nil {
			return unavailable("Kubernetes could not check the permission; retry later",
				fmt.Errorf("authorize %s: %w", describe(attrs), err))
		}
		return newProblem(http.StatusForbidden, ProblemForbidden,
			fmt.Sprintf("%s may not %s", userName(c.user), describe(attrs))).withCause(errors.New(reason))
	}
	return nil
}

// describe renders attributes as Kubernetes says them:
// `list devices.wasmbed.github.io in namespace "fleet"`.
func describe(a authorizer.AttributesRecord) string {
	var b strings.Builder
	b.WriteString(a.Verb + " " + a.Resource)
	if a.APIGroup != "" {
		b.WriteString("." + a.APIGroup)
	}
	if a.Name != "" {
		fmt.Fprintf(&b, " %q", a.Name)
	}
	if a.Namespace != "" {
		fmt.Fprintf(&b, " in namespace %q", a.Namespace)
	} else {
		b.WriteString(" in all namespaces")
	}
	return b.String()
}

// DelegatingAuthOptions configures NewDelegatingAuth. The zero value of each
// duration picks its default.
type DelegatingAuthOptions struct {
	// Client reaches the Kubernetes API server that reviews tokens and
	// access. The gateway's identity needs create on
	// tokenreviews.authentication.k8s.io and
	// subjectaccessreviews.authorization.k8s.io.
	Client kubernetes.Interface
	// Audiences, when set, are the audiences a token must be issued for
	// (e.g. "wasmbed"); empty accepts the API server's own audiences, as
	// kubectl-issued tokens have.
	Audiences []string
	// TokenCacheTTL is how long a token review is cached. Default 10s.
	TokenCacheTTL time.Duration
	// AllowCacheTTL is how long an allowed access review is cached.
	// Default 10s.
	AllowCacheTTL time.Duration
	// DenyCacheTTL is how long a denied access review is cached. Default 2s.
	DenyCacheTTL time.Duration
	// ReviewTimeout bounds each review request. Default 10s.
	ReviewTimeout time.Duration
}

// NewDelegatingAuth returns an authenticator that checks bearer tokens with
// TokenReview and an authorizer that checks access with
// SubjectAccessReview, both from k8s.io/apiserver's delegating factories,
// which cache the answers, so that cluster RBAC is the single source of the
// API's roles.
func NewDelegatingAuth(opts DelegatingAuthOptions) (authenticator.Request, authorizer.Authorizer, error) {
	if opts.Client == nil {
		return nil, nil, fmt.Errorf("%w: DelegatingAuthOptions.Client required", ErrInvalidOptions)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.TokenCacheTTL, 10*time.Second)
	def(&opts.AllowCacheTTL, 10*time.Second)
	def(&opts.DenyCacheTTL, 2*time.Second)
	def(&opts.ReviewTimeout, 10*time.Second)
	// The retry parameters of k8s.io/apiserver's own delegating options.
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}

	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                &apiserver.AnonymousAuthConfig{Enabled: false},
		TokenAccessReviewClient:  opts.Client.AuthenticationV1(),
		TokenAccessReviewTimeout: opts.ReviewTimeout,
		WebhookRetryBackoff:      &backoff,
		CacheTTL:                 opts.TokenCacheTTL,
		APIAudiences:             authenticator.Audiences(opts.Audiences),
	}.New()
	if err != nil {
		return nil, nil, fmt.Errorf("httpapi: token review authenticator: %w", err)
	}
	if auds := authenticator.Audiences(opts.Audiences); len(auds) > 0 {
		// The token review asks for the audiences found in the request's
		// context, as kube-apiserver's authentication filter sets them.
		inner := authn
		authn = authenticator.RequestFunc(func(r *http.Request) (*authenticator.Response, bool, error) {
			return inner.AuthenticateRequest(r.WithContext(authenticator.WithAudiences(r.Context(), auds)))
		})
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: opts.Client.AuthorizationV1(),
		AllowCacheTTL:             opts.AllowCacheTTL,
		DenyCacheTTL:              opts.DenyCacheTTL,
		WebhookRetryBackoff:       &backoff,
	}.New()
	if err != nil {
		return nil, nil, fmt.Errorf("httpapi: subject access review authorizer: %w", err)
	}
	return authn, authz, nil
}
