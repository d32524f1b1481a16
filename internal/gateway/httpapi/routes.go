package httpapi

import (
	"net/http"
	"strings"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// route is one operation of the API: where it is served, who may call it,
// what it takes and returns (for the OpenAPI document) and its handler.
type route struct {
	method string
	// path is a net/http pattern path: {namespace} and {name} are the only
	// wildcards.
	path string
	// op is the OpenAPI operation id and the metrics label.
	op          string
	tag         string
	summary     string
	description string
	access      access
	// noReady serves the route while Fleet.Ready fails.
	noReady bool
	// watchable routes stream changes with ?watch=true.
	watchable bool
	// filters, on list routes, are the query's filters.
	filters *filterSpec
	// params are other query parameters.
	params []paramDoc
	// body documents the request body; maxBody bounds it (default 16 KiB).
	body    *bodyDoc
	maxBody int64
	// ok documents the success responses; problems the statuses of the
	// failures particular to the route (the common ones are added).
	ok       []responseDoc
	problems []int
	handle   func(*call) error
}

// paramDoc documents a query parameter.
type paramDoc struct {
	name, description string
	schema            *schema
}

// bodyDoc documents a request body: a schema per media type.
type bodyDoc struct {
	required bool
	content  map[string]*schema
}

// responseDoc documents a success response.
type responseDoc struct {
	status      int
	description string
	media       string
	schema      *schema
}

func jsonOK(status int, description, name string) []responseDoc {
	return []responseDoc{{status: status, description: description, media: "application/json", schema: ref(name)}}
}

func pathHasNamespace(p string) bool { return strings.Contains(p, "{namespace}") }

// routeTable lists every route the API serves.
func (a *api) routeTable() []*route {
	const (
		dev  = "devices"
		app  = "applications"
		dapp = "deviceapplications"
	)
	core := func(verb, resource, namespace, name string) check {
		return check{verb: verb, resource: resource, namespace: namespace, name: name}
	}
	nsDevices := "/api/v1/namespaces/{namespace}/devices"
	nsApps := "/api/v1/namespaces/{namespace}/applications"
	deployBody := &bodyDoc{required: true, content: map[string]*schema{
		"application/json":    ref("DeployRequest"),
		"multipart/form-data": deployMultipartSchema(),
	}}
	pairingBody := &bodyDoc{content: map[string]*schema{"application/json": ref("PairingOpenRequest")}}
	noBody := &bodyDoc{content: map[string]*schema{"application/json": {Type: "object", Description: "Empty, or an empty object."}}}
	return []*route{
		{
			method: http.MethodGet, path: "/healthz", op: "healthz", tag: "health",
			summary:     "Liveness",
			description: "200 `ok` while the process serves HTTP. Unauthenticated; reveals nothing.",
			access:      access{kind: accessPublic}, noReady: true,
			ok:     []responseDoc{{status: 200, description: "The process is alive.", media: "text/plain", schema: &schema{Type: "string"}}},
			handle: a.healthz,
		},
		{
			method: http.MethodGet, path: "/readyz", op: "readyz", tag: "health",
			summary:     "Readiness",
			description: "200 `ok` when the gateway's caches are synced and its device listener is up, else 503. Unauthenticated; the cause is logged, not shown.",
			access:      access{kind: accessPublic}, noReady: true,
			ok:       []responseDoc{{status: 200, description: "Ready.", media: "text/plain", schema: &schema{Type: "string"}}},
			problems: []int{503},
			handle:   a.readyz,
		},
		{
			method: http.MethodGet, path: "/metrics", op: "metrics", tag: "health",
			summary:     "Prometheus metrics",
			description: "The gateway's metrics in the Prometheus text format. Unauthenticated: serve the listener where only the scraper reaches it.",
			access:      access{kind: accessPublic}, noReady: true,
			ok:     []responseDoc{{status: 200, description: "Metrics.", media: "text/plain", schema: &schema{Type: "string"}}},
			handle: a.serveMetrics,
		},
		{
			method: http.MethodGet, path: "/api/v1/openapi.json", op: "getOpenAPI", tag: "meta",
			summary:     "This document",
			description: "The OpenAPI 3 document of the API. Any authenticated caller may read it.",
			access:      access{kind: accessAuthenticated}, noReady: true,
			ok:     []responseDoc{{status: 200, description: "The OpenAPI document.", media: "application/json", schema: &schema{Type: "object"}}},
			handle: a.serveOpenAPI,
		},
		{
			method: http.MethodGet, path: "/api/v1/self", op: "getSelf", tag: "meta",
			summary: "The caller and its permissions",
			description: "Who the gateway takes the caller for, and, for each operation that needs a permission, whether the caller has it " +
				"in the namespace given (the default namespace when absent). Any authenticated caller may ask.",
			access: access{kind: accessAuthenticated}, noReady: true,
			params: []paramDoc{{name: "namespace", description: "Namespace to check the operations in.", schema: &schema{Type: "string"}}},
			ok:     jsonOK(200, "The caller.", "Self"),
			handle: a.self,
		},
		{
			method: http.MethodGet, path: "/api/v1/summary", op: "getFleetSummary", tag: "fleet",
			summary:     "Fleet summary, all namespaces",
			description: "Devices by phase, type and gateway, applications by phase with their rollout counts, computed from the gateway's cache.",
			access:      resourceAccess(wasmbed("list", dev, nsPath, ""), wasmbed("list", app, nsPath, "")),
			ok:          jsonOK(200, "The summary.", "Summary"),
			handle:      a.summary,
		},
		{
			method: http.MethodGet, path: "/api/v1/namespaces/{namespace}/summary", op: "getNamespaceSummary", tag: "fleet",
			summary:     "Fleet summary of a namespace",
			description: "As getFleetSummary, for one namespace.",
			access:      resourceAccess(wasmbed("list", dev, nsPath, ""), wasmbed("list", app, nsPath, "")),
			ok:          jsonOK(200, "The summary.", "Summary"),
			handle:      a.summary,
		},
		{
			method: http.MethodGet, path: "/api/v1/devices", op: "listAllDevices", tag: "devices",
			summary:     "List devices in all namespaces",
			description: "A page of devices with their status, ordered by namespace and name, filtered; with `watch=true`, a stream of their changes.",
			access:      resourceAccess(wasmbed("list", dev, nsPath, "")), watchable: true, filters: &deviceFilters,
			ok: listResponses("DeviceList"), handle: a.listDevices,
		},
		{
			method: http.MethodGet, path: nsDevices, op: "listDevices", tag: "devices",
			summary:     "List devices",
			description: "A page of the namespace's devices with their status, ordered by name, filtered; with `watch=true`, a stream of their changes.",
			access:      resourceAccess(wasmbed("list", dev, nsPath, "")), watchable: true, filters: &deviceFilters,
			ok: listResponses("DeviceList"), handle: a.listDevices,
		},
		{
			method: http.MethodGet, path: nsDevices + "/{name}", op: "getDevice", tag: "devices",
			summary:     "Get a device",
			description: "The Device with its status.",
			access:      resourceAccess(wasmbed("get", dev, nsPath, "{name}")),
			ok:          jsonOK(200, "The device.", "Device"),
			handle:      a.showDevice,
		},
		{
			method: http.MethodPost, path: nsDevices + "/{name}/revoke", op: "revokeDevice", tag: "devices",
			summary: "Revoke a device",
			description: "Sets `spec.revoked`: the gateway holding the device's session closes it within a second, and the device's " +
				"certificates are refused from then on. Idempotent.",
			access: resourceAccess(wasmbed("update", dev, nsPath, "{name}")),
			body:   noBody, ok: jsonOK(200, "The revoked device.", "Device"), problems: []int{409, 422},
			handle: a.revokeDevice,
		},
		{
			method: http.MethodGet, path: nsDevices + "/{name}/metrics", op: "getDeviceMetrics", tag: "devices",
			summary: "A device's last metrics report",
			description: "The last metrics report the device sent to this gateway replica. When another replica holds the session, " +
				"404 `metrics-unavailable` names it in `gateway`.",
			access: resourceAccess(wasmbed("get", dev, nsPath, "{name}")),
			ok:     jsonOK(200, "The report.", "DeviceMetrics"),
			handle: a.deviceMetrics,
		},
		{
			method: http.MethodGet, path: nsDevices + "/{name}/applications", op: "listDeviceApplications", tag: "devices",
			summary:     "A device's applications",
			description: "A page of the device's DeviceApplications: each application on the device with its phase; `search` matches application names.",
			access:      resourceAccess(wasmbed("get", dev, nsPath, "{name}"), wasmbed("list", dapp, nsPath, "")),
			watchable:   true, filters: &deviceApplicationFilters,
			ok: listResponses("DeviceApplicationList"), handle: a.listDeviceApplications,
		},
		{
			method: http.MethodGet, path: "/api/v1/applications", op: "listAllApplications", tag: "applications",
			summary:     "List applications in all namespaces",
			description: "A page of applications with their rollout status (module bytes omitted); with `watch=true`, a stream of their changes.",
			access:      resourceAccess(wasmbed("list", app, nsPath, "")), watchable: true, filters: &applicationFilters,
			ok: listResponses("ApplicationList"), handle: a.listApplications,
		},
		{
			method: http.MethodPost, path: "/api/v1/applications", op: "deployApplicationToDefaultNamespace", tag: "applications",
			summary:     "Deploy an application to the default namespace",
			description: "As deployApplication, in the gateway's default namespace (see getSelf).",
			access:      resourceAccess(wasmbed("create", app, nsDefault, "")),
			body:        deployBody, maxBody: maxDeployBody,
			ok: jsonOK(201, "The created application.", "Application"), problems: []int{409, 422},
			handle: a.deploy,
		},
		{
			method: http.MethodGet, path: nsApps, op: "listApplications", tag: "applications",
			summary:     "List applications",
			description: "A page of the namespace's applications with their rollout status (module bytes omitted); with `watch=true`, a stream of their changes.",
			access:      resourceAccess(wasmbed("list", app, nsPath, "")), watchable: true, filters: &applicationFilters,
			ok: listResponses("ApplicationList"), handle: a.listApplications,
		},
		{
			method: http.MethodPost, path: nsApps, op: "deployApplication", tag: "applications",
			summary: "Deploy an application",
			description: "Creates an Application from a WebAssembly module (at most 768 KiB) with its targets (names and/or a label selector), " +
				"sandbox limits and run state: as JSON with the module in base64, or as multipart/form-data with the parts `application` " +
				"(the same JSON without `module`) and `module` (the bytes).",
			access: resourceAccess(wasmbed("create", app, nsPath, "")),
			body:   deployBody, maxBody: maxDeployBody,
			ok: jsonOK(201, "The created application.", "Application"), problems: []int{409, 422},
			handle: a.deploy,
		},
		{
			method: http.MethodGet, path: nsApps + "/{name}", op: "getApplication", tag: "applications",
			summary:     "Get an application",
			description: "The Application with its rollout status; the module is described (size, SHA-256), not included.",
			access:      resourceAccess(wasmbed("get", app, nsPath, "{name}")),
			ok:          jsonOK(200, "The application.", "Application"),
			handle:      a.showApplication,
		},
		{
			method: http.MethodDelete, path: nsApps + "/{name}", op: "deleteApplication", tag: "applications",
			summary:     "Delete an application",
			description: "Deletes the Application; Kubernetes deletes its DeviceApplications and each device removes the application.",
			access:      resourceAccess(wasmbed("delete", app, nsPath, "{name}")),
			body:        noBody,
			ok:          []responseDoc{{status: 204, description: "Deleted."}}, problems: []int{409},
			handle: a.deleteApplication,
		},
		{
			method: http.MethodPost, path: nsApps + "/{name}/start", op: "startApplication", tag: "applications",
			summary:     "Start an application",
			description: "Sets `spec.state: running`: every target runs it. Idempotent.",
			access:      resourceAccess(wasmbed("update", app, nsPath, "{name}")),
			body:        noBody, ok: jsonOK(200, "The application.", "Application"), problems: []int{409, 422},
			handle: a.setRunState(wasmbedv1.RunStateRunning),
		},
		{
			method: http.MethodPost, path: nsApps + "/{name}/stop", op: "stopApplication", tag: "applications",
			summary:     "Stop an application",
			description: "Sets `spec.state: stopped`: every target keeps it installed and stopped. Idempotent.",
			access:      resourceAccess(wasmbed("update", app, nsPath, "{name}")),
			body:        noBody, ok: jsonOK(200, "The application.", "Application"), problems: []int{409, 422},
			handle: a.setRunState(wasmbedv1.RunStateStopped),
		},
		{
			method: http.MethodGet, path: nsApps + "/{name}/rollout", op: "getRollout", tag: "applications",
			summary: "An application's rollout",
			description: "A page of the application's DeviceApplications (one per target device, with phase, reason and version), " +
				"with every phase counted; `search` matches device names.",
			access:    resourceAccess(wasmbed("get", app, nsPath, "{name}"), wasmbed("list", dapp, nsPath, "")),
			watchable: true, filters: &deviceApplicationFilters,
			ok: listResponses("RolloutPage"), handle: a.rollout,
		},
		{
			method: http.MethodPost, path: nsApps + "/{name}/rollout/resume", op: "resumeRollout", tag: "applications",
			summary: "Resume a paused rollout",
			description: "Resumes a rollout the failure threshold paused: sets the annotation `wasmbed.github.io/resume` to a time after " +
				"the pause, which the controller honours once; the threshold then applies to the failures after the resume. " +
				"409 when the rollout is not paused.",
			access: resourceAccess(wasmbed("update", app, nsPath, "{name}")),
			body:   noBody, ok: jsonOK(200, "The application.", "Application"), problems: []int{409, 422},
			handle: a.resumeRollout,
		},
		{
			method: http.MethodPost, path: nsApps + "/{name}/rollout/undo", op: "undoRollout", tag: "applications",
			summary: "Roll back to the previous version",
			description: "Rewrites the application's module, version and limits from `status.rollout.previous` and its payload, " +
				"as `kubectl rollout undo` does for a Deployment; the controller then rolls that version out. " +
				"409 when there is no previous version.",
			access: resourceAccess(wasmbed("update", app, nsPath, "{name}")),
			body:   noBody, ok: jsonOK(200, "The application.", "Application"), problems: []int{409, 422},
			handle: a.undoRollout,
		},
		{
			method: http.MethodGet, path: "/api/v1/events", op: "listAllEvents", tag: "fleet",
			summary: "Recent Events, all namespaces",
			description: "The newest Kubernetes Events about Devices, Applications and DeviceApplications, newest first; " +
				"read from Kubernetes (not the cache), at most 5,000 Events scanned.",
			access: resourceAccess(eventsCheck),
			params: eventParams, ok: jsonOK(200, "The Events.", "EventList"),
			handle: a.events,
		},
		{
			method: http.MethodGet, path: "/api/v1/namespaces/{namespace}/events", op: "listEvents", tag: "fleet",
			summary:     "Recent Events of a namespace",
			description: "As listAllEvents, for one namespace.",
			access:      resourceAccess(eventsCheck),
			params:      eventParams, ok: jsonOK(200, "The Events.", "EventList"),
			handle: a.events,
		},
		{
			method: http.MethodGet, path: "/api/v1/pairing", op: "getPairing", tag: "pairing",
			summary:     "The pairing window",
			description: "Whether gateways accept enrollments of new devices now, until when, and whether a pairing token is required.",
			access:      resourceAccess(core("get", "configmaps", nsSystem, wasmbedv1.PairingConfigMap)),
			ok:          jsonOK(200, "The window.", "PairingStatus"),
			handle:      a.showPairing,
		},
		{
			method: http.MethodPost, path: "/api/v1/pairing/open", op: "openPairing", tag: "pairing",
			summary: "Open the pairing window",
			description: "Opens the window for a duration (15m by default, at most 24h), replacing any open window; with `generateToken`, " +
				"enrolling devices must present the token returned once in the answer.",
			access: resourceAccess(core("update", "configmaps", nsSystem, wasmbedv1.PairingConfigMap)),
			body:   pairingBody, ok: jsonOK(200, "The open window.", "PairingStatus"), problems: []int{409, 422},
			handle: a.openPairing,
		},
		{
			method: http.MethodPost, path: "/api/v1/pairing/close", op: "closePairing", tag: "pairing",
			summary:     "Close the pairing window",
			description: "Closes the window now. Idempotent.",
			access:      resourceAccess(core("update", "configmaps", nsSystem, wasmbedv1.PairingConfigMap)),
			body:        noBody, ok: jsonOK(200, "The closed window.", "PairingStatus"), problems: []int{409, 422},
			handle: a.closePairing,
		},
	}
}

// eventsCheck is the permission of the events routes: list events
// (events.k8s.io) in the path's namespace.
var eventsCheck = check{verb: "list", group: "events.k8s.io", resource: "events", namespace: nsPath}

// eventParams documents the events routes' query.
var eventParams = []paramDoc{
	{name: "limit", description: "Events returned, 1–100 (default 20).", schema: &schema{Type: "integer", Minimum: i64(1), Maximum: i64(maxEventsLimit)}},
	{name: "kind", description: "Only Events about objects of this kind.", schema: &schema{Type: "string", Enum: eventKinds}},
	{name: "name", description: "Only Events about objects of this name.", schema: &schema{Type: "string"}},
	{name: "type", description: "Only Events of this type.", schema: &schema{Type: "string", Enum: []string{"Normal", "Warning"}}},
}

// listResponses documents a list route: a page as JSON, or changes as
// server-sent events.
func listResponses(name string) []responseDoc {
	return []responseDoc{
		{status: 200, description: "A page; with watch=true, a stream of server-sent events.", media: "application/json", schema: ref(name)},
		{status: 200, media: "text/event-stream", schema: &schema{Type: "string", Description: "With watch=true: " +
			"events READY (once), then ADDED, MODIFIED and DELETED with the object as data, ERROR when the watch fell behind."}},
	}
}
