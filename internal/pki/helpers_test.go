package pki

import (
	"crypto"
	"crypto/tls"
	"sync"
	"testing"
	"time"
)

// testClock is a settable clock shared by the CA, verifiers and TLS configs.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func newTestAuthority(t testing.TB, clock *testClock, alg KeyAlgorithm) *Authority {
	t.Helper()
	a, err := NewAuthority(AuthorityOptions{Algorithm: alg, Clock: clock.Now})
	if err != nil {
		t.Fatalf("NewAuthority: %v", err)
	}
	return a
}

func mustKey(t testing.TB, alg KeyAlgorithm) crypto.Signer {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatalf("GenerateKey(%q): %v", alg, err)
	}
	return k
}

func mustGateway(t testing.TB, a *Authority) tls.Certificate {
	t.Helper()
	gw, err := a.IssueGateway(GatewayOptions{Name: "gw-0", DNSNames: []string{"gateway.test"}, IPAddresses: loopbackIPs()})
	if err != nil {
		t.Fatalf("IssueGateway: %v", err)
	}
	tc, err := gw.TLSCertificate()
	if err != nil {
		t.Fatalf("TLSCertificate: %v", err)
	}
	return tc
}

func mustDevice(t testing.TB, a *Authority, id string, alg KeyAlgorithm) tls.Certificate {
	t.Helper()
	key := mustKey(t, alg)
	dev, err := a.IssueDevice(key.Public(), DeviceOptions{DeviceID: id})
	if err != nil {
		t.Fatalf("IssueDevice: %v", err)
	}
	dev.Key = key
	tc, err := dev.TLSCertificate()
	if err != nil {
		t.Fatalf("TLSCertificate: %v", err)
	}
	return tc
}
