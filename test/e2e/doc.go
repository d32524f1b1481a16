// Package e2e holds the whole-system tests of Wasmbed: the platform as
// `wasmbed up` runs it (embedded etcd and kube-apiserver, the controller,
// gateways, simulated devices of both board types), driven the way a user
// drives it, and the same platform under faults — a gateway killed with
// SIGKILL, the controller killed, the API server restarted, devices losing
// power in the middle of an install, a flapping network between devices and
// gateways. Every fault test ends with the fleet converged: each device runs
// exactly the desired version, the Kubernetes status says so, and no version
// was installed twice.
//
// The package has only tests; docs/testing.md says how to run them and how
// to run the longer versions (WASMBED_E2E_DEVICES, WASMBED_E2E_LONG).
package e2e
