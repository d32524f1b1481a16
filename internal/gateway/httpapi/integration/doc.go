// Package integration tests the gateway's HTTP API against a real embedded
// control plane: bearer tokens issued by the API server's TokenRequest API
// and checked with TokenReview, permissions checked with SubjectAccessReview
// against the shipped ClusterRoles, lists served from a real informer cache.
// It holds tests only; they live apart from package httpapi so that its unit
// tests and fuzz targets do not start a control plane.
package integration
