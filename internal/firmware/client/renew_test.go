package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/client"
	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/firmware/security"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// renewDevice is a client under test for renewal.
type renewDevice struct {
	client *client.Client
	link   *link.Manager
	logs   *syncBuffer
}

type renewOpts struct {
	identity client.Identity
	enroll   bool // configure an enrollment endpoint
	backoff  link.Backoff
}

func startRenewDevice(t *testing.T, srv *clienttest.Server, clk *hal.ManualClock, o renewOpts) *renewDevice {
	t.Helper()
	backoff := link.Backoff{Base: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	r := rand.New(rand.NewPCG(1, 2))
	lm, err := link.New(link.Config{Endpoints: []string{srv.SessionAddr()}, Clock: clk, Rand: r, Backoff: backoff})
	if err != nil {
		t.Fatal(err)
	}
	var em *link.Manager
	if o.enroll {
		if em, err = link.New(link.Config{Endpoints: []string{srv.EnrollAddr()}, Clock: clk, Rand: r, Backoff: backoff}); err != nil {
			t.Fatal(err)
		}
	}
	d := &renewDevice{link: lm, logs: &syncBuffer{}}
	d.client, err = client.New(client.Config{
		Link: lm, EnrollLink: em, Identity: o.identity, Apps: &fakeApps{}, Root: srv.Root(),
		HeartbeatInterval: time.Hour, MetricsInterval: -1, Clock: clk, RenewBackoff: o.backoff, RenewJitter: -1,
		Logger: slog.New(slog.NewTextHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- d.client.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-errc
	})
	return d
}

// testClock returns a fake clock and an authority that issues by it.
func testClock(t *testing.T) (*hal.ManualClock, *pki.Authority) {
	t.Helper()
	clk := hal.NewManualClock(time.Now().Truncate(time.Second))
	ca, err := pki.NewAuthority(pki.AuthorityOptions{Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return clk, ca
}

// exactCert issues a device certificate valid from notBefore for exactly
// lifetime (pki backdates NotBefore, which would stretch a short lifetime).
func exactCert(t *testing.T, ca *pki.Authority, pub ed25519.PublicKey, id string, notBefore time.Time, lifetime time.Duration) [][]byte {
	return exactCertFrom(t, ca.DeviceCA, pub, id, notBefore, lifetime)
}

// exactCertFrom is exactCert with any issuing CA, to build certificates
// the platform's device CA would never issue.
func exactCertFrom(t *testing.T, issuer *pki.CA, pub ed25519.PublicKey, id string, notBefore time.Time, lifetime time.Duration) [][]byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(notBefore.UnixNano()),
		Subject:               pkix.Name{CommonName: id},
		URIs:                  []*url.URL{pki.DeviceURI(id)},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(lifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, issuer.Cert, pub, issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{der, issuer.Cert.Raw}
}

// eventually polls cond until it holds, failing the test after 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// nextTimer waits until a timer is due within limit and returns its delay.
func nextTimer(t *testing.T, clk *hal.ManualClock, limit time.Duration) time.Duration {
	t.Helper()
	var d time.Duration
	eventually(t, "a timer due within "+limit.String(), func() bool {
		var ok bool
		d, ok = clk.Next()
		return ok && d <= limit
	})
	return d
}

func leafOf(t *testing.T, id client.Identity) *x509.Certificate {
	t.Helper()
	cert, err := id.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestRenewalBeforeExpiry: a device with a 3-minute certificate asks for a
// new one at two minutes, stores it so that it survives a reboot, and
// presents it at its next handshake.
func TestRenewalBeforeExpiry(t *testing.T) {
	clk, ca := testClock(t)
	t0 := clk.Now()
	srv := startServer(t, clienttest.Options{Authority: ca, RenewLifetime: 3 * time.Minute})
	chip, err := flash.NewMem(flash.Geometry{PageSize: 256, BlockSize: 4096, Blocks: 16})
	if err != nil {
		t.Fatal(err)
	}
	openSec := func() *security.Manager {
		store, err := flash.Mount(chip, flash.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sec, err := security.Open(security.Config{Store: store, Rand: rand.NewChaCha8([32]byte{7}), Clock: clk.Now, DeviceType: "esp32"})
		if err != nil {
			t.Fatal(err)
		}
		return sec
	}
	sec := openSec()
	const id = "esp32-000001"
	if err := sec.Enroll(&protocol.EnrollResponse{
		DeviceID: id, CertChain: exactCert(t, ca, sec.PublicKey(), id, t0, 3*time.Minute),
		SigningKey: srv.SigningKey().Public().(ed25519.PublicKey),
	}); err != nil {
		t.Fatal(err)
	}
	oldSerial := leafOf(t, sec).SerialNumber
	d := startRenewDevice(t, srv, clk, renewOpts{identity: sec})
	ctx := waitCtx(t)
	peer, err := srv.WaitPeer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := peer.Certificate.SerialNumber; got.Cmp(oldSerial) != 0 {
		t.Fatalf("first session serial: got %v, want %v", got, oldSerial)
	}

	// The renewal is scheduled at two thirds of the lifetime.
	if got, want := nextTimer(t, clk, 10*time.Minute), 2*time.Minute; got != want {
		t.Fatalf("renewal scheduled in %v, want %v", got, want)
	}
	clk.Advance(2*time.Minute - time.Second)
	if n := srv.RenewRequests.Load(); n != 0 {
		t.Fatalf("renew requests before 2/3 of the lifetime: got %d, want 0", n)
	}
	clk.Advance(time.Second)
	eventually(t, "renewal", func() bool { return d.client.Status().Renewals == 1 })
	rens := srv.Renewals()
	if len(rens) != 1 {
		t.Fatalf("renew requests: got %d, want 1", len(rens))
	}
	if got, want := rens[0].At.Sub(t0), 2*time.Minute; got != want {
		t.Errorf("renewal requested at +%v, want +%v", got, want)
	}
	newSerial := rens[0].Serial
	if newSerial == nil || newSerial.Cmp(oldSerial) == 0 {
		t.Fatalf("issued serial: got %v, want a new one", newSerial)
	}
	if got := leafOf(t, sec).SerialNumber; got.Cmp(newSerial) != 0 {
		t.Errorf("stored serial: got %v, want %v", got, newSerial)
	}
	if got, want := leafOf(t, sec).NotAfter, t0.Add(5*time.Minute); !got.Equal(want) {
		t.Errorf("new NotAfter: got %v, want %v", got, want)
	}

	// Reboot: the flash holds the new certificate.
	if got := leafOf(t, openSec()).SerialNumber; got.Cmp(newSerial) != 0 {
		t.Errorf("serial after reboot: got %v, want %v", got, newSerial)
	}

	// The next handshake presents the new certificate.
	peer.Drop()
	eventually(t, "session loss", func() bool { return d.link.Status().Failures > 0 })
	clk.Advance(nextTimer(t, clk, time.Second))
	eventually(t, "second session", func() bool { p := srv.Peer(id); return p != nil && p != peer })
	if got := srv.Peer(id).Certificate.SerialNumber; got.Cmp(newSerial) != 0 {
		t.Errorf("second session serial: got %v, want %v", got, newSerial)
	}
	if st := d.client.Status(); st.RenewalRequests != 1 || st.RenewalsRejected != 0 || st.CertificateExpired {
		t.Errorf("status: got %+v, want one request, nothing rejected, not expired", st)
	}
}

// TestRenewalRefusesForeignCertificate: chains for another key, another
// device, from another authority or expiring no later than the current
// certificate are refused and the current certificate is kept.
func TestRenewalRefusesForeignCertificate(t *testing.T) {
	other, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	chainOf := func(c *pki.Certificate, err error) ([][]byte, *protocol.Error) {
		if err != nil {
			return nil, &protocol.Error{Code: protocol.CodeInternal, Text: err.Error()}
		}
		return c.DER(), nil
	}
	tests := []struct {
		name  string
		issue func(ca *pki.Authority, id string, csr *x509.CertificateRequest) ([][]byte, *protocol.Error)
		want  string
	}{
		{"another key", func(ca *pki.Authority, id string, _ *x509.CertificateRequest) ([][]byte, *protocol.Error) {
			return chainOf(ca.IssueDevice(otherKey.Public(), pki.DeviceOptions{DeviceID: id, Lifetime: time.Hour}))
		}, "not for the device key"},
		{"another device id", func(ca *pki.Authority, _ string, csr *x509.CertificateRequest) ([][]byte, *protocol.Error) {
			return chainOf(ca.IssueDevice(csr.PublicKey, pki.DeviceOptions{DeviceID: "esp32-999999", Lifetime: time.Hour}))
		}, "esp32-999999"},
		{"another authority", func(_ *pki.Authority, id string, csr *x509.CertificateRequest) ([][]byte, *protocol.Error) {
			return chainOf(other.IssueDevice(csr.PublicKey, pki.DeviceOptions{DeviceID: id, Lifetime: time.Hour}))
		}, "unknown authority"},
		// A compromised gateway CA (same root) cannot mint device identities:
		// its certificate allows server authentication only.
		{"the gateway CA", func(ca *pki.Authority, id string, csr *x509.CertificateRequest) ([][]byte, *protocol.Error) {
			return exactCertFrom(t, ca.GatewayCA, csr.PublicKey.(ed25519.PublicKey), id, ca.Clock(), time.Hour), nil
		}, "key usage"},
		{"no later expiry", func(ca *pki.Authority, id string, csr *x509.CertificateRequest) ([][]byte, *protocol.Error) {
			return chainOf(ca.IssueDevice(csr.PublicKey, pki.DeviceOptions{DeviceID: id, Lifetime: time.Second}))
		}, "not after the current one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk, ca := testClock(t)
			srv := startServer(t, clienttest.Options{Authority: ca, DeviceLifetime: 3 * time.Minute,
				Renew: func(id string, csr *x509.CertificateRequest) ([][]byte, *protocol.Error) {
					return tt.issue(ca, id, csr)
				}})
			ident := clienttest.NewMemIdentity("esp32")
			d := startRenewDevice(t, srv, clk, renewOpts{identity: ident, enroll: true})
			ctx := waitCtx(t)
			peer, err := srv.AnyPeer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			before := leafOf(t, ident)
			clk.Advance(nextTimer(t, clk, 10*time.Minute))
			eventually(t, "refusal", func() bool { return d.client.Status().RenewalsRejected == 1 })
			if got := leafOf(t, ident); !got.Equal(before) {
				t.Errorf("certificate changed to serial %v, want %v kept", got.SerialNumber, before.SerialNumber)
			}
			if got := ident.DeviceID(); got != peer.DeviceID {
				t.Errorf("device id: got %q, want %q", got, peer.DeviceID)
			}
			if st := d.client.Status(); st.Renewals != 0 || st.RenewalRequests != 1 {
				t.Errorf("status: got %d renewals, %d requests, want 0 and 1", st.Renewals, st.RenewalRequests)
			}
			if logs := d.logs.String(); !strings.Contains(logs, tt.want) {
				t.Errorf("logs lack %q:\n%s", tt.want, logs)
			}
		})
	}
}

// TestRenewalRefusedBacksOff: a gateway that refuses every renewal is asked
// again with exponential backoff, never in a loop, over ten simulated
// minutes.
func TestRenewalRefusedBacksOff(t *testing.T) {
	clk, ca := testClock(t)
	srv := startServer(t, clienttest.Options{Authority: ca, DeviceLifetime: 3 * time.Minute, RefuseRenewal: true})
	ident := clienttest.NewMemIdentity("esp32")
	backoff := link.Backoff{Base: 10 * time.Second, Max: 80 * time.Second}
	d := startRenewDevice(t, srv, clk, renewOpts{identity: ident, enroll: true, backoff: backoff})
	ctx := waitCtx(t)
	if _, err := srv.AnyPeer(ctx); err != nil {
		t.Fatal(err)
	}
	before := leafOf(t, ident)
	start, limit := clk.Now(), 10*time.Minute
	nextTimer(t, clk, limit) // the renewal timer is armed
	for n := uint64(0); ; n++ {
		eventually(t, "the refusal to be handled", func() bool {
			st := d.client.Status()
			return st.RenewalRequests == n && st.RenewalsRefused == n
		})
		wait, ok := clk.Next()
		if !ok || clk.Now().Add(wait).Sub(start) > limit {
			break
		}
		if n > 20 {
			t.Fatalf("more than %d renewal requests in %v", n, limit)
		}
		clk.Advance(wait)
	}
	rens := srv.Renewals()
	// RenewAt is 20s after issuance (3 minutes plus the 5-minute backdate,
	// two thirds of it); then 10, 20, 40, 80, 80, ... seconds apart.
	var want []time.Duration
	for at, gap := pki.RenewAt(before).Sub(start), backoff.Base; at <= limit; at, gap = at+gap, min(2*gap, backoff.Max) {
		want = append(want, at)
	}
	if len(rens) != len(want) {
		t.Fatalf("renew requests in %v: got %d, want %d", limit, len(rens), len(want))
	}
	for i, r := range rens {
		if got := r.At.Sub(start); got != want[i] {
			t.Errorf("request %d at +%v, want +%v", i, got, want[i])
		}
		if r.Refused != protocol.CodeRefused {
			t.Errorf("request %d: got refusal %v, want refused", i, r.Refused)
		}
	}
	if got := leafOf(t, ident); !got.Equal(before) {
		t.Errorf("certificate changed after refusals")
	}
	if logs := d.logs.String(); !strings.Contains(logs, "certificate renewal refused") || !strings.Contains(logs, "code=refused") {
		t.Errorf("refusal not logged with its code:\n%s", logs)
	}
}

// TestExpiredCertificateFallsBack: once the certificate expired without a
// renewal, a device with an enrollment endpoint enrolls again; one without
// keeps retrying and reports the expiry.
func TestExpiredCertificateFallsBack(t *testing.T) {
	for _, enroll := range []bool{true, false} {
		name := map[bool]string{true: "reenroll", false: "no enrollment endpoint"}[enroll]
		t.Run(name, func(t *testing.T) {
			clk, ca := testClock(t)
			srv := startServer(t, clienttest.Options{Authority: ca, DeviceLifetime: 3 * time.Minute, RefuseRenewal: true})
			ident := clienttest.NewMemIdentity("esp32")
			if !enroll {
				// Enrolled beforehand; the client knows only session endpoints.
				cert, err := ca.IssueDevice(ident.Key().Public(), pki.DeviceOptions{DeviceID: "esp32-000042", Lifetime: 3 * time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				if err := ident.Enroll(&protocol.EnrollResponse{DeviceID: "esp32-000042",
					CertChain: cert.DER(), SigningKey: make([]byte, 32)}); err != nil {
					t.Fatal(err)
				}
			}
			d := startRenewDevice(t, srv, clk, renewOpts{identity: ident, enroll: enroll, backoff: link.Backoff{Base: time.Minute, Max: time.Minute}})
			ctx := waitCtx(t)
			peer, err := srv.AnyPeer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			firstID := ident.DeviceID()
			clk.Advance(4 * time.Minute) // past NotAfter
			peer.Drop()
			eventually(t, "session loss", func() bool { return d.link.Status().Failures > 0 })
			if enroll {
				for srv.Enrolled() < 2 {
					clk.Advance(nextTimer(t, clk, time.Second))
					eventually(t, "an attempt", func() bool { return srv.Enrolled() == 2 || clk.Pending() > 1 })
				}
				// The reconnection may wait out a backoff timer first,
				// depending on when the enrollment session ended.
				deadline := time.Now().Add(10 * time.Second)
				for srv.Peer(ident.DeviceID()) == nil {
					if time.Now().After(deadline) {
						t.Fatal("timed out waiting for a session with the new identity")
					}
					if d, ok := clk.Next(); ok && d <= time.Minute {
						clk.Advance(d)
					}
					time.Sleep(5 * time.Millisecond)
				}
				if ident.DeviceID() == firstID {
					t.Errorf("device id after re-enrollment: got %q, want a new one", firstID)
				}
				if st := d.client.Status(); st.Reenrollments < 1 || st.CertificateExpired {
					t.Errorf("status: got %d re-enrollments, expired %v, want >= 1 and false", st.Reenrollments, st.CertificateExpired)
				}
				return
			}
			for range 5 {
				clk.Advance(nextTimer(t, clk, time.Second))
			}
			eventually(t, "expiry reported", func() bool { return d.client.Status().CertificateExpired })
			if got := srv.Enrolled(); got != 0 {
				t.Errorf("enrollments: got %d, want 0", got)
			}
			if got := srv.Sessions.Load(); got != 1 {
				t.Errorf("sessions: got %d, want 1 (the gateway refuses an expired certificate)", got)
			}
			if !strings.Contains(d.logs.String(), "device certificate expired") {
				t.Errorf("expiry not logged:\n%s", d.logs.String())
			}
		})
	}
}

// TestRenewalTimeoutRetries: a request the gateway never answers expires
// after RenewTimeout and is sent again, once, without waiting longer than
// the backoff already elapsed.
func TestRenewalTimeoutRetries(t *testing.T) {
	clk, ca := testClock(t)
	srv := startServer(t, clienttest.Options{Authority: ca, DeviceLifetime: 3 * time.Minute, IgnoreRenewal: true})
	ident := clienttest.NewMemIdentity("esp32")
	d := startRenewDevice(t, srv, clk, renewOpts{identity: ident, enroll: true,
		backoff: link.Backoff{Base: 10 * time.Second, Max: time.Minute}})
	ctx := waitCtx(t)
	if _, err := srv.AnyPeer(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(nextTimer(t, clk, 10*time.Minute))
	eventually(t, "first request", func() bool { return srv.RenewRequests.Load() == 1 })
	if got := nextTimer(t, clk, 10*time.Minute); got != time.Minute {
		t.Fatalf("next renewal timer in %v, want the 1m timeout", got)
	}
	clk.Advance(time.Minute - time.Second)
	if n := srv.RenewRequests.Load(); n != 1 {
		t.Fatalf("requests before the timeout: got %d, want 1", n)
	}
	clk.Advance(time.Second)
	eventually(t, "retry after timeout", func() bool { return srv.RenewRequests.Load() == 2 })
	if st := d.client.Status(); st.RenewalTimeouts != 1 || st.RenewalRequests != 2 {
		t.Errorf("status: got %d timeouts, %d requests, want 1 and 2", st.RenewalTimeouts, st.RenewalRequests)
	}
}
