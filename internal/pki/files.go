package pki

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MaxInputSize bounds every PEM, DER or key file this package reads or
// parses; larger input is refused with ErrTooLarge before parsing.
const MaxInputSize = 64 << 10

// PEM block types.
const (
	pemCertificate = "CERTIFICATE"
	pemPrivateKey  = "PRIVATE KEY"
	pemPublicKey   = "PUBLIC KEY"
	pemCSR         = "CERTIFICATE REQUEST"
)

// CA directory layout (see docs/pki.md). Certificates are written 0644,
// private keys (PKCS#8 PEM) 0600, the directory itself 0700.
const (
	RootCertFile      = "root.crt"
	RootKeyFile       = "root.key"
	GatewayCACertFile = "gateway-ca.crt"
	GatewayCAKeyFile  = "gateway-ca.key"
	DeviceCACertFile  = "device-ca.crt"
	DeviceCAKeyFile   = "device-ca.key"

	CertFileMode = 0o644
	KeyFileMode  = 0o600
	DirMode      = 0o700
)

func checkSize(what string, n int) error {
	if n > MaxInputSize {
		return fmt.Errorf("%s: %d bytes, limit %d: %w", what, n, MaxInputSize, ErrTooLarge)
	}
	return nil
}

// EncodeCertificatesPEM returns the certificates as concatenated PEM blocks.
func EncodeCertificatesPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: pemCertificate, Bytes: c.Raw})
	}
	return b.Bytes()
}

// EncodePrivateKeyPEM returns key as a PKCS#8 "PRIVATE KEY" PEM block.
func EncodePrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	if err := CheckPrivateKey(key); err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// EncodePublicKeyPEM returns pub as a PKIX "PUBLIC KEY" PEM block.
func EncodePublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	if err := CheckPublicKey(pub); err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), nil
}

// pemBlocks decodes every PEM block of type want in data; anything else
// (other block types, non-whitespace outside blocks) is ErrMalformedPEM.
func pemBlocks(data []byte, want string) ([][]byte, error) {
	if err := checkSize(strings.ToLower(want), len(data)); err != nil {
		return nil, err
	}
	var out [][]byte
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != want {
			return nil, fmt.Errorf("%w: found %q block, want %q", ErrMalformedPEM, block.Type, want)
		}
		if len(block.Headers) != 0 {
			return nil, fmt.Errorf("%w: %q block has headers (encrypted keys are not supported)", ErrMalformedPEM, want)
		}
		out = append(out, block.Bytes)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: unexpected data outside %q blocks", ErrMalformedPEM, want)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no %q block", ErrMalformedPEM, want)
	}
	return out, nil
}

// ParseCertificatesPEM parses one or more "CERTIFICATE" PEM blocks (leaf first).
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	blocks, err := pemBlocks(data, pemCertificate)
	if err != nil {
		return nil, fmt.Errorf("parse certificates: %w", err)
	}
	certs := make([]*x509.Certificate, 0, len(blocks))
	for i, der := range blocks {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse certificates: block %d: %w: %w", i, ErrMalformedPEM, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// ParsePrivateKeyPEM parses a single PKCS#8 "PRIVATE KEY" PEM block holding
// an Ed25519 or ECDSA P-256 key.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	blocks, err := pemBlocks(data, pemPrivateKey)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	if len(blocks) != 1 {
		return nil, fmt.Errorf("parse private key: %w: %d keys, want 1", ErrMalformedPEM, len(blocks))
	}
	k, err := x509.ParsePKCS8PrivateKey(blocks[0])
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w: %w", ErrMalformedPEM, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse private key: %w", &UnsupportedKeyError{Algorithm: fmt.Sprintf("%T", k), Reason: "not a signing key"})
	}
	if err := CheckPrivateKey(signer); err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	return signer, nil
}

// ParsePublicKeyFile parses a public key given either as a "PUBLIC KEY" PEM
// block or as the Device spec.publicKey text (EncodePublicKey form).
func ParsePublicKeyFile(data []byte) (crypto.PublicKey, error) {
	if err := checkSize("public key", len(data)); err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		blocks, err := pemBlocks(trimmed, pemPublicKey)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		if len(blocks) != 1 {
			return nil, fmt.Errorf("parse public key: %w: %d keys, want 1", ErrMalformedPEM, len(blocks))
		}
		return parsePKIX(blocks[0])
	}
	return ParsePublicKey(string(trimmed))
}

// ParseCSR parses a certificate signing request given as a "CERTIFICATE
// REQUEST" PEM block or as DER. It does not check the signature:
// Authority.IssueDeviceFromCSR and IssueGatewayFromCSR do.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if err := checkSize("certificate request", len(data)); err != nil {
		return nil, err
	}
	der := data
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		blocks, err := pemBlocks(data, pemCSR)
		if err != nil {
			return nil, fmt.Errorf("parse certificate request: %w", err)
		}
		if len(blocks) != 1 {
			return nil, fmt.Errorf("parse certificate request: %w: %d requests, want 1", ErrMalformedPEM, len(blocks))
		}
		der = blocks[0]
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w: %w", ErrMalformedPEM, err)
	}
	return csr, nil
}

// EncodeCSRPEM returns a DER certificate request as a PEM block.
func EncodeCSRPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der})
}

// ReadFile reads a file of at most MaxInputSize bytes (ErrTooLarge otherwise).
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // a path from the operator's own flags
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxInputSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxInputSize {
		return nil, fmt.Errorf("read %s: more than %d bytes: %w", path, MaxInputSize, ErrTooLarge)
	}
	return data, nil
}

// LoadCertificates reads a PEM file of one or more certificates (leaf first).
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// LoadPrivateKey reads a PKCS#8 PEM private key file.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// LoadPublicKey reads a public key file (see ParsePublicKeyFile).
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

// LoadCSR reads a certificate request file (see ParseCSR).
func LoadCSR(path string) (*x509.CertificateRequest, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	csr, err := ParseCSR(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return csr, nil
}

// LoadTLSCertificate reads a certificate chain file (leaf first) and its
// private key file into a tls.Certificate.
func LoadTLSCertificate(certPath, keyPath string) (tls.Certificate, error) {
	certs, err := LoadCertificates(certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := LoadPrivateKey(keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	tc, err := NewTLSCertificate(key, certs[0], certs[1:]...)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s, %s: %w", certPath, keyPath, err)
	}
	return tc, nil
}

// WriteFile writes data to path with exactly perm. Unless force is set it
// refuses to replace an existing file (ErrExists); with force it replaces the
// file atomically (temporary file and rename).
func WriteFile(path string, data []byte, perm fs.FileMode, force bool) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm) //nolint:gosec // a path from the operator's own flags
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s: %w (use --force to overwrite)", path, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := finish(f, data, perm); err != nil {
			_ = os.Remove(path)
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	if err := finish(f, data, perm); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func finish(f *os.File, data []byte, perm fs.FileMode) error {
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type fileSpec struct {
	path string
	data []byte
	perm fs.FileMode
}

// writeAll refuses before writing anything if any target exists (unless force).
func writeAll(files []fileSpec, force bool) error {
	if !force {
		for _, f := range files {
			if _, err := os.Lstat(f.path); err == nil {
				return fmt.Errorf("write %s: %w (use --force to overwrite)", f.path, ErrExists)
			}
		}
	}
	for _, f := range files {
		if err := WriteFile(f.path, f.data, f.perm, force); err != nil {
			return err
		}
	}
	return nil
}

// SaveCA writes a's certificates and loaded keys into dir (created 0700 if
// missing) using the CA directory layout. It refuses to overwrite any
// existing file unless force is set, and then writes nothing.
func SaveCA(dir string, a *Authority, force bool) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	var files []fileSpec
	for _, p := range caParts(a) {
		files = append(files, fileSpec{filepath.Join(dir, p.certFile), EncodeCertificatesPEM(p.ca.Cert), CertFileMode})
		if p.ca.Key == nil {
			continue
		}
		pemKey, err := EncodePrivateKeyPEM(p.ca.Key)
		if err != nil {
			return fmt.Errorf("save CA: %w", err)
		}
		files = append(files, fileSpec{filepath.Join(dir, p.keyFile), pemKey, KeyFileMode})
	}
	if err := writeAll(files, force); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	return nil
}

type caPart struct {
	ca                *CA
	certFile, keyFile string
}

func caParts(a *Authority) []caPart {
	return []caPart{
		{a.Root, RootCertFile, RootKeyFile},
		{a.GatewayCA, GatewayCACertFile, GatewayCAKeyFile},
		{a.DeviceCA, DeviceCACertFile, DeviceCAKeyFile},
	}
}

// LoadCA loads a CA directory. The three certificates are required; each
// key is loaded when present: a gateway needs none, the controller the two
// intermediate keys (it signs gateway and device certificates), and
// root.key is only needed to create new intermediates. The result is
// validated (see Authority.Validate).
func LoadCA(dir string) (*Authority, error) {
	if _, err := os.Stat(filepath.Join(dir, "intermediate.crt")); err == nil {
		if _, err := os.Stat(filepath.Join(dir, DeviceCACertFile)); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("load CA %s: a single intermediate issues both kinds of certificate in this directory; "+
				"create a new CA with separate gateway and device CAs (wasmbed pki init)", dir)
		}
	}
	a := &Authority{Root: &CA{}, GatewayCA: &CA{}, DeviceCA: &CA{}}
	for _, p := range caParts(a) {
		certs, err := LoadCertificates(filepath.Join(dir, p.certFile))
		if err != nil {
			return nil, fmt.Errorf("load CA: %w", err)
		}
		p.ca.Cert = certs[0]
		path := filepath.Join(dir, p.keyFile)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if p.ca.Key, err = LoadPrivateKey(path); err != nil {
			return nil, fmt.Errorf("load CA: %w", err)
		}
	}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("load CA %s: %w", dir, err)
	}
	return a, nil
}

// SaveCertificate writes c's leaf and chain to certPath (0644) and, when c
// carries a key and keyPath is not empty, the key to keyPath (0600). Missing
// parent directories are created 0700. Nothing is written if a target exists
// and force is not set.
func SaveCertificate(c *Certificate, certPath, keyPath string, force bool) error {
	for _, p := range []string{certPath, keyPath} {
		if p == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), DirMode); err != nil {
			return fmt.Errorf("save certificate: %w", err)
		}
	}
	files := []fileSpec{{certPath, EncodeCertificatesPEM(append([]*x509.Certificate{c.Leaf}, c.Chain...)...), CertFileMode}}
	if c.Key != nil && keyPath != "" {
		pemKey, err := EncodePrivateKeyPEM(c.Key)
		if err != nil {
			return fmt.Errorf("save certificate: %w", err)
		}
		files = append(files, fileSpec{keyPath, pemKey, KeyFileMode})
	}
	if err := writeAll(files, force); err != nil {
		return fmt.Errorf("save certificate: %w", err)
	}
	return nil
}
