package loadgen

import "testing"

// TestLoopbackOnly checks that a fleet dials nothing but loopback
// addresses.
func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:7000", true},
		{"127.3.2.1:7000", true},
		{"[::1]:7000", true},
		{"localhost:7000", true},
		{"10.0.0.1:7000", false},
		{"192.168.1.2:7000", false},
		{"example.com:7000", false},
		{"127.0.0.1", false}, // no port
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			if err := checkLoopback(tc.addr); (err == nil) != tc.ok {
				t.Fatalf("checkLoopback(%q) = %v, want ok %v", tc.addr, err, tc.ok)
			}
			_, err := NewFleet(Setup{Addr: tc.addr})
			if !tc.ok && err == nil {
				t.Fatalf("NewFleet accepted gateway address %q", tc.addr)
			}
		})
	}
	// A command cannot move the fleet off loopback either.
	f := &Fleet{addr: "127.0.0.1:7000"}
	if r := f.Do(t.Context(), Command{Op: OpClose, Addr: "10.1.2.3:7000"}); r.Err == "" || f.addr != "127.0.0.1:7000" {
		t.Fatalf("got %+v, address %q: want the command refused", r, f.addr)
	}
}
