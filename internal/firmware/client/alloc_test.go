package client

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// tlsPipe returns the client end of a TLS 1.3 connection whose server end
// discards everything.
func tlsPipe(tb testing.TB) *tls.Conn {
	tb.Helper()
	ca, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	gw, err := ca.IssueGateway(pki.GatewayOptions{Name: "gw", DNSNames: []string{"gw"}})
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := gw.TLSCertificate()
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	srvc := make(chan *tls.Conn, 1)
	go func() {
		b, err := ln.Accept()
		if err != nil {
			srvc <- nil
			return
		}
		srv := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		srvc <- srv
		buf := make([]byte, 64<<10)
		for {
			if _, err := srv.Read(buf); err != nil {
				return
			}
		}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	cli := tls.Client(a, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec // test connection
	if err := cli.Handshake(); err != nil {
		tb.Fatal(err)
	}
	srv := <-srvc
	tb.Cleanup(func() {
		_ = cli.Close()
		if srv != nil {
			_ = srv.Close()
		}
	})
	return cli
}

type fixedTelemetry struct{}

func (fixedTelemetry) Heartbeat(hb *protocol.Heartbeat) {
	hb.UptimeSeconds, hb.FreeMemory, hb.RunningApps = 10, 1000, 1
}
func (fixedTelemetry) Metrics(m *protocol.MetricsReport) { m.UptimeSeconds = 10 }

func heartbeatSession(tb testing.TB) *session {
	tb.Helper()
	lm, err := link.New(link.Config{Endpoints: []string{"gw:1"}})
	if err != nil {
		tb.Fatal(err)
	}
	c := &Client{cfg: Config{Link: lm, Telemetry: fixedTelemetry{}, Codec: DefaultCodec(), IOTimeout: time.Minute}}
	if err := c.ids.Init(protocol.Device); err != nil {
		tb.Fatal(err)
	}
	tc := tlsPipe(tb)
	return &session{c: c, tc: tc, w: protocol.NewWriter(tc, c.cfg.Codec)}
}

// BenchmarkHeartbeat measures sending one heartbeat on an established
// session: telemetry, link quality, encoding, framing and the TLS write.
func BenchmarkHeartbeat(b *testing.B) {
	s := heartbeatSession(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.sendHeartbeat(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestHeartbeatAllocations(t *testing.T) {
	s := heartbeatSession(t)
	allocs := testing.AllocsPerRun(200, func() {
		if err := s.sendHeartbeat(); err != nil {
			t.Fatal(err)
		}
	})
	// The device side allocates nothing per heartbeat; the receiving end
	// of this test, in the same process, may account for one.
	if allocs > 1 {
		t.Errorf("allocations per heartbeat: got %.0f, want at most 1", allocs)
	}
	t.Logf("allocations per heartbeat: %.0f", allocs)
}
