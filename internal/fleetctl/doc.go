// Package fleetctl holds the operator's actions on a Wasmbed fleet at the
// Kubernetes level: deploy an Application from a module, start, stop and
// delete it, resume or undo its rollout, revoke a Device, and open or close
// the pairing window. The gateway's HTTP API and the wasmbed command line
// both call it, so that an action means the same whichever way it is asked
// for.
//
// Every function takes a controller-runtime client and works against any
// cluster; none keeps state. Inputs are checked before Kubernetes is asked
// (Deploy.Validate returns the invalid fields, wrapped as *InvalidError by
// the helpers that take user input), and the Kubernetes errors are returned
// wrapped with %w so that callers can still test them with apierrors.
//
// A deploy from the command line:
//
//	d := fleetctl.Deploy{Name: "blinky", Module: wasm, TargetDevices: []string{"esp32-1"}}
//	if err := d.Check(); err != nil { ... } // *InvalidError
//	app := d.Application("default")
//	created, err := fleetctl.Apply(ctx, c, app)
package fleetctl
