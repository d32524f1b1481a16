package issuer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/seal"
)

var module = append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte("secret code "), 40)...)

func application(ns, name string) *wasmbedv1.Application {
	return &wasmbedv1.Application{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: wasmbedv1.ApplicationSpec{Name: name, WasmBinary: []byte("stale")}}
}

func TestSealAndOpenApplication(t *testing.T) {
	ik, err := GenerateIssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	app := application("team-a", "blinky")
	if err := SealApplication(app, module, ik.PublicKey()); err != nil {
		t.Fatalf("SealApplication: %v", err)
	}
	if !app.Spec.Confidential || app.Spec.WasmBinary != nil || app.Spec.SealedModule == nil {
		t.Fatalf("got confidential %t, wasmBinary %d bytes, sealedModule %v; want a sealed application", app.Spec.Confidential, len(app.Spec.WasmBinary), app.Spec.SealedModule)
	}
	// The plaintext appears nowhere in the object as the API server
	// stores it.
	js, err := json.Marshal(app)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []string{string(module[8:40]), base64.StdEncoding.EncodeToString(module[:48])} {
		if bytes.Contains(js, []byte(enc)) {
			t.Fatalf("the serialized Application contains the plaintext")
		}
	}
	content, got, err := OpenSealedModule(app, ik)
	if err != nil {
		t.Fatalf("OpenSealedModule: %v", err)
	}
	if !bytes.Equal(got, module) {
		t.Fatal("opened another module")
	}
	if !content.Confidential() || content.PayloadSize() != len(app.Spec.SealedModule.Ciphertext) {
		t.Errorf("content: confidential %t, payload %d bytes; want confidential with the ciphertext as payload", content.Confidential(), content.PayloadSize())
	}
}

func TestOpenSealedModuleRefusals(t *testing.T) {
	ik, _ := GenerateIssuerKey()
	other, _ := GenerateIssuerKey()
	sealed := application("team-a", "blinky")
	if err := SealApplication(sealed, module, ik.PublicKey()); err != nil {
		t.Fatal(err)
	}
	copyTo := func(ns, name string) *wasmbedv1.Application {
		a := application(ns, name)
		a.Spec.SealedModule = sealed.Spec.SealedModule.DeepCopy()
		return a
	}
	flip := func(field func(*wasmbedv1.SealedModule) []byte) *wasmbedv1.Application {
		a := copyTo("team-a", "blinky")
		b := field(a.Spec.SealedModule)
		b[len(b)-1] ^= 1
		return a
	}
	for _, tc := range []struct {
		name string
		app  *wasmbedv1.Application
		key  bool // use the other issuer key
		want error
	}{
		{"copied to another application", copyTo("team-a", "thief"), false, ErrSealedModule},
		{"copied to another namespace", copyTo("team-b", "blinky"), false, ErrSealedModule},
		{"wrapped key damaged", flip(func(s *wasmbedv1.SealedModule) []byte { return s.WrappedKey }), false, ErrSealedModule},
		{"ciphertext damaged", flip(func(s *wasmbedv1.SealedModule) []byte { return s.Ciphertext }), false, ErrSealedModule},
		{"other issuer key", copyTo("team-a", "blinky"), true, ErrUnknownIssuerKey},
		{"no sealed module", application("team-a", "blinky"), false, ErrSealedModule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := ik
			if tc.key {
				k = other
			}
			c, m, err := OpenSealedModule(tc.app, k)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if c != nil || m != nil {
				t.Error("got content with the refusal")
			}
		})
	}
	// Another issuer key with a forged id does not open either.
	forged := copyTo("team-a", "blinky")
	forged.Spec.SealedModule.IssuerKeyID = seal.KeyIDOf(other.PublicKey()).String()
	if _, _, err := OpenSealedModule(forged, other); !errors.Is(err, ErrSealedModule) {
		t.Errorf("forged key id: got %v, want ErrSealedModule", err)
	}
	if err := SealApplication(application("", "x"), module, ik.PublicKey()); err == nil {
		t.Error("sealing an application without a namespace: got nil error")
	}
}

func TestSigningKeyRoundTrip(t *testing.T) {
	key, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := EncodeSigningKey(key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSigningKey(enc)
	if err != nil {
		t.Fatalf("ParseSigningKey: %v", err)
	}
	if !got.Equal(key) {
		t.Fatal("parsed another key")
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not pem", []byte("ed25519")},
		{"other block type", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})},
		{"trailing data", append(bytes.Clone(enc), "junk"...)},
		{"ecdsa key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})},
		{"too large", append(bytes.Clone(enc), bytes.Repeat([]byte("\n"), maxKeyPEM)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseSigningKey(tc.data); !errors.Is(err, ErrMalformedKey) {
				t.Errorf("got %v, want ErrMalformedKey", err)
			}
		})
	}
	if _, err := ParseIssuerKey(make([]byte, 31)); !errors.Is(err, ErrMalformedKey) {
		t.Errorf("short issuer key: got %v, want ErrMalformedKey", err)
	}
}

func TestPublicData(t *testing.T) {
	sk, _ := GenerateSigningKey()
	ik, _ := GenerateIssuerKey()
	p := &Public{SigningKey: sk.Public().(ed25519.PublicKey), IssuerKey: ik.PublicKey()}
	data := p.Data()
	got, err := ParsePublicData(data)
	if err != nil {
		t.Fatalf("ParsePublicData: %v", err)
	}
	if !got.SigningKey.Equal(p.SigningKey) || !got.IssuerKey.Equal(p.IssuerKey) {
		t.Fatal("round trip changed the keys")
	}
	for _, field := range []string{wasmbedv1.IssuerSigningKey, wasmbedv1.IssuerSigningKeyID, wasmbedv1.IssuerSealingKey, wasmbedv1.IssuerSealingKeyID} {
		t.Run("bad "+field, func(t *testing.T) {
			d := maps.Clone(data)
			d[field] = d[field][1:] + "A"
			if _, err := ParsePublicData(d); !errors.Is(err, ErrMalformedKey) {
				t.Errorf("got %v, want ErrMalformedKey", err)
			}
		})
	}
}
