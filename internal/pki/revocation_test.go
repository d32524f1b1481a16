package pki

import (
	"crypto/x509"
	"sync"
	"sync/atomic"
	"testing"
)

func TestMemoryRevocation(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	key := mustKey(t, Ed25519)
	c1, _ := ca.IssueDevice(key.Public(), DeviceOptions{DeviceID: "d"})
	c2, _ := ca.IssueDevice(key.Public(), DeviceOptions{DeviceID: "d"}) // same key, renewed
	c3, _ := ca.IssueDevice(mustKey(t, Ed25519).Public(), DeviceOptions{DeviceID: "e"})
	m := NewMemoryRevocation()
	var events []Revocation
	cancel := m.Subscribe(func(r Revocation) { events = append(events, r) })

	check := func(c *x509.Certificate, want bool) {
		t.Helper()
		got, err := m.Revoked(t.Context(), c)
		if err != nil || got != want {
			t.Errorf("Revoked(%s): got (%v, %v), want %v", c.SerialNumber.Text(16), got, err, want)
		}
	}
	check(c1.Leaf, false)
	m.RevokeCert(c1.Leaf)
	check(c1.Leaf, true)
	check(c2.Leaf, false)
	if err := m.RevokeKey(key.Public()); err != nil {
		t.Fatal(err)
	}
	check(c2.Leaf, true)
	check(c3.Leaf, false)
	if len(events) != 2 || !events[0].Matches(c1.Leaf) || events[0].Matches(c2.Leaf) || !events[1].Matches(c2.Leaf) || events[1].Matches(c3.Leaf) {
		t.Fatalf("got events %+v, want serial of c1 then key of c1/c2", events)
	}
	cancel()
	cancel()
	m.RevokeCert(c3.Leaf)
	if len(events) != 2 {
		t.Errorf("got %d events after cancel, want 2", len(events))
	}
	fp, _ := Fingerprint(key.Public())
	m.UnrevokeFingerprint(fp)
	m.UnrevokeSerial(c1.Leaf.SerialNumber)
	check(c1.Leaf, false)
	check(c2.Leaf, false)
	if got := m.Len(); got != 1 {
		t.Errorf("got Len %d, want 1", got)
	}
}

// TestMemoryRevocationHammer runs revocations, checks and subscriptions
// concurrently; run with -race.
func TestMemoryRevocationHammer(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	const n = 64
	certs := make([]*x509.Certificate, n)
	for i := range certs {
		c, err := ca.IssueDevice(mustKey(t, Ed25519).Public(), DeviceOptions{DeviceID: "d"})
		if err != nil {
			t.Fatal(err)
		}
		certs[i] = c.Leaf
	}
	m := NewMemoryRevocation()
	var notified atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(3)
		go func() { // revokers: even certs by serial, multiples of 3 by key
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if i%2 == 0 {
					m.RevokeCert(certs[i])
				}
				if i%3 == 0 {
					if err := m.RevokeKey(certs[i].PublicKey); err != nil {
						t.Error(err)
					}
				}
			}
		}()
		go func() { // checkers
			defer wg.Done()
			for range 20 {
				for _, c := range certs {
					if _, err := m.Revoked(t.Context(), c); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
		go func() { // subscribers coming and going
			defer wg.Done()
			for range 50 {
				cancel := m.Subscribe(func(Revocation) { notified.Add(1) })
				_ = m.Len()
				cancel()
			}
		}()
	}
	wg.Wait()
	for i, c := range certs {
		want := i%2 == 0 || i%3 == 0
		got, err := m.Revoked(t.Context(), c)
		if err != nil || got != want {
			t.Errorf("cert %d: got (%v, %v), want %v", i, got, err, want)
		}
	}
	if want := n/2 + (n+2)/3; m.Len() != want {
		t.Errorf("got Len %d, want %d", m.Len(), want)
	}
}
