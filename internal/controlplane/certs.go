package controlplane

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	caLifetime       = 10 * 365 * 24 * time.Hour
	leafLifetime     = 365 * 24 * time.Hour
	leafRenewBefore  = 30 * 24 * time.Hour
	adminCommonName  = "wasmbed-admin"
	adminGroup       = "system:masters"
	caCommonName     = "wasmbed-control-plane-ca"
	apiserverCN      = "kube-apiserver"
	serviceAccountIP = "10.0.0.1"
)

// keyPair is a certificate with its private key.
type keyPair struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	keyPEM  []byte
}

// certificateFiles are the paths of the control plane's credentials.
type certificateFiles struct {
	dir string
}

func (f certificateFiles) path(name string) string { return filepath.Join(f.dir, name) }
func (f certificateFiles) caCert() string          { return f.path("ca.crt") }
func (f certificateFiles) caKey() string           { return f.path("ca.key") }
func (f certificateFiles) servingCert() string     { return f.path("apiserver.crt") }
func (f certificateFiles) servingKey() string      { return f.path("apiserver.key") }
func (f certificateFiles) serviceAccountKey() string {
	return f.path("sa.key")
}
func (f certificateFiles) serviceAccountPublicKey() string {
	return f.path("sa.pub")
}
func (f certificateFiles) adminCert() string { return f.path("admin.crt") }
func (f certificateFiles) adminKey() string  { return f.path("admin.key") }

// ensureCredentials loads the CA and the leaf credentials from dir, creating
// or renewing whatever is missing, expiring or does not cover hosts.
func ensureCredentials(dir string, hosts []string, now time.Time) (ca, admin *keyPair, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create pki dir: %w", err)
	}
	files := certificateFiles{dir: dir}
	ca, err = loadKeyPair(files.caCert(), files.caKey())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ca, err = newCA(now)
		if err != nil {
			return nil, nil, err
		}
		if err := writeKeyPair(ca, files.caCert(), files.caKey()); err != nil {
			return nil, nil, err
		}
	case err != nil:
		return nil, nil, fmt.Errorf("load control plane CA: %w", err)
	}

	serving, err := loadKeyPair(files.servingCert(), files.servingKey())
	if err != nil || needsRenewal(serving.cert, ca.cert, now) || !coversHosts(serving.cert, hosts) {
		serving, err = issueLeaf(ca, leafTemplate{
			commonName: apiserverCN,
			hosts:      hosts,
			usage:      x509.ExtKeyUsageServerAuth,
		}, now)
		if err != nil {
			return nil, nil, err
		}
		if err := writeKeyPair(serving, files.servingCert(), files.servingKey()); err != nil {
			return nil, nil, err
		}
	}

	admin, err = loadKeyPair(files.adminCert(), files.adminKey())
	if err != nil || needsRenewal(admin.cert, ca.cert, now) {
		admin, err = issueLeaf(ca, leafTemplate{
			commonName:   adminCommonName,
			organization: []string{adminGroup},
			usage:        x509.ExtKeyUsageClientAuth,
		}, now)
		if err != nil {
			return nil, nil, err
		}
		if err := writeKeyPair(admin, files.adminCert(), files.adminKey()); err != nil {
			return nil, nil, err
		}
	}

	if _, err := os.Stat(files.serviceAccountKey()); errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("generate service account key: %w", err)
		}
		keyPEM, err := encodeKey(key)
		if err != nil {
			return nil, nil, err
		}
		pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			return nil, nil, fmt.Errorf("marshal service account public key: %w", err)
		}
		pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
		if err := os.WriteFile(files.serviceAccountPublicKey(), pubPEM, 0o644); err != nil { //nolint:gosec // a public key: nothing to hide
			return nil, nil, fmt.Errorf("write service account public key: %w", err)
		}
		if err := os.WriteFile(files.serviceAccountKey(), keyPEM, 0o600); err != nil {
			return nil, nil, fmt.Errorf("write service account key: %w", err)
		}
	} else if err != nil {
		return nil, nil, fmt.Errorf("stat service account key: %w", err)
	}
	return ca, admin, nil
}

func newCA(now time.Time) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: caCommonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return sign(tmpl, key, nil)
}

type leafTemplate struct {
	commonName   string
	organization []string
	hosts        []string
	usage        x509.ExtKeyUsage
}

func issueLeaf(ca *keyPair, lt leafTemplate, now time.Time) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", lt.commonName, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: lt.commonName, Organization: lt.organization},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(leafLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{lt.usage},
	}
	for _, h := range lt.hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return sign(tmpl, key, ca)
}

// sign completes tmpl with a serial and key identifiers and signs it with
// issuer, or self-signs it when issuer is nil.
func sign(tmpl *x509.Certificate, key crypto.Signer, issuer *keyPair) (*keyPair, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl.SerialNumber = serial
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	ski := sha256.Sum256(pub)
	tmpl.SubjectKeyId = ski[:20]
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.cert, issuer.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &keyPair{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:     key,
		keyPEM:  keyPEM,
	}, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func loadKeyPair(certPath, keyPath string) (*keyPair, error) {
	certPEM, err := os.ReadFile(certPath) //nolint:gosec // a path under the control plane's own data directory
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath) //nolint:gosec // a path under the control plane's own data directory
	if err != nil {
		return nil, err
	}
	certBlock, _ := pem.Decode(certPEM)
	if certBlock == nil || certBlock.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no CERTIFICATE block", certPath)
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	keyBlock, _ := pem.Decode(keyPEM)
	if keyBlock == nil || keyBlock.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PRIVATE KEY block", keyPath)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key of type %T cannot sign", keyPath, parsed)
	}
	return &keyPair{cert: cert, certPEM: certPEM, key: key, keyPEM: keyPEM}, nil
}

func writeKeyPair(kp *keyPair, certPath, keyPath string) error {
	if err := os.WriteFile(keyPath, kp.keyPEM, 0o600); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if err := os.WriteFile(certPath, kp.certPEM, 0o644); err != nil { //nolint:gosec // a certificate: nothing to hide
		return fmt.Errorf("write certificate: %w", err)
	}
	return nil
}

func needsRenewal(cert, issuer *x509.Certificate, now time.Time) bool {
	if now.Add(leafRenewBefore).After(cert.NotAfter) {
		return true
	}
	return cert.CheckSignatureFrom(issuer) != nil
}

func coversHosts(cert *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(cert.DNSNames, h) {
			return false
		}
	}
	return true
}
