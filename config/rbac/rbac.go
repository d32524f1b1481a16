// Package rbac embeds the platform's role manifests: the controller's
// (generated from its RBAC markers), the gateway's (gateway/, generated from
// its markers, with the HTTP API's and the session-ticket Secret its roles
// name), and the roles of the HTTP API, so that the binary can install them
// on any cluster.
package rbac

import "embed"

// Files holds the role manifests, one or more YAML documents per file, and
// the kustomization files that list them.
//
//go:embed *.yaml gateway/*.yaml
var Files embed.FS
