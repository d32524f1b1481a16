package client

import (
	"crypto/x509"
	"math/big"
	"testing"
	"time"
)

func TestRenewDueSpreadsAFleet(t *testing.T) {
	notBefore := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lifetime := 24 * time.Hour
	twoThirds := notBefore.Add(16 * time.Hour)
	quarterEnd := notBefore.Add(18 * time.Hour)
	seen := map[time.Time]bool{}
	for serial := int64(1); serial <= 64; serial++ {
		leaf := &x509.Certificate{
			SerialNumber: big.NewInt(serial * 1031),
			NotBefore:    notBefore,
			NotAfter:     notBefore.Add(lifetime),
		}
		due := renewDue(leaf, DefaultRenewJitter)
		if due.Before(twoThirds) || !due.Before(quarterEnd) {
			t.Fatalf("serial %v: renewal at %v, want within [%v, %v)", leaf.SerialNumber, due, twoThirds, quarterEnd)
		}
		if again := renewDue(leaf, DefaultRenewJitter); !again.Equal(due) {
			t.Fatalf("serial %v: renewal moved from %v to %v", leaf.SerialNumber, due, again)
		}
		if got := renewDue(leaf, -1); !got.Equal(twoThirds) {
			t.Fatalf("without jitter: got %v, want %v", got, twoThirds)
		}
		seen[due] = true
	}
	if len(seen) < 32 {
		t.Errorf("64 certificates renew at %d distinct times, want them spread", len(seen))
	}
}
