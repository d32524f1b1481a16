// Package crd embeds the generated CustomResourceDefinitions of the
// wasmbed.github.io API so that the binary can install them on any cluster.
package crd

import "embed"

// Files holds the generated CRD manifests, one YAML document per file.
//
//go:embed wasmbed.github.io_*.yaml
var Files embed.FS
