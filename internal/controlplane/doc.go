// Package controlplane runs a real Kubernetes control plane in-process: an
// embedded etcd (go.etcd.io/etcd/server/v3/embed) and a kube-apiserver built
// from k8s.io/kubernetes, both listening on loopback.
//
// It is what `wasmbed up` runs and what every integration test of the project
// starts. Start generates, on first use, a private CA, the API server's serving
// certificate, a service-account signing key and an admin client certificate
// (group system:masters) in the data directory, writes an admin kubeconfig,
// waits until /readyz answers, installs the Wasmbed CRDs and waits until they
// are established. All state lives in the data directory, so starting again on
// the same directory keeps every resource:
//
//	<data-dir>/
//	  etcd/          etcd's write-ahead log and snapshots
//	  pki/           ca.crt ca.key apiserver.crt apiserver.key sa.key sa.pub admin.crt admin.key
//	  kubeconfig     admin credentials for kubectl and clients
//	  lock           held while a control plane runs on the directory
//
//	cp, err := controlplane.Start(ctx, controlplane.Options{DataDir: dir})
//	if err != nil { ... }
//	defer cp.Stop()
//	cfg := cp.RESTConfig()
package controlplane
