// Package e2e drives the dashboard in a real headless Chromium against a
// running platform: the embedded control plane, the controller, a gateway
// and a simulated fleet, with the roles' service-account tokens. Its tests
// skip, saying why, where no chromium is installed (hack/ensure-tools.sh
// installs Debian's package). With WASMBED_SCREENSHOTS set to a directory
// they save screenshots of the main views there (docs/images for the
// README).
package e2e
