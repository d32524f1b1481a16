package gateway

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// csrWaiters wakes the requests waiting for their CertificateSigningRequest
// to be signed, from the informer, so that no request polls.
type csrWaiters struct {
	mu      sync.Mutex
	waiters map[string]chan struct{}
}

// watchCSRs installs the informer handler that wakes waiters.
func (g *Gateway) watchCSRs(ctx context.Context) error {
	inf, err := g.mgr.GetCache().GetInformer(ctx, &certificatesv1.CertificateSigningRequest{})
	if err != nil {
		return fmt.Errorf("gateway: certificate request informer: %w", err)
	}
	wake := func(obj any) {
		if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
			g.csrs.mu.Lock()
			ch := g.csrs.waiters[csr.Name]
			g.csrs.mu.Unlock()
			if ch != nil {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    wake,
		UpdateFunc: func(_, obj any) { wake(obj) },
	})
	return err
}

// errCertificateDenied matches a request the signer denied or failed.
var errCertificateDenied = errors.New("certificate request denied")

// requestCertificate asks Kubernetes for a device certificate through a
// CertificateSigningRequest for the wasmbed device signer, waits for the
// controller to sign it, and returns the chain (DER, leaf first). The
// request is deleted once answered.
func (g *Gateway) requestCertificate(ctx context.Context, dev *wasmbedv1.Device, csrDER []byte, purpose string) ([][]byte, error) {
	name, err := csrName(purpose, dev.Name)
	if err != nil {
		return nil, err
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Annotations: map[string]string{
				wasmbedv1.AnnotationDevice:  dev.Namespace + "/" + dev.Name,
				wasmbedv1.AnnotationPurpose: purpose,
			},
			Labels: map[string]string{wasmbedv1.LabelComponent: wasmbedv1.ComponentGateway},
		},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
			SignerName: wasmbedv1.DeviceSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}
	wake := make(chan struct{}, 1)
	g.csrs.mu.Lock()
	if g.csrs.waiters == nil {
		g.csrs.waiters = map[string]chan struct{}{}
	}
	g.csrs.waiters[name] = wake
	g.csrs.mu.Unlock()
	defer func() {
		g.csrs.mu.Lock()
		delete(g.csrs.waiters, name)
		g.csrs.mu.Unlock()
	}()
	if err := g.client.Create(ctx, csr); err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	defer func() {
		// The request served its purpose; the controller also collects
		// requests left behind.
		_ = g.client.Delete(context.WithoutCancel(ctx), csr)
	}()
	for {
		got := &certificatesv1.CertificateSigningRequest{}
		if err := g.client.Get(ctx, client.ObjectKeyFromObject(csr), got); err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		} else if err == nil {
			for _, c := range got.Status.Conditions {
				if (c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed) && c.Status == corev1.ConditionTrue {
					return nil, fmt.Errorf("%w: %s: %s", errCertificateDenied, c.Reason, c.Message)
				}
			}
			if len(got.Status.Certificate) > 0 {
				return pemChain(got.Status.Certificate)
			}
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("certificate request %s not signed: %w", name, ctx.Err())
		}
	}
}

// csrName returns a fresh, valid CertificateSigningRequest name.
func csrName(purpose, device string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	suffix := "-" + hex.EncodeToString(b[:])
	name := "wasmbed-" + purpose + "-" + device
	if room := wasmbedv1.MaxObjectNameLength - len(suffix); len(name) > room {
		name = strings.TrimRight(name[:room], "-.")
	}
	return name + suffix, nil
}

// pemChain decodes a PEM certificate chain into DER, checking each parses.
func pemChain(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 && len(out) < protocol.MaxChainLength {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return nil, fmt.Errorf("signed certificate: %w", err)
		}
		out = append(out, block.Bytes)
	}
	if len(out) == 0 {
		return nil, errors.New("signed certificate: no certificate in the answer")
	}
	return out, nil
}

// parseCSR parses and checks a device's certificate request: its signature
// proves possession of the key it carries.
func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "MissingCSR", Text: "a certificate request is required"}
	}
	if len(der) > protocol.MaxCSRSize {
		return nil, &session.Refusal{Code: protocol.CodeTooLarge, Reason: "BadCSR", Text: "certificate request too large"}
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "BadCSR", Text: "malformed certificate request", Err: err}
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "BadCSR", Text: "certificate request signature does not verify", Err: err}
	}
	return csr, nil
}

// sameKey reports whether two public keys are equal.
func sameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
