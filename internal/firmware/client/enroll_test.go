package client_test

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/client"
	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// tampered is an identity whose enrollment requests are altered after
// they were built, as an attacker relaying or forging them would.
type tampered struct {
	*clienttest.MemIdentity
	mutate func(m *clienttest.MemIdentity, binding []byte, req *protocol.EnrollRequest)
}

func (t tampered) EnrollRequest(binding []byte) (*protocol.EnrollRequest, error) {
	req, err := t.MemIdentity.EnrollRequest(binding)
	if err != nil {
		return nil, err
	}
	t.mutate(t.MemIdentity, binding, req)
	return req, nil
}

// TestEnrollmentProvesPossession: the gateway enrolls a device that proves
// it holds its identity key and binds its sealing key to it and to the
// connection, and refuses every request that does not.
func TestEnrollmentProvesPossession(t *testing.T) {
	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	attackerSealing, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(m *clienttest.MemIdentity, binding []byte, req *protocol.EnrollRequest)
	}{
		// Someone who knows the device's public key but not its private key
		// substitutes a sealing key of their own.
		{"sealing key swapped", func(_ *clienttest.MemIdentity, _ []byte, req *protocol.EnrollRequest) {
			req.SealingKey = attackerSealing.PublicKey().Bytes()
		}},
		// ... and signs the proof with their own key.
		{"proof by another key", func(_ *clienttest.MemIdentity, binding []byte, req *protocol.EnrollRequest) {
			req.SealingKey = attackerSealing.PublicKey().Bytes()
			req.SealingKeyProof, _ = pki.SignSealingKeyProof(otherKey, binding, req.SealingKey)
		}},
		// The device's own proof, but made for another connection (one
		// recorded and replayed).
		{"proof for another connection", func(m *clienttest.MemIdentity, _ []byte, req *protocol.EnrollRequest) {
			req.SealingKeyProof, _ = pki.SignSealingKeyProof(m.Key(), bytes.Repeat([]byte{1}, pki.EnrollmentBindingSize), req.SealingKey)
		}},
		// A CSR that proves possession of some other key.
		{"csr for another key", func(_ *clienttest.MemIdentity, _ []byte, req *protocol.EnrollRequest) {
			req.CSR, _ = pki.NewDeviceCSR(otherKey, "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, clienttest.Options{})
			d := startDevice(t, srv, deviceOpts{wrap: func(m *clienttest.MemIdentity) client.Identity {
				return tampered{m, tt.mutate}
			}})
			eventually(t, "two refusals", func() bool { return srv.EnrollRefusals.Load() >= 2 })
			if d.id.DeviceID() != "" || srv.Enrolled() != 0 {
				t.Fatalf("enrolled %q (gateway count %d) despite the failed proof", d.id.DeviceID(), srv.Enrolled())
			}
			if d.client.Status().ErrorsReceived < 1 {
				t.Error("the device saw no Error reply")
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		srv := startServer(t, clienttest.Options{})
		d := startDevice(t, srv, deviceOpts{})
		eventually(t, "enrollment", func() bool { return d.id.DeviceID() != "" && srv.Enrolled() == 1 })
		if got := srv.SealingKey(d.id.DeviceID()); got == nil || !got.Equal(d.id.SealingKey()) {
			t.Fatalf("gateway recorded sealing key %v, want the device's", got)
		}
		if srv.EnrollRefusals.Load() != 0 {
			t.Fatalf("refusals: got %d, want 0", srv.EnrollRefusals.Load())
		}
	})
}

// TestEnrollmentVerifiesChain: the device checks the chain an enrollment
// returns as it checks a renewed one and stores nothing it refuses.
func TestEnrollmentVerifiesChain(t *testing.T) {
	other, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	der := func(c *pki.Certificate, err error) [][]byte {
		if err != nil {
			t.Fatal(err)
		}
		return c.DER()
	}
	tests := []struct {
		name  string
		chain func(id string, key crypto.PublicKey) [][]byte
	}{
		{"another authority", func(id string, key crypto.PublicKey) [][]byte {
			return der(other.IssueDevice(key, pki.DeviceOptions{DeviceID: id}))
		}},
		{"the gateway CA", func(id string, key crypto.PublicKey) [][]byte {
			return exactCertFrom(t, ca.GatewayCA, key.(ed25519.PublicKey), id, time.Now(), time.Hour)
		}},
		{"another key", func(id string, _ crypto.PublicKey) [][]byte {
			return der(ca.IssueDevice(otherKey.Public(), pki.DeviceOptions{DeviceID: id}))
		}},
		{"another device id", func(_ string, key crypto.PublicKey) [][]byte {
			return der(ca.IssueDevice(key, pki.DeviceOptions{DeviceID: "esp32-999999"}))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, clienttest.Options{Authority: ca, Enroll: tt.chain})
			d := startDevice(t, srv, deviceOpts{})
			eventually(t, "two rejections", func() bool { return d.client.Status().EnrollmentsRejected >= 2 })
			if d.id.DeviceID() != "" || srv.Enrolled() != 0 {
				t.Fatalf("stored identity %q (gateway count %d) from a refused chain", d.id.DeviceID(), srv.Enrolled())
			}
		})
	}
}
