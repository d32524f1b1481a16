package httpapi

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/wasmbed/wasmbed/config/crd"
)

// The OpenAPI document is generated from the route table, so that it lists
// exactly what is served; the schemas of the Kubernetes objects come from
// the CRDs the API server validates them with.

// schema is a JSON Schema as OpenAPI 3.0 has it, the subset the API uses.
type schema struct {
	Ref                  string             `json:"$ref,omitempty"`
	Type                 string             `json:"type,omitempty"`
	Format               string             `json:"format,omitempty"`
	Description          string             `json:"description,omitempty"`
	Enum                 []string           `json:"enum,omitempty"`
	Properties           map[string]*schema `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	Items                *schema            `json:"items,omitempty"`
	AdditionalProperties *schema            `json:"additionalProperties,omitempty"`
	Minimum              *int64             `json:"minimum,omitempty"`
	Maximum              *int64             `json:"maximum,omitempty"`
	MaxLength            *int64             `json:"maxLength,omitempty"`
	Default              any                `json:"default,omitempty"`
	AllOf                []*schema          `json:"allOf,omitempty"`
}

func ref(name string) *schema { return &schema{Ref: "#/components/schemas/" + name} }

func str(desc string) *schema     { return &schema{Type: "string", Description: desc} }
func integer(desc string) *schema { return &schema{Type: "integer", Description: desc} }
func boolean(desc string) *schema { return &schema{Type: "boolean", Description: desc} }
func object(desc string, props map[string]*schema, required ...string) *schema {
	return &schema{Type: "object", Description: desc, Properties: props, Required: required}
}
func arrayOf(desc string, items *schema) *schema {
	return &schema{Type: "array", Description: desc, Items: items}
}
func counts(desc string) *schema {
	return &schema{Type: "object", Description: desc, AdditionalProperties: &schema{Type: "integer"}}
}
func i64(v int64) *int64 { return &v }

func deployMultipartSchema() *schema {
	return object("A deploy as two parts.", map[string]*schema{
		partApplication: {Ref: "#/components/schemas/DeployRequest", Description: "The DeployRequest without module, as JSON."},
		partModule:      {Type: "string", Format: "binary", Description: "The WebAssembly module, at most 768 KiB."},
	}, partApplication, partModule)
}

// serveOpenAPI sends the document built at start.
func (a *api) serveOpenAPI(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(a.openapi)))
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(a.openapi)
	return nil
}

// openAPIDocument renders the route table as an OpenAPI 3.0 document.
func (a *api) openAPIDocument() ([]byte, error) {
	components, err := componentSchemas()
	if err != nil {
		return nil, err
	}
	paths := map[string]map[string]any{}
	for _, rt := range a.routes {
		item := paths[rt.path]
		if item == nil {
			item = map[string]any{}
			paths[rt.path] = item
		}
		item[strings.ToLower(rt.method)] = a.operation(rt)
	}
	doc := map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "Wasmbed gateway API",
			"version": "v1",
			"description": "The fleet API of a Wasmbed gateway. Every route under /api/v1 takes a Kubernetes bearer token " +
				"(checked with TokenReview) and is allowed by the caller's Kubernetes RBAC permissions (checked with " +
				"SubjectAccessReview); errors are RFC 9457 problem documents.",
		},
		"paths":    paths,
		"security": []map[string][]string{{"bearer": {}}},
		"components": map[string]any{
			"schemas": components,
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer",
					"description": "A Kubernetes bearer token, e.g. from `kubectl create token`."},
			},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

func (a *api) operation(rt *route) map[string]any {
	op := map[string]any{
		"operationId": rt.op,
		"summary":     rt.summary,
		"description": rt.description + accessDescription(rt),
		"tags":        []string{rt.tag},
	}
	if rt.access.kind == accessPublic {
		op["security"] = []any{}
	}
	var params []map[string]any
	for _, p := range []string{"namespace", "name"} {
		if strings.Contains(rt.path, "{"+p+"}") {
			params = append(params, map[string]any{"name": p, "in": "path", "required": true,
				"schema": str(map[string]string{"namespace": "A namespace.", "name": "An object name."}[p])})
		}
	}
	for _, p := range rt.queryParams() {
		params = append(params, map[string]any{"name": p.name, "in": "query", "description": p.description,
			"schema": p.schema, "explode": true})
	}
	if len(params) > 0 {
		op["parameters"] = params
	}
	if rt.body != nil {
		content := map[string]any{}
		for mt, s := range rt.body.content {
			content[mt] = map[string]any{"schema": s}
		}
		op["requestBody"] = map[string]any{"required": rt.body.required, "content": content}
	}
	responses := map[string]any{}
	for _, r := range rt.ok {
		key := strconv.Itoa(r.status)
		resp, _ := responses[key].(map[string]any)
		if resp == nil {
			resp = map[string]any{"description": r.description}
			responses[key] = resp
		}
		if r.media != "" {
			content, _ := resp["content"].(map[string]any)
			if content == nil {
				content = map[string]any{}
				resp["content"] = content
			}
			content[r.media] = map[string]any{"schema": r.schema}
		}
	}
	for _, status := range rt.problemStatuses() {
		responses[strconv.Itoa(status)] = map[string]any{
			"description": problemDescriptions[status],
			"content":     map[string]any{"application/problem+json": map[string]any{"schema": ref("Problem")}},
		}
	}
	op["responses"] = responses
	return op
}

// accessDescription renders a route's permission for its description.
func accessDescription(rt *route) string {
	switch rt.access.kind {
	case accessPublic:
		return ""
	case accessAuthenticated:
		return "\n\nPermission: any authenticated caller."
	}
	var parts []string
	for _, ck := range rt.access.checks {
		parts = append(parts, ck.doc(rt.path))
	}
	return "\n\nPermission (Kubernetes RBAC): " + strings.Join(parts, "; and ") + "."
}

// doc renders a check of the route at path as the RBAC rule it needs, for
// documents.
func (ck check) doc(path string) string {
	group := ck.group
	if group == "" {
		group = "core"
	}
	s := fmt.Sprintf("`%s %s` (%s)", ck.verb, ck.resource, group)
	if ck.name != "" && ck.name != "{name}" {
		s += fmt.Sprintf(" named `%s`", ck.name)
	}
	switch {
	case ck.namespace == nsSystem:
		s += " in the system namespace"
	case ck.namespace == nsDefault:
		s += " in the default namespace"
	case pathHasNamespace(path):
		s += " in the namespace"
	default:
		s += " in all namespaces"
	}
	return s
}

var problemDescriptions = map[int]string{
	400: "invalid-request: a malformed or invalid parameter or body; `errors` lists the fields.",
	401: "unauthenticated: no bearer token, or one Kubernetes did not accept.",
	403: "forbidden: Kubernetes RBAC does not allow the caller this operation.",
	404: "not-found, or metrics-unavailable for device metrics.",
	409: "conflict: the object exists already or changed concurrently.",
	413: "too-large: the body or the module is over its limit.",
	415: "unsupported-media-type: the body's Content-Type is not accepted.",
	422: "rejected: Kubernetes refused the change (validation or admission); `errors` has its causes.",
	429: "too-many-watches: the gateway serves as many watches as it allows.",
	500: "internal: the gateway failed; the cause is in its log.",
	501: "not-implemented: this gateway does not serve watches.",
	503: "not-ready or unavailable: retry after Retry-After seconds.",
}

// queryParams documents the route's query parameters.
func (rt *route) queryParams() []paramDoc {
	ps := slices.Clone(rt.params)
	if f := rt.filters; f != nil {
		for _, name := range f.params() {
			ps = append(ps, filterParamDoc(name, f))
		}
	}
	if rt.watchable {
		ps = append(ps, paramDoc{name: qWatch, description: "true streams the changes of the listed objects as server-sent events instead of a page; " +
			"takes the filters, not limit or continue.", schema: &schema{Type: "boolean"}})
	}
	return ps
}

func filterParamDoc(name string, f *filterSpec) paramDoc {
	switch name {
	case qLimit:
		return paramDoc{name, fmt.Sprintf("Page size, 1 to %d.", MaxLimit),
			&schema{Type: "integer", Minimum: i64(1), Maximum: i64(MaxLimit), Default: DefaultLimit}}
	case qContinue:
		return paramDoc{name, "The continue token of the previous page; the other filters must be the same.", &schema{Type: "string"}}
	case qSelector:
		return paramDoc{name, "A Kubernetes label selector, e.g. `site=plant-1,tier!=test`.", &schema{Type: "string", MaxLength: i64(maxSelectorLength)}}
	case qPhase:
		return paramDoc{name, "Phases to include, repeated or comma-separated; objects without a phase count as Pending.",
			arrayOf("", &schema{Type: "string", Enum: f.phases})}
	case qType:
		return paramDoc{name, "Board types to include, repeated or comma-separated.", arrayOf("", &schema{Type: "string", Enum: f.types})}
	case qGateway:
		return paramDoc{name, "Only devices whose session the named gateway replica holds.", &schema{Type: "string"}}
	case qSearch:
		return paramDoc{name, "A case-insensitive name prefix.", &schema{Type: "string", MaxLength: i64(253)}}
	}
	panic("httpapi: undocumented filter " + name)
}

// problemStatuses lists the failure statuses a route can answer with.
func (rt *route) problemStatuses() []int {
	var s []int
	switch rt.access.kind {
	case accessAuthenticated:
		s = append(s, 401, 500)
	case accessResource:
		s = append(s, 401, 403, 500, 503)
	}
	if rt.access.kind != accessPublic && (strings.Contains(rt.path, "{") || len(rt.queryParams()) > 0 || rt.body != nil) {
		s = append(s, 400)
	}
	if strings.Contains(rt.path, "{name}") {
		s = append(s, 404)
	}
	if rt.body != nil {
		s = append(s, 400, 413, 415)
	}
	if rt.watchable {
		s = append(s, 429, 501)
	}
	s = append(s, rt.problems...)
	slices.Sort(s)
	return slices.Compact(s)
}

// componentSchemas returns the document's schemas: the Kubernetes objects
// from their CRDs, adjusted to what the API returns, and the API's own
// types.
func componentSchemas() (map[string]any, error) {
	out := map[string]any{}
	crds, err := crdSchemas()
	if err != nil {
		return nil, err
	}
	out["Device"] = crds["Device"]
	app := crds["Application"]
	spec := dig(app, "properties", "spec")
	delete(dig(spec, "properties"), "wasmBinary")
	spec["required"] = without(spec["required"], "wasmBinary")
	dig(spec, "properties")["module"] = ref("ModuleInfo")
	spec["required"] = append(spec["required"].([]any), "module")
	out["Application"] = app
	dapp := crds["DeviceApplication"]
	art := dig(dapp, "properties", "spec", "properties", "artifact")
	for _, f := range []string{"manifest", "signature", "keyMaterial"} {
		delete(dig(art, "properties"), f)
		art["required"] = without(art["required"], f)
	}
	out["DeviceApplication"] = dapp
	for k, v := range apiSchemas() {
		out[k] = v
	}
	return out, nil
}

// crdSchemas reads the OpenAPI schema of each CRD's served version.
func crdSchemas() (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	err := fs.WalkDir(crd.Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(crd.Files, path)
		if err != nil {
			return err
		}
		var doc struct {
			Spec struct {
				Names    struct{ Kind string } `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, v := range doc.Spec.Versions {
			if v.Name == "v1" && v.Schema.OpenAPIV3Schema != nil {
				out[doc.Spec.Names.Kind] = v.Schema.OpenAPIV3Schema
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read CRD schemas: %w", err)
	}
	for _, k := range []string{"Device", "Application", "DeviceApplication"} {
		if out[k] == nil {
			return nil, fmt.Errorf("no v1 schema for %s in the CRDs", k)
		}
	}
	return out, nil
}

// dig walks nested objects of a decoded schema; a missing step is created,
// so a renamed field shows up as a test failure rather than a panic.
func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	return m
}

func without(list any, s string) []any {
	l, _ := list.([]any)
	return slices.DeleteFunc(slices.Clone(l), func(v any) bool { return v == s })
}

// apiSchemas are the schemas of the API's own types.
func apiSchemas() map[string]*schema {
	page := func(item string, extra map[string]*schema) *schema {
		props := map[string]*schema{
			"items":    arrayOf("The page's objects, ordered by namespace, then name.", ref(item)),
			"total":    integer("Objects matching the filters, on every page."),
			"continue": str("Pass back as the continue parameter, with the same filters, for the next page; absent on the last page."),
		}
		for k, v := range extra {
			props[k] = v
		}
		return object("A page of a list.", props, "items", "total")
	}
	return map[string]*schema{
		"DeviceList":            page("Device", nil),
		"ApplicationList":       page("Application", nil),
		"DeviceApplicationList": page("DeviceApplication", nil),
		"RolloutPage": page("DeviceApplication", map[string]*schema{
			"phases": counts("The application's DeviceApplications by phase, over every page and regardless of the phase filter."),
		}),
		"ModuleInfo": object("An application's module, described.", map[string]*schema{
			"size":   integer("Length in bytes."),
			"sha256": str("Lower-case hex SHA-256."),
		}, "size", "sha256"),
		"DeployRequest": object("An Application to create.", map[string]*schema{
			"name":          {Type: "string", Description: "The Application's name and the name devices know it by (a DNS label).", MaxLength: i64(63)},
			"version":       {Type: "string", Description: "Version label.", MaxLength: i64(maxVersionLength)},
			"module":        {Type: "string", Format: "byte", Description: "The WebAssembly module in standard base64 (JSON only), at most 768 KiB decoded."},
			"targetDevices": {Type: "array", Description: "Device names in the namespace.", Items: &schema{Type: "string"}},
			"selector":      object("A Kubernetes label selector (matchLabels, matchExpressions) choosing devices.", nil),
			"config": object("Sandbox limits; omitted fields take their defaults.", map[string]*schema{
				"memoryLimit":      {Type: "integer", Description: "Bytes of linear memory, enforced in 64 KiB pages.", Minimum: i64(0), Maximum: i64(maxMemoryLimit), Default: 65536},
				"executionTimeout": {Type: "string", Description: "Bound of one execution, a Go duration from above 0s to 1h.", Default: "30s"},
				"maxStackSize":     {Type: "integer", Description: "Bytes of WebAssembly call stack.", Minimum: i64(0), Maximum: i64(maxStackSize), Default: 4096},
			}),
			"state":  {Type: "string", Enum: []string{"running", "stopped"}, Default: "running", Description: "Desired run state."},
			"labels": {Type: "object", Description: "Labels of the Application.", AdditionalProperties: &schema{Type: "string"}},
		}, "name"),
		"DeviceMetrics": object("The last metrics report a device sent to this gateway replica.", map[string]*schema{
			"receivedAt":      {Type: "string", Format: "date-time", Description: "When the gateway received it."},
			"uptimeSeconds":   integer("Time since the device booted."),
			"freeMemoryBytes": integer("Free heap."),
			"link": object("Link quality.", map[string]*schema{
				"rssi":         integer("Received signal strength, dBm."),
				"lossPermille": integer("Lost packets, in thousandths."),
			}, "rssi", "lossPermille"),
			"applications": arrayOf("Per installed application, counted since it last started.", ref("AppMetrics")),
		}, "receivedAt", "uptimeSeconds", "freeMemoryBytes", "link", "applications"),
		"AppMetrics": object("One application's counters.", map[string]*schema{
			"name":        str("The application's name on the device."),
			"memoryBytes": integer("Current linear memory."),
			"fuel":        integer("CPU budget consumed."),
			"cpuMicros":   integer("CPU time, microseconds."),
			"executions":  integer("Completed invocations."),
			"traps":       integer("Traps."),
		}, "name", "memoryBytes", "fuel", "cpuMicros", "executions", "traps"),
		"PairingStatus": object("The pairing window.", map[string]*schema{
			"open":          boolean("Gateways accept enrollments now."),
			"openUntil":     {Type: "string", Format: "date-time", Description: "When the window closes by itself."},
			"openedAt":      {Type: "string", Format: "date-time", Description: "When it was opened."},
			"openedBy":      str("Who opened it."),
			"tokenRequired": boolean("Enrolling devices must present the pairing token."),
			"token":         str("The generated pairing token: only in the answer of the open that generated it."),
		}, "open", "tokenRequired"),
		"PairingOpenRequest": object("Opening the pairing window.", map[string]*schema{
			"duration":      {Type: "string", Description: "A Go duration up to 24h.", Default: "15m"},
			"generateToken": boolean("Require a pairing token, generated now and returned once."),
		}),
		"Summary": object("The fleet at a glance.", map[string]*schema{
			"namespace":   str("The namespace summarised; absent for all namespaces."),
			"generatedAt": {Type: "string", Format: "date-time", Description: "When it was computed."},
			"devices": object("Devices.", map[string]*schema{
				"total":    integer("Devices."),
				"byPhase":  counts("Devices by phase (no phase counts as Pending); every phase is present."),
				"byType":   counts("Devices by board type; every type is present."),
				"revoked":  integer("Revoked devices."),
				"gateways": counts("Connected devices by the gateway replica holding their session."),
			}, "total", "byPhase", "byType", "revoked", "gateways"),
			"applications": object("Applications.", map[string]*schema{
				"total":   integer("Applications."),
				"byPhase": counts("Applications by phase; every phase is present."),
				"targets": integer("Sum of target counts."),
				"updated": integer("Sum of targets with the current version."),
				"running": integer("Sum of targets running."),
				"failed":  integer("Sum of failed targets."),
			}, "total", "byPhase", "targets", "updated", "running", "failed"),
		}, "generatedAt", "devices", "applications"),
		"Self": object("The caller.", map[string]*schema{
			"user":             str("Kubernetes user name."),
			"groups":           arrayOf("Groups.", &schema{Type: "string"}),
			"namespace":        str("Where operations were checked."),
			"defaultNamespace": str("Where deployApplicationToDefaultNamespace creates applications."),
			"systemNamespace":  str("Where the pairing window lives."),
			"operations":       {Type: "object", Description: "Operation id → whether the caller may call it.", AdditionalProperties: &schema{Type: "boolean"}},
		}, "user", "groups", "namespace", "defaultNamespace", "systemNamespace", "operations"),
		"EventList": object("The newest Events about Wasmbed objects.", map[string]*schema{
			"items":     arrayOf("Newest first.", ref("Event")),
			"total":     integer("Events matching the filters among those read."),
			"truncated": boolean("The route stopped reading at its bound; older Events may be missing."),
		}, "items", "total"),
		"Event": object("A Kubernetes Event about a Device, Application or DeviceApplication.", map[string]*schema{
			"time":   {Type: "string", Format: "date-time", Description: "When it last happened."},
			"type":   {Type: "string", Enum: []string{"Normal", "Warning"}, Description: "Event type."},
			"reason": str("Machine-readable reason."),
			"note":   str("Message."),
			"count":  integer("Times it happened."),
			"regarding": object("The object it is about.", map[string]*schema{
				"kind": str("Kind."), "namespace": str("Namespace."), "name": str("Name."),
			}, "kind", "name"),
			"reportingController": str("The component that reported it."),
		}, "time", "type", "reason", "count", "regarding"),
		"Problem": object("An RFC 9457 problem document (application/problem+json).", map[string]*schema{
			"type":     str("https://wasmbed.github.io/problems/ and the problem type, e.g. invalid-request."),
			"title":    str("The status text."),
			"status":   integer("The status code."),
			"detail":   str("What went wrong, for the caller."),
			"instance": str("The request path."),
			"errors": arrayOf("Invalid fields (400) or Kubernetes' causes (422).", object("", map[string]*schema{
				"field":  str("A body path, query or path parameter."),
				"detail": str("What is wrong with it."),
			}, "field", "detail")),
			"gateway": str("With metrics-unavailable: the gateway replica holding the device's session."),
		}, "type", "title", "status"),
	}
}
