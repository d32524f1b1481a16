// Package controller is the Wasmbed controller: the reconcilers that turn
// Applications into signed per-device artifacts and roll them out
// (ApplicationReconciler), keep Device status true when gateways or devices
// go away (DeviceReconciler), and sign the certificates gateways request for
// devices and for themselves (CertificateSigningRequestReconciler), with the
// manager that runs them (New, Run) and the operations the CLI performs on a
// rollout (Resume, Undo).
//
// The controller is the artifact issuer: it alone holds the platform
// signing key and the issuer key (Secrets in the system namespace it creates
// on first start), and it publishes their public halves in the
// wasmbed-issuer ConfigMap.
//
//	mgr, err := controller.New(controller.Options{RESTConfig: cfg})
//	err = mgr.Start(ctx)
//
// Every decision is taken from stored objects, so a controller killed at
// any moment and started again (or another replica taking over the
// leader-election Lease) continues where it stopped.
package controller
