package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/issuer"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/trust"
)

// resolveTrust fills in from the cluster what Options.Trust leaves out: the
// root and device CA from the trust ConfigMap, the platform signing key from
// the issuer's ConfigMap, and a short-lived serving certificate requested
// from the controller. It waits, until ctx ends, for what is not published
// yet (a controller starting at the same time).
func (g *Gateway) resolveTrust(ctx context.Context) error {
	t := &g.opts.Trust
	if t.Root == nil || t.DeviceCA == nil {
		var b trust.Bundle
		if err := g.waitConfigMap(ctx, wasmbedv1.TrustConfigMap, func(data map[string]string) error {
			var err error
			b, err = trust.Parse(data)
			return err
		}); err != nil {
			return fmt.Errorf("gateway: trust bundle: %w", err)
		}
		t.Root, t.DeviceCA, g.gatewayCA = b.Root, b.DeviceCA, b.GatewayCA
	}
	if len(t.SigningKeys) == 0 {
		if err := g.waitConfigMap(ctx, wasmbedv1.IssuerConfigMap, func(data map[string]string) error {
			pub, err := issuer.ParsePublicData(data)
			if err != nil {
				return err
			}
			t.SigningKeys = []ed25519.PublicKey{pub.SigningKey}
			return nil
		}); err != nil {
			return fmt.Errorf("gateway: platform signing key: %w", err)
		}
	}
	if len(t.Certificate.Certificate) == 0 {
		cert, err := g.requestServingCertificate(ctx)
		if err != nil {
			return err
		}
		t.Certificate = *cert
		g.serving.Store(cert)
	}
	return nil
}

// waitConfigMap reads a ConfigMap of the system namespace and hands its
// data to parse, retrying while it is missing or does not parse.
func (g *Gateway) waitConfigMap(ctx context.Context, name string, parse func(map[string]string) error) error {
	key := types.NamespacedName{Namespace: g.opts.SystemNamespace, Name: name}
	delay := 100 * time.Millisecond
	for {
		cm := &corev1.ConfigMap{}
		err := g.reader.Get(ctx, key, cm)
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			return fmt.Errorf("ConfigMap %s: %w", key, err) // waiting will not help
		}
		if err == nil {
			if err = parse(cm.Data); err == nil {
				return nil
			}
		}
		g.log.Info("waiting for a ConfigMap", "configmap", key.String(), "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("ConfigMap %s: %w", key, errors.Join(err, ctx.Err()))
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// requestServingCertificate has the controller sign a server certificate
// for a key generated here, which never leaves the process, through a
// CertificateSigningRequest for the gateway signer.
func (g *Gateway) requestServingCertificate(ctx context.Context) (*tls.Certificate, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("gateway: serving key: %w", err)
	}
	der, err := pki.NewGatewayCSR(key, g.opts.Name, g.opts.ServingDNSNames, g.opts.ServingIPs)
	if err != nil {
		return nil, fmt.Errorf("gateway: serving certificate request: %w", err)
	}
	name, err := csrName("serving", g.opts.Name)
	if err != nil {
		return nil, err
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{wasmbedv1.LabelComponent: wasmbedv1.ComponentGateway}},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: wasmbedv1.GatewaySignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}
	if err := g.client.Create(ctx, csr); err != nil {
		return nil, fmt.Errorf("gateway: serving certificate request: %w", err)
	}
	defer func() { _ = g.client.Delete(context.WithoutCancel(ctx), csr) }()
	delay := 50 * time.Millisecond
	for {
		got := &certificatesv1.CertificateSigningRequest{}
		if err := g.reader.Get(ctx, client.ObjectKeyFromObject(csr), got); err == nil {
			for _, c := range got.Status.Conditions {
				if (c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed) && c.Status == corev1.ConditionTrue {
					return nil, fmt.Errorf("gateway: serving certificate: %w: %s: %s", errCertificateDenied, c.Reason, c.Message)
				}
			}
			if len(got.Status.Certificate) > 0 {
				return g.servingCertificate(ctx, key, got.Status.Certificate)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("gateway: serving certificate not signed: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// servingCertificate checks a signed chain (leaf for key, issued by the
// gateway CA, server authentication) and returns it as a TLS certificate.
func (g *Gateway) servingCertificate(ctx context.Context, key ed25519.PrivateKey, chainPEM []byte) (*tls.Certificate, error) {
	certs, err := pki.ParseCertificatesPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("gateway: serving certificate: %w", err)
	}
	leaf := certs[0]
	if !sameKey(leaf.PublicKey, key.Public()) {
		return nil, errors.New("gateway: serving certificate is not for the requested key")
	}
	if g.gatewayCA != nil {
		v, err := pki.NewVerifier(pki.VerifierConfig{Root: g.opts.Trust.Root, Issuer: g.gatewayCA, Clock: g.now})
		if err != nil {
			return nil, err
		}
		if err := v.VerifyGateway(ctx, certs, ""); err != nil {
			return nil, fmt.Errorf("gateway: serving certificate: %w", err)
		}
	}
	cert, err := pki.NewTLSCertificate(key, leaf, certs[1:]...)
	if err != nil {
		return nil, fmt.Errorf("gateway: serving certificate: %w", err)
	}
	g.log.Info("serving certificate issued", "notAfter", leaf.NotAfter)
	return &cert, nil
}

// servingCert holds the current serving certificate of a gateway that
// requested its own, renewed in the background.
type servingCert struct {
	cur atomic.Pointer[tls.Certificate]
}

// Store replaces the certificate.
func (s *servingCert) Store(c *tls.Certificate) { s.cur.Store(c) }

// get serves the current certificate to a handshake.
func (s *servingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cur.Load(), nil }

// renewServingCertificate replaces the serving certificate at two thirds of
// its lifetime, retrying with backoff, until ctx ends.
func (g *Gateway) renewServingCertificate(ctx context.Context) {
	for {
		cur := g.serving.cur.Load()
		if cur == nil || cur.Leaf == nil {
			return
		}
		wait := time.Until(pki.RenewAt(cur.Leaf))
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		}
		delay := time.Second
		for {
			cert, err := g.requestServingCertificate(ctx)
			if err == nil {
				g.serving.Store(cert)
				break
			}
			if ctx.Err() != nil {
				return
			}
			g.log.Warn("serving certificate renewal failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Minute)
		}
	}
}
