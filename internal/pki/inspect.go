package pki

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
)

// CertificateInfo is a human-oriented summary of a certificate, as printed
// by `wasmbed pki inspect`.
type CertificateInfo struct {
	Subject        string
	Issuer         string
	Serial         string
	NotBefore      time.Time
	NotAfter       time.Time
	RenewAt        time.Time
	IsCA           bool
	MaxPathLen     int
	KeyAlgorithm   string
	DNSNames       []string
	IPAddresses    []string
	URIs           []string
	DeviceID       string
	KeyUsage       []string
	ExtKeyUsage    []string
	SubjectKeyID   string
	AuthorityKeyID string
	// Fingerprint is the SHA-256 of the SubjectPublicKeyInfo (Fingerprint).
	Fingerprint string
	// PublicKey is the EncodePublicKey form (Device spec.publicKey).
	PublicKey string
}

// Inspect summarises cert.
func Inspect(cert *x509.Certificate) CertificateInfo {
	info := CertificateInfo{
		Subject:        cert.Subject.String(),
		Issuer:         cert.Issuer.String(),
		Serial:         cert.SerialNumber.Text(16),
		NotBefore:      cert.NotBefore.UTC(),
		NotAfter:       cert.NotAfter.UTC(),
		RenewAt:        RenewAt(cert).UTC(),
		IsCA:           cert.IsCA,
		MaxPathLen:     -1,
		KeyAlgorithm:   KeyAlgorithmName(cert.PublicKey),
		DNSNames:       cert.DNSNames,
		KeyUsage:       keyUsageNames(cert.KeyUsage),
		ExtKeyUsage:    extKeyUsageNames(cert.ExtKeyUsage),
		SubjectKeyID:   hex.EncodeToString(cert.SubjectKeyId),
		AuthorityKeyID: hex.EncodeToString(cert.AuthorityKeyId),
	}
	if cert.IsCA && (cert.MaxPathLen > 0 || cert.MaxPathLenZero) {
		info.MaxPathLen = cert.MaxPathLen
	}
	for _, ip := range cert.IPAddresses {
		info.IPAddresses = append(info.IPAddresses, ip.String())
	}
	for _, u := range cert.URIs {
		info.URIs = append(info.URIs, u.String())
	}
	if id, err := DeviceIDFromCert(cert); err == nil {
		info.DeviceID = id
	}
	if fp, err := Fingerprint(cert.PublicKey); err == nil {
		info.Fingerprint = fp
	}
	if enc, err := EncodePublicKey(cert.PublicKey); err == nil {
		info.PublicKey = enc
	}
	return info
}

// WriteText prints info as aligned "key: value" lines.
func (info CertificateInfo) WriteText(w io.Writer) error {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-17s %s\n", k+":", v)
		}
	}
	line("subject", info.Subject)
	line("issuer", info.Issuer)
	line("serial", info.Serial)
	line("not before", info.NotBefore.Format(time.RFC3339))
	line("not after", info.NotAfter.Format(time.RFC3339))
	if !info.IsCA {
		line("renew at", info.RenewAt.Format(time.RFC3339))
	}
	if info.IsCA {
		pathLen := "unlimited"
		if info.MaxPathLen >= 0 {
			pathLen = fmt.Sprint(info.MaxPathLen)
		}
		line("ca", "true, max path length "+pathLen)
	}
	line("key algorithm", info.KeyAlgorithm)
	line("dns names", strings.Join(info.DNSNames, ", "))
	line("ip addresses", strings.Join(info.IPAddresses, ", "))
	line("uris", strings.Join(info.URIs, ", "))
	line("device id", info.DeviceID)
	line("key usage", strings.Join(info.KeyUsage, ", "))
	line("ext key usage", strings.Join(info.ExtKeyUsage, ", "))
	line("subject key id", info.SubjectKeyID)
	line("authority key id", info.AuthorityKeyID)
	line("fingerprint", "sha256:"+info.Fingerprint)
	line("public key", info.PublicKey)
	_, err := io.WriteString(w, b.String())
	return err
}

func keyUsageNames(ku x509.KeyUsage) []string {
	names := []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digital signature"},
		{x509.KeyUsageContentCommitment, "content commitment"},
		{x509.KeyUsageKeyEncipherment, "key encipherment"},
		{x509.KeyUsageDataEncipherment, "data encipherment"},
		{x509.KeyUsageKeyAgreement, "key agreement"},
		{x509.KeyUsageCertSign, "cert sign"},
		{x509.KeyUsageCRLSign, "crl sign"},
		{x509.KeyUsageEncipherOnly, "encipher only"},
		{x509.KeyUsageDecipherOnly, "decipher only"},
	}
	var out []string
	for _, n := range names {
		if ku&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func extKeyUsageNames(ekus []x509.ExtKeyUsage) []string {
	var out []string
	for _, u := range ekus {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "server auth")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "client auth")
		case x509.ExtKeyUsageAny:
			out = append(out, "any")
		default:
			out = append(out, fmt.Sprintf("eku(%d)", u))
		}
	}
	return out
}
