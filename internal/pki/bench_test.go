package pki

import (
	"crypto/tls"
	"crypto/x509"
	"sync/atomic"
	"testing"
	"time"
)

// benchServer starts a ServerTLSConfig gateway on 127.0.0.1 and returns its
// address and a client config for a device with key algorithm alg.
func benchSetup(b *testing.B, alg KeyAlgorithm, x25519Only bool) (*testServer, *tls.Config) {
	b.Helper()
	clock := newTestClock()
	ca := newTestAuthority(b, clock, alg)
	v, err := ca.DeviceVerifier(NewMemoryRevocation())
	if err != nil {
		b.Fatal(err)
	}
	srvCfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(b, ca), Verifier: v})
	if err != nil {
		b.Fatal(err)
	}
	srv := startServer(b, srvCfg)
	dev := mustDevice(b, ca, "bench", alg)
	cli, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, Certificate: &dev, ServerName: "127.0.0.1", Clock: clock.Now, X25519Only: x25519Only})
	if err != nil {
		b.Fatal(err)
	}
	return srv, cli
}

// BenchmarkHandshake measures complete mutual-TLS connections over loopback
// sockets, one at a time: TCP connect, TLS 1.3 handshake with client
// certificate verification (or resumption) and a one-byte round trip.
// The x25519 variants restrict the key exchange to X25519 (the default
// offers the post-quantum hybrid X25519MLKEM768 first).
func BenchmarkHandshake(b *testing.B) {
	type variant struct {
		alg     KeyAlgorithm
		resumed bool
		x25519  bool
	}
	var variants []variant
	for _, alg := range []KeyAlgorithm{Ed25519, ECDSAP256} {
		for _, resumed := range []bool{false, true} {
			for _, x := range []bool{false, true} {
				variants = append(variants, variant{alg, resumed, x})
			}
		}
	}
	for _, vr := range variants {
		alg, resumed := vr.alg, vr.resumed
		name := string(alg) + "/full"
		if resumed {
			name = string(alg) + "/resumed"
		}
		if vr.x25519 {
			name += "/x25519"
		} else {
			name += "/default-kex"
		}
		{
			b.Run(name, func(b *testing.B) {
				srv, cli := benchSetup(b, alg, vr.x25519)
				if !resumed {
					cli.ClientSessionCache = nil
				} else if _, err := dial(b.Context(), srv.ln.Addr().String(), cli); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				n := 0
				cpu0 := processCPU()
				for b.Loop() {
					cs, err := dial(b.Context(), srv.ln.Addr().String(), cli)
					if err != nil {
						b.Fatal(err)
					}
					if cs.DidResume != resumed {
						b.Fatalf("got DidResume %v, want %v", cs.DidResume, resumed)
					}
					n++
				}
				reportHandshakes(b, n, processCPU()-cpu0)
			})
		}
	}
}

// reportHandshakes reports wall-clock handshakes/s and the process CPU time
// per handshake (both ends), which is far less sensitive to a busy machine.
func reportHandshakes(b *testing.B, n int, cpu time.Duration) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "handshakes/s")
	if cpu > 0 && n > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/handshake")
	}
}

// BenchmarkHandshakeParallel is BenchmarkHandshake with concurrent clients
// (GOMAXPROCS goroutines), approximating a reconnect storm.
func BenchmarkHandshakeParallel(b *testing.B) {
	for _, resumed := range []bool{false, true} {
		name := "full"
		if resumed {
			name = "resumed"
		}
		b.Run(name, func(b *testing.B) {
			srv, base := benchSetup(b, Ed25519, false)
			var total atomic.Int64
			b.ReportAllocs()
			cpu0 := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				cli := base.Clone()
				cli.ClientSessionCache = nil
				if resumed {
					cli.ClientSessionCache = tls.NewLRUClientSessionCache(1)
					if _, err := dial(b.Context(), srv.ln.Addr().String(), cli); err != nil {
						b.Error(err)
						return
					}
				}
				for pb.Next() {
					if _, err := dial(b.Context(), srv.ln.Addr().String(), cli); err != nil {
						b.Error(err)
						return
					}
					total.Add(1)
				}
			})
			reportHandshakes(b, int(total.Load()), processCPU()-cpu0)
		})
	}
}

// BenchmarkVerifyDevice measures the gateway-side chain verification that
// runs on every handshake (x509.Verify through the intermediate, identity,
// in-memory revocation).
func BenchmarkVerifyDevice(b *testing.B) {
	for _, alg := range []KeyAlgorithm{Ed25519, ECDSAP256} {
		b.Run(string(alg), func(b *testing.B) {
			clock := newTestClock()
			ca := newTestAuthority(b, clock, alg)
			v, err := ca.DeviceVerifier(NewMemoryRevocation())
			if err != nil {
				b.Fatal(err)
			}
			dev := mustDevice(b, ca, "bench", alg)
			chain := []*x509.Certificate{dev.Leaf}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.VerifyDevice(b.Context(), chain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
