// Package deptest holds no code: its test keeps the device-side packages on
// the dependencies real firmware could have. The protocol, PKI and message
// security packages use only the standard library and the CBOR library; the
// simulated firmware and the simulator add the WebAssembly runtime and the
// project's own device-safe packages. Kubernetes, controller-runtime and the
// control plane must never creep in: they would not fit on a device, and the
// fleet simulator must build and start fast. The gateway's session core
// and the firmware's test gateway built on it are held to the same rule,
// with Prometheus's client added. It also checks that the
// wasmbed binary links internal/cli/kubectli18n, which only works by being
// linked.
package deptest
