package gateway_test

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// TestPreRegisteredDeviceConnects checks that a Device applied with its
// public key connects without enrollment, and is marked Connected.
func TestPreRegisteredDeviceConnects(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	key := newKey(t)
	dev, cert := p.preRegister("factory-1", key)
	d, err := p.dial(gw.session, key, cert)
	if err != nil {
		t.Fatal(err)
	}
	d.announce()
	p.waitDevices("the pre-registered device connected", 1, func(got *wasmbedv1.Device) bool {
		return got.Name == dev.Name && got.Status.Phase == wasmbedv1.DevicePhaseConnected && got.Status.Gateway == "gw-0"
	})
}

func TestUnknownDeviceRefused(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	key := newKey(t)
	d, err := p.dial(gw.session, key, p.deviceCert("stranger", key))
	if err != nil {
		t.Fatal(err)
	}
	env := d.next()
	if e, ok := env.Message.(*protocol.Error); !ok || e.Code != protocol.CodeUnauthorized {
		t.Fatalf("got %#v, want Error unauthorized", env.Message)
	}
	if _, err := d.read(); err == nil {
		t.Error("the session stayed open")
	}
	if n := gw.counter("wasmbed_gateway_sessions_refused_total", map[string]string{"reason": "UnknownDevice"}); n != 1 {
		t.Errorf("sessions_refused_total{UnknownDevice} = %v, want 1", n)
	}
	if devs := p.devices(); len(devs) != 0 {
		t.Errorf("a refused device left %d Devices", len(devs))
	}
}

// TestCertificatesFromOutsideRefused checks both ends refuse a certificate
// minted outside the platform's signers: a device certificate from another
// authority, or from the right root's gateway CA; a gateway certificate from
// another authority, or from the device CA.
func TestCertificatesFromOutsideRefused(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	rogue, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	p.preRegister("dev-1", key)

	t.Run("device certificate from another authority", func(t *testing.T) {
		c, err := rogue.IssueDevice(key.Public(), pki.DeviceOptions{DeviceID: "dev-1"})
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := pki.NewTLSCertificate(key, c.Leaf, c.Chain...)
		if d, err := p.dial(gw.session, key, &cert); err == nil {
			if _, err := d.read(); err == nil {
				t.Fatal("the gateway accepted a device certificate from another authority")
			}
		}
	})
	t.Run("device certificate from the gateway CA", func(t *testing.T) {
		cert := mintLeaf(t, p.ca.GatewayCA, key, "dev-1", x509.ExtKeyUsageClientAuth)
		if d, err := p.dial(gw.session, key, cert); err == nil {
			if _, err := d.read(); err == nil {
				t.Fatal("the gateway accepted a device certificate from the gateway CA")
			}
		}
	})
	eventually(t, 10*time.Second, "two failed handshakes counted", func() (bool, string) {
		n := gw.counter("wasmbed_gateway_handshakes_total", map[string]string{"listener": "session", "result": "failed"})
		return n >= 2, fmt.Sprint(n)
	})

	// The other way round: devices refuse gateways whose certificate the
	// platform did not issue through its gateway CA.
	for _, tt := range []struct {
		name string
		cert func() tls.Certificate
	}{
		{"gateway certificate from another authority", func() tls.Certificate {
			c, err := rogue.IssueGateway(pki.GatewayOptions{Name: "gw-x", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
			if err != nil {
				t.Fatal(err)
			}
			cert, _ := c.TLSCertificate()
			return cert
		}},
		{"gateway certificate from the device CA", func() tls.Certificate {
			return *mintLeaf(t, p.ca.DeviceCA, newKey(t), "gw-x", x509.ExtKeyUsageServerAuth)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_ = tls.Server(c, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{tt.cert()}}).Handshake()
			}()
			if _, err := p.dial(ln.Addr().String(), nil, nil); err == nil {
				t.Fatal("the device accepted the gateway")
			}
		})
	}
}

// mintLeaf signs a leaf certificate for key with ca directly, bypassing the
// checks of package pki, as an attacker holding a CA key would.
func mintLeaf(t *testing.T, ca *pki.CA, key ed25519.PrivateKey, id string, usage x509.ExtKeyUsage) *tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, URIs: []*url.URL{pki.DeviceURI(id)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}
}

// TestRevocationCutsLiveSession revokes, then deletes, devices with live
// sessions: each session ends with Disconnect(revoked) and the device may
// not connect again.
func TestRevocationCutsLiveSession(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	for _, how := range []string{"revoke", "delete"} {
		func() {
			key := newKey(t)
			dev, cert := p.preRegister("dev-"+how, key)
			d, err := p.dial(gw.session, key, cert)
			if err != nil {
				t.Fatal(err)
			}
			d.announce()
			p.waitDevices("connected", 1, func(got *wasmbedv1.Device) bool {
				return got.Name == dev.Name && got.Status.Phase == wasmbedv1.DevicePhaseConnected
			})
			start := time.Now()
			switch how {
			case "revoke":
				patch := client.MergeFrom(dev.DeepCopy())
				dev.Spec.Revoked = true
				if err := env.Client.Patch(t.Context(), dev, patch); err != nil {
					t.Fatal(err)
				}
			case "delete":
				if err := env.Client.Delete(t.Context(), dev); err != nil {
					t.Fatal(err)
				}
			}
			if m, ok := d.next().Message.(*protocol.Disconnect); !ok || m.Reason != protocol.DisconnectRevoked {
				t.Fatalf("got %#v, want Disconnect revoked", m)
			}
			t.Logf("session closed %v after the %s", time.Since(start).Round(time.Millisecond), how)
			if _, err := d.read(); !errors.Is(err, io.EOF) && err == nil {
				t.Error("the session stayed open")
			}
			if how == "revoke" {
				again, err := p.dial(gw.session, key, cert)
				if err == nil {
					if _, err := again.read(); err == nil {
						t.Error("a revoked device got a session again")
					}
				}
			}
		}()
	}
}

// TestEnrollmentWindow checks enrollment outside the window is refused and
// creates nothing, inside it works, and a window with a token refuses a
// wrong one.
func TestEnrollmentWindow(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	enroll := func(token []byte) protocol.Envelope {
		key := newKey(t)
		d, err := p.dial(gw.enroll, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		sk, _ := ecdh.X25519().GenerateKey(rand.Reader)
		req := enrollRequest(t, d, sk.PublicKey().Bytes())
		req.PairingToken = token
		d.send(req)
		return d.next()
	}
	env := enroll(nil)
	if e, ok := env.Message.(*protocol.Error); !ok || e.Code != protocol.CodeUnauthorized {
		t.Fatalf("outside the window: got %#v, want Error unauthorized", env.Message)
	}
	if devs := p.devices(); len(devs) != 0 {
		t.Fatalf("enrollment outside the window created %d Devices", len(devs))
	}
	if n := gw.counter("wasmbed_gateway_enrollments_total", map[string]string{"result": "PairingClosed"}); n != 1 {
		t.Errorf("enrollments_total{PairingClosed} = %v, want 1", n)
	}

	p.openPairing(time.Minute, []byte("s3cret"))
	env = enroll([]byte("guess"))
	if e, ok := env.Message.(*protocol.Error); !ok || e.Code != protocol.CodeUnauthorized {
		t.Fatalf("wrong token: got %#v, want Error unauthorized", env.Message)
	}
	env = enroll([]byte("s3cret"))
	resp, ok := env.Message.(*protocol.EnrollResponse)
	if !ok {
		t.Fatalf("right token: got %#v, want EnrollResponse", env.Message)
	}
	devs := p.devices()
	if len(devs) != 1 || devs[0].Spec.DeviceID != resp.DeviceID || devs[0].Status.Phase != wasmbedv1.DevicePhaseEnrolling {
		t.Fatalf("after enrollment: Devices %+v, want one Enrolling with id %s", devs, resp.DeviceID)
	}
	if len(resp.CertChain) != 2 {
		t.Errorf("certificate chain of %d certificates, want leaf and device CA", len(resp.CertChain))
	}
}

// TestEnrollmentProofs sends enrollment requests whose proofs fail: a
// sealing-key proof made for another connection (a replay), and a CSR for
// another key. Each is refused and creates no Device.
func TestEnrollmentProofs(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	p.openPairing(time.Minute, nil)
	sk, _ := ecdh.X25519().GenerateKey(rand.Reader)

	t.Run("sealing key proof of another connection", func(t *testing.T) {
		key := newKey(t)
		first, err := p.dial(gw.enroll, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		captured := enrollRequest(t, first, sk.PublicKey().Bytes())
		_ = first.conn.Close()
		// An attacker who knows the device's public key replays the
		// request on a connection of its own.
		second, err := p.dial(gw.enroll, newKey(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		second.send(captured)
		if e, ok := second.next().Message.(*protocol.Error); !ok || e.Code != protocol.CodeRefused {
			t.Fatalf("got %#v, want Error refused", e)
		}
	})
	t.Run("certificate request for another key", func(t *testing.T) {
		d, err := p.dial(gw.enroll, newKey(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		req := enrollRequest(t, d, sk.PublicKey().Bytes())
		other, err := pki.NewDeviceCSR(newKey(t), "")
		if err != nil {
			t.Fatal(err)
		}
		req.CSR = other
		d.send(req)
		if e, ok := d.next().Message.(*protocol.Error); !ok || e.Code != protocol.CodeRefused {
			t.Fatalf("got %#v, want Error refused", e)
		}
	})
	if devs := p.devices(); len(devs) != 0 {
		t.Errorf("refused enrollments created %d Devices", len(devs))
	}
	if n := gw.counter("wasmbed_gateway_enrollments_total", map[string]string{"result": "BadSealingKeyProof"}); n != 1 {
		t.Errorf("enrollments_total{BadSealingKeyProof} = %v, want 1", n)
	}
	if n := gw.counter("wasmbed_gateway_enrollments_total", map[string]string{"result": "BadCSR"}); n != 1 {
		t.Errorf("enrollments_total{BadCSR} = %v, want 1", n)
	}
}

// TestHeartbeatDeadline leaves a device silent past the deadline: its
// session ends and the Device becomes Unreachable, with an Event.
func TestHeartbeatDeadline(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", func(o *gateway.Options) { o.UnreachableAfter = 500 * time.Millisecond })
	key := newKey(t)
	dev, cert := p.preRegister("quiet", key)
	d, err := p.dial(gw.session, key, cert)
	if err != nil {
		t.Fatal(err)
	}
	d.announce()
	if m, ok := d.next().Message.(*protocol.Disconnect); !ok || m.Reason != protocol.DisconnectTimeout {
		t.Fatalf("got %#v, want Disconnect timeout", m)
	}
	got := p.waitDevices("unreachable", 1, func(got *wasmbedv1.Device) bool {
		return got.Name == dev.Name && got.Status.Phase == wasmbedv1.DevicePhaseUnreachable
	})
	if c := apimeta.FindStatusCondition(got[0].Status.Conditions, wasmbedv1.ConditionConnected); c == nil || c.Status != "False" || c.Reason != "MissedHeartbeats" {
		t.Errorf("Connected condition %+v, want False MissedHeartbeats", c)
	}
	eventually(t, 30*time.Second, "an Unreachable event", func() (bool, string) {
		var evs corev1.EventList
		if err := env.Client.List(t.Context(), &evs, client.InNamespace(p.ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Reason == "Unreachable" && e.InvolvedObject.Name == dev.Name {
				return true, ""
			}
		}
		return false, "no event"
	})
}

// TestStatusContradictingLiveSessionIsRewritten: when the Device says
// Unreachable while the replica holds the device's live session — what a
// previous session's outcome, written after the new session's reconcile
// read a stale cache, leaves behind — the replica writes Connected again.
func TestStatusContradictingLiveSessionIsRewritten(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	key := newKey(t)
	dev, cert := p.preRegister("flapper", key)
	d, err := p.dial(gw.session, key, cert)
	if err != nil {
		t.Fatal(err)
	}
	d.announce()
	got := p.waitDevices("connected", 1, func(got *wasmbedv1.Device) bool {
		return got.Name == dev.Name && got.Status.Phase == wasmbedv1.DevicePhaseConnected
	})
	stale := got[0].DeepCopy()
	stale.Status.Phase = wasmbedv1.DevicePhaseUnreachable
	apimeta.SetStatusCondition(&stale.Status.Conditions, metav1.Condition{Type: wasmbedv1.ConditionConnected,
		Status: metav1.ConditionFalse, Reason: "ConnectionLost", Message: "session with gateway gw-0 ended"})
	if err := env.Client.Status().Update(t.Context(), stale); err != nil {
		t.Fatal(err)
	}
	p.waitDevices("connected again", 1, func(got *wasmbedv1.Device) bool {
		return got.Name == dev.Name && got.Status.Phase == wasmbedv1.DevicePhaseConnected && got.Status.Gateway == "gw-0"
	})
}

// TestReconnectToAnotherReplica connects a device to one replica, then
// (its old connection still open, as after a network split) to another:
// the first replica closes its copy with Disconnect(replaced).
func TestReconnectToAnotherReplica(t *testing.T) {
	p := newPlatform(t)
	a := p.startGateway("gw-a", nil)
	b := p.startGateway("gw-b", nil)
	key := newKey(t)
	dev, cert := p.preRegister("roamer", key)
	first, err := p.dial(a.session, key, cert)
	if err != nil {
		t.Fatal(err)
	}
	first.announce()
	p.waitDevices("on gw-a", 1, func(got *wasmbedv1.Device) bool {
		return got.Name == dev.Name && got.Status.Gateway == "gw-a"
	})
	second, err := p.dial(b.session, key, cert)
	if err != nil {
		t.Fatal(err)
	}
	second.announce()
	env := first.next()
	if m, ok := env.Message.(*protocol.Disconnect); !ok || m.Reason != protocol.DisconnectReplaced {
		t.Fatalf("old session: got %#v, want Disconnect replaced", env.Message)
	}
	got := p.waitDevices("on gw-b", 1, func(got *wasmbedv1.Device) bool {
		return got.Name == dev.Name && got.Status.Gateway == "gw-b" && got.Status.Phase == wasmbedv1.DevicePhaseConnected
	})
	_ = got
	eventually(t, 10*time.Second, "gw-a to drop the session", func() (bool, string) {
		return a.Sessions() == 0 && b.Sessions() == 1, ""
	})
	// gw-a wrote nothing after the takeover: the Device still says gw-b.
	time.Sleep(200 * time.Millisecond)
	p.waitDevices("still on gw-b", 1, func(got *wasmbedv1.Device) bool {
		return got.Name == dev.Name && got.Status.Gateway == "gw-b" && got.Status.Phase == wasmbedv1.DevicePhaseConnected
	})
}

// TestBadFrameEndsOnlyItsSession sends a malformed frame on one device's
// session: that session ends after an Error, the other device's session
// and application state are untouched.
func TestBadFrameEndsOnlyItsSession(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	goodKey, badKey := newKey(t), newKey(t)
	goodDev, goodCert := p.preRegister("good", goodKey)
	_, badCert := p.preRegister("bad", badKey)
	good, err := p.dial(gw.session, goodKey, goodCert)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := p.dial(gw.session, badKey, badCert)
	if err != nil {
		t.Fatal(err)
	}
	good.announce()
	bad.announce()
	p.waitDevices("both connected", 2, func(got *wasmbedv1.Device) bool {
		return got.Status.Phase == wasmbedv1.DevicePhaseConnected
	})
	before := &wasmbedv1.Device{}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(goodDev), before); err != nil {
		t.Fatal(err)
	}
	if err := bad.w.WriteFrame([]byte{0x84, 0x01, 0x03, 0x07, 0xa1, 0x01}); err != nil { // a truncated map
		t.Fatal(err)
	}
	if e, ok := bad.next().Message.(*protocol.Error); !ok || e.Code != protocol.CodeMalformed {
		t.Fatalf("got %#v, want Error malformed", e)
	}
	p.waitDevices("the bad device disconnected", 1, func(got *wasmbedv1.Device) bool {
		return got.Name == "bad" && got.Status.Phase == wasmbedv1.DevicePhaseDisconnected
	})
	id := good.send(&protocol.Heartbeat{})
	for {
		env, err := good.read()
		if err != nil {
			t.Fatalf("the good session: %v", err)
		}
		if env.MessageID == id {
			break
		}
	}
	after := &wasmbedv1.Device{}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(goodDev), after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the good Device was written (%s → %s)", before.ResourceVersion, after.ResourceVersion)
	}
	if n := gw.counter("wasmbed_gateway_frames_rejected_total", map[string]string{"reason": "malformed"}); n != 1 {
		t.Errorf("frames_rejected_total{malformed} = %v, want 1", n)
	}
}

// TestSessionResumesOnAnotherReplica checks that the replicas share their
// session-ticket keys through the Secret: a ticket one replica issued
// resumes the session on the other.
func TestSessionResumesOnAnotherReplica(t *testing.T) {
	p := newPlatform(t)
	a := p.startGateway("gw-a", nil)
	b := p.startGateway("gw-b", nil)
	key := newKey(t)
	_, cert := p.preRegister("roamer", key)
	cache := tls.NewLRUClientSessionCache(4)
	dial := func(addr string) tls.ConnectionState {
		cfg, err := pki.ClientTLSConfig(pki.ClientOptions{Root: p.ca.Root.Cert, GatewayCA: p.ca.GatewayCA.Cert, Certificate: cert,
			ServerName: "127.0.0.1", SessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Read once so that the client takes in the server's session ticket.
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, _ = c.Read(make([]byte, 1))
		return c.ConnectionState()
	}
	if cs := dial(a.session); cs.DidResume {
		t.Fatal("the first handshake resumed")
	}
	if cs := dial(b.session); !cs.DidResume {
		t.Fatal("a ticket from gw-a did not resume on gw-b: the replicas do not share their ticket keys")
	}
	var sec corev1.Secret
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: p.sys, Name: wasmbedv1.TicketKeysSecret}, &sec); err != nil {
		t.Fatalf("the shared ticket keys: %v", err)
	}
	keys, err := pki.ParseTicketKeys(sec.Data[gateway.TicketKeysSecretKey])
	if err != nil || len(keys) != 1 {
		t.Fatalf("ticket keys %v, %v: want one key shared by both replicas", keys, err)
	}
}

// TestCertificateNearExpiry connects two devices, one of them with a
// certificate in the last sixth of its lifetime (as after failed renewals):
// only that one gets a CertificateExpiring Event, once, and the gauge
// counts it.
func TestCertificateNearExpiry(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", func(o *gateway.Options) { o.CertificateCheckPeriod = 100 * time.Millisecond })

	// An authority whose clock is 23h50m behind issues a 24-hour
	// certificate with ten minutes left.
	past := *p.ca
	past.Clock = func() time.Time { return time.Now().Add(-23*time.Hour - 50*time.Minute) }
	oldKey, freshKey := newKey(t), newKey(t)
	oldDev, _ := p.preRegister("old-cert", oldKey)
	oldLeaf, err := past.IssueDevice(oldKey.Public(), pki.DeviceOptions{DeviceID: "old-cert", Lifetime: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	oldCert, err := pki.NewTLSCertificate(oldKey, oldLeaf.Leaf, oldLeaf.Chain...)
	if err != nil {
		t.Fatal(err)
	}
	freshDev, freshCert := p.preRegister("fresh-cert", freshKey)
	for _, c := range []struct {
		key  ed25519.PrivateKey
		cert *tls.Certificate
	}{{oldKey, &oldCert}, {freshKey, freshCert}} {
		d, err := p.dial(gw.session, c.key, c.cert)
		if err != nil {
			t.Fatal(err)
		}
		d.announce()
	}
	p.waitDevices("both connected", 2, func(got *wasmbedv1.Device) bool {
		return got.Status.Phase == wasmbedv1.DevicePhaseConnected
	})
	expiringEvents := func() map[string]int {
		var evs corev1.EventList
		if err := env.Client.List(t.Context(), &evs, client.InNamespace(p.ns)); err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, e := range evs.Items {
			if e.Reason == "CertificateExpiring" {
				n[e.InvolvedObject.Name] += int(max(e.Count, 1))
				if e.Series != nil {
					n[e.InvolvedObject.Name] += int(e.Series.Count) - 1
				}
			}
		}
		return n
	}
	eventually(t, 30*time.Second, "a CertificateExpiring event for the old certificate", func() (bool, string) {
		n := expiringEvents()
		return n[oldDev.Name] > 0, fmt.Sprint(n)
	})
	// Several more checks run: still one Event, and none for the fresh one.
	time.Sleep(time.Second)
	if n := expiringEvents(); n[oldDev.Name] != 1 || n[freshDev.Name] != 0 {
		t.Errorf("CertificateExpiring events by device: %v; want exactly one for %s", n, oldDev.Name)
	}
	if v := gw.counter("wasmbed_gateway_certificates_expiring", nil); v != 1 {
		t.Errorf("wasmbed_gateway_certificates_expiring = %v, want 1", v)
	}
}

// TestLastSeenWrittenOnlyWhenHeard: lastSeen is when the device was last
// heard, so a device silent for several lastSeen periods (within its
// heartbeat deadline) costs no Device writes beyond the one of its
// connection; one that speaks again gets one refresh.
func TestLastSeenWrittenOnlyWhenHeard(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", func(o *gateway.Options) {
		o.LastSeenPeriod, o.UnreachableAfter = time.Second, time.Minute
	})
	key := newKey(t)
	dev, cert := p.preRegister("quiet-sensor", key)
	d, err := p.dial(gw.session, key, cert)
	if err != nil {
		t.Fatal(err)
	}
	d.announce()
	p.waitDevices("connected", 1, func(got *wasmbedv1.Device) bool {
		return got.Name == dev.Name && got.Status.Phase == wasmbedv1.DevicePhaseConnected && got.Status.LastSeen != nil
	})
	writes := func() float64 {
		return gw.counter("wasmbed_gateway_status_writes_total", map[string]string{"kind": "Device"})
	}
	// The connection's writes (Connected, then lastSeen of the device's
	// opening report) settle first.
	time.Sleep(2 * time.Second)
	connected := writes()
	// Five lastSeen periods of silence.
	time.Sleep(5 * time.Second)
	if n := writes() - connected; n != 0 {
		t.Errorf("%v Device writes while the device was silent, want 0", n)
	}
	d.send(&protocol.Heartbeat{})
	eventually(t, 30*time.Second, "a lastSeen refresh after the heartbeat", func() (bool, string) {
		n := writes() - connected
		return n >= 1, fmt.Sprintf("%v writes", n)
	})
}
