// Package httpapi is the gateway's HTTP API: the fleet's REST API under
// /api/v1 with its OpenAPI document, and /healthz, /readyz and /metrics. The
// gateway serves it on a listener of its own; the route-by-route reference
// is docs/http-api.md.
//
// # Reads, writes and what only the gateway knows
//
// Every list and get is answered from the gateway's informer cache
// (Options.Reader): a request costs no API-server call, and a list of 10,000
// devices is filtered, sorted and paged in memory. Writes (deploy, start,
// stop, delete, revoke, the pairing window) go to Kubernetes with the
// gateway's identity (Options.Writer) once the caller's permission is
// checked. What only the gateway knows — a device's last metrics report,
// readiness — comes through the small Fleet interface, so the package knows
// nothing of device sessions.
//
// # Authentication and authorisation
//
// Both are delegated to Kubernetes so that cluster RBAC is the single source
// of the API's roles: the bearer token is checked with a TokenReview and
// each route maps to Kubernetes resource attributes checked with a
// SubjectAccessReview (list devices → list devices.wasmbed.github.io in the
// namespace; deploy → create applications; revoke → update devices; the
// pairing window → update the ConfigMap wasmbed-pairing in the system
// namespace). NewDelegatingAuth builds both from k8s.io/apiserver's
// delegating factories, which cache the answers. The ClusterRoles
// wasmbed-viewer, wasmbed-operator and wasmbed-admin in
// config/rbac/http-api-roles.yaml grant the three roles; docs/security.md
// has the route-to-permission table. No token is a 401, a refused permission
// a 403.
//
// # Errors
//
// Every failure is an RFC 9457 problem document (application/problem+json)
// whose type is one of the ProblemType constants. What the caller is told is
// kept apart from the internal cause, which is logged with the request and
// counted in wasmbed_http_api_problems_total.
//
// # Lists and watches
//
// Lists are paged with limit and an opaque continue token bound to the
// query's filters, and filtered by label selector, phase, board type,
// gateway and name prefix. With ?watch=true (and Options.Informers) a list
// route streams the changes of the objects it would list as server-sent
// events instead.
//
// # Usage
//
//	authn, authz, err := httpapi.NewDelegatingAuth(httpapi.DelegatingAuthOptions{Client: clientset})
//	h, err := httpapi.New(httpapi.Options{
//		Reader: mgr.GetCache(), Writer: mgr.GetClient(), Informers: mgr.GetCache(),
//		Fleet: gw, Authenticator: authn, Authorizer: authz,
//		Logger: logger, Registerer: registry,
//	})
//	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
//		BaseContext: func(net.Listener) context.Context { return gatewayCtx }}
//	srv.ServeTLS(listener, certFile, keyFile)
//
// Serve it over TLS: bearer tokens are credentials. Do not set a
// WriteTimeout shorter than the watches you want to keep open, and tie
// BaseContext to the gateway's life: a watch ends when its request's
// context does, and http.Server.Shutdown waits for the watches otherwise.
package httpapi
