// Package rbac embeds the platform's role manifests: the controller's
// (generated from its RBAC markers), the gateway's, and the roles of the
// HTTP API, so that the binary can install them on any cluster.
package rbac

import "embed"

// Files holds the role manifests, one or more YAML documents per file.
//
//go:embed *.yaml
var Files embed.FS
