package pki

import (
	"bytes"
	"crypto/tls"
	"errors"
	"testing"
)

func TestSealingKeyProof(t *testing.T) {
	binding := bytes.Repeat([]byte{7}, EnrollmentBindingSize)
	sealing := bytes.Repeat([]byte{9}, SealingKeySize)
	for _, alg := range []KeyAlgorithm{Ed25519, ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			key, other := mustKey(t, alg), mustKey(t, alg)
			proof, err := SignSealingKeyProof(key, binding, sealing)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifySealingKeyProof(key.Public(), binding, sealing, proof); err != nil {
				t.Fatalf("valid proof: %v", err)
			}
			flipped := bytes.Clone(proof)
			flipped[len(flipped)/2] ^= 1
			otherBinding := bytes.Clone(binding)
			otherBinding[0] ^= 1
			otherSealing := bytes.Clone(sealing)
			otherSealing[31] ^= 1
			tests := []struct {
				name                    string
				identity                any
				binding, sealing, proof []byte
			}{
				{"another connection", key.Public(), otherBinding, sealing, proof},
				{"another sealing key", key.Public(), binding, otherSealing, proof},
				{"another identity", other.Public(), binding, sealing, proof},
				{"tampered proof", key.Public(), binding, sealing, flipped},
				{"no proof", key.Public(), binding, sealing, nil},
				{"short binding", key.Public(), binding[:16], sealing, proof},
				{"short sealing key", key.Public(), binding, sealing[:31], proof},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if err := VerifySealingKeyProof(tt.identity, tt.binding, tt.sealing, tt.proof); !errors.Is(err, ErrSealingKeyProof) {
						t.Fatalf("got %v, want ErrSealingKeyProof", err)
					}
				})
			}
		})
	}
}

// TestEnrollmentBindingPerConnection: both ends of one enrollment
// connection compute the same binding, another connection a different
// one, so a proof made for one connection fails on the next.
func TestEnrollmentBindingPerConnection(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	v, _ := ca.DeviceVerifier(nil)
	cfg, err := EnrollmentServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg)
	cli, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, GatewayCA: ca.GatewayCA.Cert, ServerName: "127.0.0.1", Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	key := mustKey(t, Ed25519)
	sealing := bytes.Repeat([]byte{3}, SealingKeySize)
	var bindings [2][]byte
	for i := range bindings {
		cs, err := dial(t.Context(), srv.ln.Addr().String(), cli)
		if err != nil {
			t.Fatal(err)
		}
		r := srv.result(t)
		if r.err != nil {
			t.Fatal(r.err)
		}
		devSide, err := EnrollmentBinding(cs)
		if err != nil {
			t.Fatal(err)
		}
		gwSide, err := EnrollmentBinding(r.state)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(devSide, gwSide) || len(devSide) != EnrollmentBindingSize {
			t.Fatalf("connection %d: device binding %x, gateway binding %x", i, devSide, gwSide)
		}
		bindings[i] = devSide
	}
	if bytes.Equal(bindings[0], bindings[1]) {
		t.Fatal("two connections share a binding")
	}
	proof, err := SignSealingKeyProof(key, bindings[0], sealing)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySealingKeyProof(key.Public(), bindings[1], sealing, proof); !errors.Is(err, ErrSealingKeyProof) {
		t.Fatalf("proof replayed on another connection: got %v, want ErrSealingKeyProof", err)
	}
	if _, err := EnrollmentBinding(tls.ConnectionState{}); err == nil {
		t.Fatal("binding before the handshake: got nil error")
	}
}

func TestRawPublicKey(t *testing.T) {
	for _, alg := range []KeyAlgorithm{Ed25519, ECDSAP256} {
		pub := mustKey(t, alg).Public()
		gotAlg, raw, err := RawPublicKey(pub)
		if err != nil || gotAlg != alg {
			t.Fatalf("%s: got (%s, %v)", alg, gotAlg, err)
		}
		back, err := PublicKeyFromRaw(alg, raw)
		if err != nil || !keysEqual(back, pub) {
			t.Fatalf("%s: round trip: got (%v, %v)", alg, back, err)
		}
	}
	smallOrder := append([]byte{1}, make([]byte, 31)...)
	offCurve := append([]byte{4}, make([]byte, 64)...)
	for name, tc := range map[string]struct {
		alg KeyAlgorithm
		raw []byte
	}{
		"short ed25519":       {Ed25519, make([]byte, 31)},
		"small-order ed25519": {Ed25519, smallOrder},
		"p256 off the curve":  {ECDSAP256, offCurve},
		"p256 compressed":     {ECDSAP256, append([]byte{2}, make([]byte, 32)...)},
		"unknown algorithm":   {"rsa", make([]byte, 32)},
	} {
		if _, err := PublicKeyFromRaw(tc.alg, tc.raw); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("%s: got %v, want ErrUnsupportedKey", name, err)
		}
	}
}
