// Package issuer holds what the artifact issuer — the controller — keeps and
// publishes, and the envelope in which clients hand it confidential modules.
//
// The issuer has two keys, each in a Secret of the system namespace that
// only the controller may read: the platform signing key (Ed25519), which
// signs every artifact, and the issuer key (X25519), to which clients wrap
// the content keys of confidential modules. Their public halves go into the
// wasmbed-issuer ConfigMap (PublicData), where gateways find the signing key
// to pin on enrolling devices and clients find the issuer key.
//
// A client seals a module for an Application (SealApplication); the
// controller opens it in memory (OpenSealedModule) and issues per-device
// artifacts with artifact.Signer.Issue:
//
//	pub, err := issuer.ParsePublicData(cm.Data)          // client
//	err = issuer.SealApplication(app, module, pub.IssuerKey)
//
//	content, module, err := issuer.OpenSealedModule(app, issuerKey) // controller
//
// The package has no Kubernetes client dependency: callers read and write the
// Secrets and the ConfigMap.
package issuer

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/seal"
)

// Errors callers branch on.
var (
	// ErrMalformedKey reports stored or published key data that does not
	// parse.
	ErrMalformedKey = errors.New("issuer: malformed key")
	// ErrUnknownIssuerKey reports a sealed module wrapped to another issuer
	// key than the one the controller holds.
	ErrUnknownIssuerKey = errors.New("issuer: sealed to an unknown issuer key")
	// ErrSealedModule reports a sealed module that does not open: the
	// wrapped key or the ciphertext is damaged, or it was sealed for another
	// Application.
	ErrSealedModule = errors.New("issuer: sealed module does not open")
)

// maxKeyPEM bounds a stored signing key.
const maxKeyPEM = 4 << 10

// GenerateSigningKey returns a new platform signing key.
func GenerateSigningKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issuer: generate signing key: %w", err)
	}
	return key, nil
}

// EncodeSigningKey returns key as a PKCS #8 PEM block, the form stored in
// the signing key Secret.
func EncodeSigningKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("issuer: encode signing key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseSigningKey parses a signing key stored by EncodeSigningKey.
func ParseSigningKey(data []byte) (ed25519.PrivateKey, error) {
	if len(data) > maxKeyPEM {
		return nil, fmt.Errorf("%w: signing key is %d bytes, limit %d", ErrMalformedKey, len(data), maxKeyPEM)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: signing key is not one PRIVATE KEY PEM block", ErrMalformedKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key: %w", ErrMalformedKey, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: signing key is %T, want Ed25519", ErrMalformedKey, k)
	}
	return key, nil
}

// GenerateIssuerKey returns a new X25519 issuer key.
func GenerateIssuerKey() (*ecdh.PrivateKey, error) {
	k, err := seal.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("issuer: generate issuer key: %w", err)
	}
	return k, nil
}

// ParseIssuerKey parses the 32 raw bytes of the issuer key Secret.
func ParseIssuerKey(data []byte) (*ecdh.PrivateKey, error) {
	k, err := seal.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer key: %w", ErrMalformedKey, err)
	}
	return k, nil
}

// Public is what the issuer publishes.
type Public struct {
	// SigningKey is the platform signing key's public half, which devices
	// pin at enrollment.
	SigningKey ed25519.PublicKey
	// IssuerKey is the issuer key's public half, to which clients wrap
	// content keys.
	IssuerKey *ecdh.PublicKey
}

// IssuerKeyID returns the issuer key's id as SealedModule.IssuerKeyID
// carries it.
func (p *Public) IssuerKeyID() string { return seal.KeyIDOf(p.IssuerKey).String() }

// Data returns p as the data of the wasmbed-issuer ConfigMap.
func (p *Public) Data() map[string]string {
	return map[string]string{
		wasmbedv1.IssuerSigningKey:   base64.RawURLEncoding.EncodeToString(p.SigningKey),
		wasmbedv1.IssuerSigningKeyID: artifact.KeyIDOf(p.SigningKey).String(),
		wasmbedv1.IssuerSealingKey:   base64.RawURLEncoding.EncodeToString(p.IssuerKey.Bytes()),
		wasmbedv1.IssuerSealingKeyID: p.IssuerKeyID(),
	}
}

// ParsePublicData parses the data of the wasmbed-issuer ConfigMap, checking
// that each key id matches its key.
func ParsePublicData(data map[string]string) (*Public, error) {
	sk, err := decodeKey(data, wasmbedv1.IssuerSigningKey, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	ik, err := decodeKey(data, wasmbedv1.IssuerSealingKey, 32)
	if err != nil {
		return nil, err
	}
	p := &Public{SigningKey: ed25519.PublicKey(sk)}
	if p.IssuerKey, err = seal.ParsePublicKey(ik); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformedKey, wasmbedv1.IssuerSealingKey, err)
	}
	if got, want := data[wasmbedv1.IssuerSigningKeyID], artifact.KeyIDOf(p.SigningKey).String(); got != want {
		return nil, fmt.Errorf("%w: %s is %q, the key's id is %q", ErrMalformedKey, wasmbedv1.IssuerSigningKeyID, got, want)
	}
	if got, want := data[wasmbedv1.IssuerSealingKeyID], p.IssuerKeyID(); got != want {
		return nil, fmt.Errorf("%w: %s is %q, the key's id is %q", ErrMalformedKey, wasmbedv1.IssuerSealingKeyID, got, want)
	}
	return p, nil
}

func decodeKey(data map[string]string, name string, size int) ([]byte, error) {
	s := data[name]
	if len(s) != base64.RawURLEncoding.EncodedLen(size) {
		return nil, fmt.Errorf("%w: %s is %d characters, want %d", ErrMalformedKey, name, len(s), base64.RawURLEncoding.EncodedLen(size))
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformedKey, name, err)
	}
	return b, nil
}

// SealedModuleAAD returns the associated data a sealed module's content key is
// wrapped to the issuer key with: the Application's namespace and name, so
// that a sealed module copied into another Application does not open.
func SealedModuleAAD(namespace, name string) []byte {
	const label = "wasmbed/sealed-module/v1"
	b := make([]byte, 0, len(label)+1+4+len(namespace)+4+len(name))
	b = append(b, label...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(namespace))) //nolint:gosec // object names are short
	b = append(b, namespace...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(name))) //nolint:gosec // object names are short
	return append(b, name...)
}

// SealModule encrypts module once under a fresh content key and wraps the
// key to the issuer key for the Application namespace/name.
func SealModule(module []byte, issuerKey *ecdh.PublicKey, namespace, name string) (*wasmbedv1.SealedModule, error) {
	if len(module) == 0 {
		return nil, errors.New("issuer: seal module: empty module")
	}
	key, blob, err := seal.EncryptContent(module, nil)
	if err != nil {
		return nil, fmt.Errorf("issuer: seal module: %w", err)
	}
	defer clear(key[:])
	wrapped, err := seal.WrapKey(issuerKey, key, SealedModuleAAD(namespace, name))
	if err != nil {
		return nil, fmt.Errorf("issuer: seal module: %w", err)
	}
	return &wasmbedv1.SealedModule{IssuerKeyID: seal.KeyIDOf(issuerKey).String(), WrappedKey: wrapped, Ciphertext: blob}, nil
}

// SealApplication makes app confidential with module: it sets
// spec.sealedModule (sealed for app's namespace and name, which must be
// final) and spec.confidential, and clears spec.wasmBinary. The plaintext is
// in no field of app afterwards.
func SealApplication(app *wasmbedv1.Application, module []byte, issuerKey *ecdh.PublicKey) error {
	if app.Name == "" || app.Namespace == "" {
		return errors.New("issuer: seal application: namespace and name must be set first")
	}
	sm, err := SealModule(module, issuerKey, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	app.Spec.SealedModule = sm
	app.Spec.Confidential = true
	app.Spec.WasmBinary = nil
	return nil
}

// OpenSealedModule opens the sealed module of app with the issuer key: it
// unwraps the content key for app's namespace and name and decrypts the
// module in memory. It returns the artifact Content (which keeps the content
// key, to wrap it for each device) and the plaintext, for admission checks.
func OpenSealedModule(app *wasmbedv1.Application, issuerKey *ecdh.PrivateKey) (*artifact.Content, []byte, error) {
	sm := app.Spec.SealedModule
	if sm == nil {
		return nil, nil, fmt.Errorf("%w: no sealedModule", ErrSealedModule)
	}
	if id := seal.KeyIDOf(issuerKey.PublicKey()).String(); sm.IssuerKeyID != id {
		return nil, nil, fmt.Errorf("%w: sealed to %q, this issuer holds %q", ErrUnknownIssuerKey, sm.IssuerKeyID, id)
	}
	key, err := seal.UnwrapKey(issuerKey, sm.WrappedKey, SealedModuleAAD(app.Namespace, app.Name))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: wrapped key (sealed for another Application, or damaged): %w", ErrSealedModule, err)
	}
	defer clear(key[:])
	content, module, err := artifact.OpenSealedContent(sm.Ciphertext, key)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ciphertext: %w", ErrSealedModule, err)
	}
	return content, module, nil
}
