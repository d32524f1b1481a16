package httpapi

import (
	"bytes"
	"errors"
	"mime/multipart"
	"testing"
)

// FuzzContinueToken checks that any continue token either decodes to a key
// that encodes back to a token of the same query, or is refused with an
// error, never a panic.
func FuzzContinueToken(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzContinueToken.
	f.Fuzz(func(t *testing.T, token, fingerprint string) {
		k, err := decodeContinue(token, fingerprint)
		if err != nil {
			return
		}
		if k.Name == "" {
			t.Fatalf("decoded an empty key from %q", token)
		}
		again, err := decodeContinue(encodeContinue(k, fingerprint), fingerprint)
		if err != nil || again != k {
			t.Fatalf("round trip of %+v: %+v, %v", k, again, err)
		}
	})
}

// FuzzDeployJSON checks the JSON decoding and validation of a deploy: no
// panic, every failure a problem, and a request that passes validation
// makes an Application with the same name, module and targets.
func FuzzDeployJSON(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzDeployJSON.
	f.Fuzz(func(t *testing.T, body []byte) {
		var req DeployRequest
		if err := decodeJSON(bytes.NewReader(body), &req); err != nil {
			if _, ok := errors.AsType[*Problem](err); !ok {
				t.Fatalf("decode error %T is not a problem: %v", err, err)
			}
			return
		}
		if errs := req.validate(); len(errs) > 0 {
			return
		}
		app := req.application("fleet", "alice")
		if app.Name != req.Name || app.Spec.Name != req.Name || !bytes.Equal(app.Spec.WasmBinary, req.Module) ||
			len(app.Spec.TargetDevices) != len(req.TargetDevices) || (len(req.TargetDevices) == 0 && req.Selector == nil) {
			t.Fatalf("application %+v from %+v", app, req)
		}
		if !bytes.HasPrefix(app.Spec.WasmBinary, wasmHeader) {
			t.Fatalf("a module without the WebAssembly header passed: %x", app.Spec.WasmBinary)
		}
	})
}

// FuzzDeployMultipart checks the multipart reading of a deploy: no panic,
// every failure a problem, parts within their limits.
func FuzzDeployMultipart(f *testing.F) {
	// Seeds: testdata/fuzz/FuzzDeployMultipart.
	f.Fuzz(func(t *testing.T, body []byte) {
		var req DeployRequest
		err := readDeployMultipart(multipart.NewReader(bytes.NewReader(body), "fuzzboundary"), &req)
		if err != nil {
			if _, ok := errors.AsType[*Problem](err); !ok {
				t.Fatalf("error %T is not a problem: %v", err, err)
			}
			return
		}
		if len(req.Module) > MaxModuleSize {
			t.Fatalf("module of %d bytes accepted", len(req.Module))
		}
	})
}
