package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/controlplane/controlplanetest"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/pairing"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
	"github.com/wasmbed/wasmbed/internal/sim"
)

var env *controlplanetest.Env

func TestMain(m *testing.M) { os.Exit(controlplanetest.Run(m, &env)) }

// platform is what a test's gateways share: namespaces, the certificate
// authority, the platform signing key, and a stand-in for the controller's
// certificate signer.
type platform struct {
	t       testing.TB
	ns      string // where devices live
	sys     string // the system namespace
	ca      *pki.Authority
	signKey ed25519.PrivateKey
	signer  *artifact.Signer
}

func newPlatform(t testing.TB) *platform {
	t.Helper()
	p := &platform{t: t, ns: env.Namespace(t), sys: env.Namespace(t)}
	var err error
	if p.ca, err = pki.NewAuthority(pki.AuthorityOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, p.signKey, err = ed25519.GenerateKey(nil); err != nil {
		t.Fatal(err)
	}
	if p.signer, err = artifact.NewSigner(p.signKey); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.signCSRs(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

// signCSRs plays the controller's certificate signer for this platform's
// devices: it signs each device certificate request for the Device it names
// with the device CA, as the controller does.
func (p *platform) signCSRs(ctx context.Context) {
	for ctx.Err() == nil {
		var list certificatesv1.CertificateSigningRequestList
		if err := env.Client.List(ctx, &list); err == nil {
			for i := range list.Items {
				p.signOne(ctx, &list.Items[i])
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *platform) signOne(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) {
	if len(csr.Status.Certificate) > 0 {
		return
	}
	if csr.Spec.SignerName == wasmbedv1.GatewaySignerName && strings.HasPrefix(csr.Name, "wasmbed-serving-"+p.ns) {
		p.signGateway(ctx, csr)
		return
	}
	ns, name, _ := strings.Cut(csr.Annotations[wasmbedv1.AnnotationDevice], "/")
	if ns != p.ns || csr.Spec.SignerName != wasmbedv1.DeviceSignerName {
		return
	}
	dev := &wasmbedv1.Device{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, dev); err != nil {
		return
	}
	req, err := pki.ParseCSR(csr.Spec.Request)
	if err != nil {
		p.t.Errorf("signer: %s: %v", csr.Name, err)
		return
	}
	pub, err := pki.ParsePublicKey(dev.Spec.PublicKey)
	if err != nil {
		p.t.Errorf("signer: %s: %v", csr.Name, err)
		return
	}
	cert, err := p.ca.IssueDeviceFromCSR(req, pki.DeviceRequest{DeviceID: dev.Spec.DeviceID, PublicKey: pub})
	if err != nil {
		p.t.Errorf("signer: %s: %v", csr.Name, err)
		return
	}
	p.approve(ctx, csr, pki.EncodeCertificatesPEM(cert.Leaf, p.ca.DeviceCA.Cert))
}

// signGateway signs a gateway's serving certificate request with the
// gateway CA for 127.0.0.1, as the controller configured with that address
// does.
func (p *platform) signGateway(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) {
	req, err := pki.ParseCSR(csr.Spec.Request)
	if err != nil {
		p.t.Errorf("signer: %s: %v", csr.Name, err)
		return
	}
	cert, err := p.ca.IssueGatewayFromCSR(req, pki.GatewayRequest{Name: req.Subject.CommonName, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		p.t.Errorf("signer: %s: %v", csr.Name, err)
		return
	}
	p.approve(ctx, csr, pki.EncodeCertificatesPEM(cert.Leaf, p.ca.GatewayCA.Cert))
}

// approve approves a certificate request and writes its certificate.
func (p *platform) approve(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, certPEM []byte) {
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "TestSigner", Message: "approved by the test signer",
	})
	if err := env.Client.SubResource("approval").Update(ctx, csr); err != nil {
		return
	}
	csr.Status.Certificate = certPEM
	_ = env.Client.Status().Update(ctx, csr)
}

// openPairing opens the pairing window.
func (p *platform) openPairing(d time.Duration, token []byte) {
	p.t.Helper()
	w, err := pairing.Open(time.Now(), d, "test", token)
	if err != nil {
		p.t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.sys, Name: wasmbedv1.PairingConfigMap}}
	_, err = controllerutilCreateOrUpdate(p.t.Context(), cm, func() { cm.Data = w.Data() })
	if err != nil {
		p.t.Fatal(err)
	}
}

func controllerutilCreateOrUpdate(ctx context.Context, cm *corev1.ConfigMap, mutate func()) (bool, error) {
	key := client.ObjectKeyFromObject(cm)
	err := env.Client.Get(ctx, key, cm)
	if apierrors.IsNotFound(err) {
		mutate()
		return true, env.Client.Create(ctx, cm)
	}
	if err != nil {
		return false, err
	}
	mutate()
	return false, env.Client.Update(ctx, cm)
}

// gatewayHandle is a running gateway.
type gatewayHandle struct {
	*gateway.Gateway
	name                string
	session, enroll, hp string
	reg                 *prometheus.Registry
	cancel              context.CancelFunc
	done                chan error
}

// startGateway starts a gateway replica named name.
func (p *platform) startGateway(name string, mutate func(*gateway.Options)) *gatewayHandle {
	p.t.Helper()
	gw, err := p.ca.IssueGateway(pki.GatewayOptions{Name: name, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		p.t.Fatal(err)
	}
	cert, err := gw.TLSCertificate()
	if err != nil {
		p.t.Fatal(err)
	}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.t.Fatal(err)
		}
		return ln
	}
	h := &gatewayHandle{name: name, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	opts := gateway.Options{
		Name: name, Config: env.Config, SystemNamespace: p.sys, DeviceNamespace: p.ns,
		Trust: gateway.Trust{Root: p.ca.Root.Cert, DeviceCA: p.ca.DeviceCA.Cert, Certificate: cert,
			SigningKeys: []ed25519.PublicKey{p.signer.PublicKey()}},
		SessionListener: listen(), EnrollListener: listen(), HTTPListener: listen(),
		HeartbeatInterval: time.Second, Registry: h.reg,
		Logger: testLogger(p.t, name),
	}
	h.session, h.enroll, h.hp = opts.SessionListener.Addr().String(), opts.EnrollListener.Addr().String(), opts.HTTPListener.Addr().String()
	if mutate != nil {
		mutate(&opts)
	}
	if h.Gateway, err = gateway.New(opts); err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.Run(ctx) }()
	p.t.Cleanup(h.stop)
	eventually(p.t, 30*time.Second, "gateway "+name+" ready", func() (bool, string) {
		err := h.Ready()
		return err == nil, fmt.Sprint(err)
	})
	return h
}

// stop shuts the gateway down gracefully and waits for it.
func (h *gatewayHandle) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	<-h.done
}

// counter returns the sum of a metric's samples matching labels.
func (h *gatewayHandle) counter(name string, labels map[string]string) float64 {
	mfs, err := h.reg.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// fleet runs n simulated devices against gateways until the test ends.
type fleet struct {
	*sim.Fleet
	cancel context.CancelFunc
	done   chan struct{}
}

func (p *platform) runFleet(n int, mix string, gws ...*gatewayHandle) *fleet {
	p.t.Helper()
	shares, err := sim.ParseMix(mix)
	if err != nil {
		p.t.Fatal(err)
	}
	var sess, enr []string
	for _, g := range gws {
		sess, enr = append(sess, g.session), append(enr, g.enroll)
	}
	f, err := sim.New(p.t.Context(), sim.Options{
		Devices: n, Gateways: sess, EnrollGateways: enr, Root: p.ca.Root.Cert, GatewayCA: p.ca.GatewayCA.Cert, DeviceCA: p.ca.DeviceCA.Cert, Mix: shares,
		HeartbeatInterval: time.Second, MetricsInterval: 2 * time.Second,
		Backoff:         link.Backoff{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		SummaryInterval: -1,
	})
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fl := &fleet{Fleet: f, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(fl.done)
		f.Run(ctx)
	}()
	p.t.Cleanup(fl.stop)
	return fl
}

func (f *fleet) stop() {
	f.cancel()
	<-f.done
}

// devices lists the platform's Devices.
func (p *platform) devices() []wasmbedv1.Device {
	var list wasmbedv1.DeviceList
	if err := env.Client.List(p.t.Context(), &list, client.InNamespace(p.ns)); err != nil {
		p.t.Fatal(err)
	}
	slices.SortFunc(list.Items, func(a, b wasmbedv1.Device) int { return strings.Compare(a.Name, b.Name) })
	return list.Items
}

// waitDevices waits until n Devices satisfy cond.
func (p *platform) waitDevices(what string, n int, cond func(*wasmbedv1.Device) bool) []wasmbedv1.Device {
	p.t.Helper()
	var got []wasmbedv1.Device
	eventually(p.t, 60*time.Second, what, func() (bool, string) {
		got = got[:0]
		var phases []string
		for _, d := range p.devices() {
			phases = append(phases, d.Name+"="+string(d.Status.Phase)+"@"+d.Status.Gateway)
			if cond(&d) {
				got = append(got, d)
			}
		}
		return len(got) == n, strings.Join(phases, " ")
	})
	return got
}

// issue plays the controller: it stores a module once and creates (or
// updates) the DeviceApplication of app on dev with an artifact signed for
// the device.
func (p *platform) issue(dev *wasmbedv1.Device, app, version string, module []byte, seq uint64, state wasmbedv1.RunState) *wasmbedv1.DeviceApplication {
	p.t.Helper()
	ctx := p.t.Context()
	sum := sha256.Sum256(module)
	hash := hex.EncodeToString(sum[:])
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: app + "-module-" + hash[:12]},
		BinaryData: map[string][]byte{gateway.PayloadKey: module}, Immutable: ptrTo(true)}
	if err := env.Client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		p.t.Fatal(err)
	}
	now := time.Now()
	data, _, err := p.signer.Sign(artifact.Manifest{
		App: app, Version: version, DeviceID: dev.Spec.DeviceID, Sequence: seq, IssuedAt: now.Add(-time.Minute), Expires: now.Add(time.Hour),
		Limits: sandbox.Limits{MemoryLimit: 64 << 10, ExecutionTimeout: time.Second, MaxStackSize: 4 << 10},
	}, module, artifact.SignOptions{})
	if err != nil {
		p.t.Fatal(err)
	}
	signed, err := artifact.Unmarshal(data, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	da := &wasmbedv1.DeviceApplication{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: wasmbedv1.DeviceApplicationName(app, dev.Name)}}
	key := client.ObjectKeyFromObject(da)
	err = env.Client.Get(ctx, key, da)
	create := apierrors.IsNotFound(err)
	if err != nil && !create {
		p.t.Fatal(err)
	}
	da.Labels = map[string]string{wasmbedv1.LabelApplication: wasmbedv1.LabelValue(app), wasmbedv1.LabelDevice: wasmbedv1.LabelValue(dev.Name)}
	da.Finalizers = []string{wasmbedv1.FinalizerDeviceRemoval}
	da.Spec = wasmbedv1.DeviceApplicationSpec{
		Device: dev.Name, Application: app, AppName: app, Version: version, State: state,
		Artifact: &wasmbedv1.DeviceArtifact{
			Manifest: signed.Manifest, Signature: signed.Signature, Sequence: int64(seq), ModuleHash: hash, //nolint:gosec // small test values
			Payload: wasmbedv1.PayloadReference{ConfigMap: cm.Name, SHA256: hash, Size: int64(len(module))},
		},
	}
	if create {
		err = env.Client.Create(ctx, da)
	} else {
		err = env.Client.Update(ctx, da)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	return da
}

// waitDA waits until a DeviceApplication satisfies cond.
func (p *platform) waitDA(name, what string, cond func(*wasmbedv1.DeviceApplication) bool) *wasmbedv1.DeviceApplication {
	p.t.Helper()
	da := &wasmbedv1.DeviceApplication{}
	eventually(p.t, 60*time.Second, what, func() (bool, string) {
		err := env.Client.Get(p.t.Context(), types.NamespacedName{Namespace: p.ns, Name: name}, da)
		if apierrors.IsNotFound(err) {
			return cond(nil), "not found"
		}
		if err != nil {
			return false, err.Error()
		}
		return cond(da), fmt.Sprintf("%+v", da.Status)
	})
	return da
}

func ptrTo[T any](v T) *T { return &v }

// eventually polls cond until it holds or timeout passes; the timeout is a
// generous bound on a test, not a measurement.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last state: %s", what, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// testLogger routes a component's logs to the test log when -v is set.
func testLogger(t testing.TB, name string) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(&tlogWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", name)
}

type tlogWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *tlogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// rawDevice is a device spoken for at the protocol level over real TLS, for
// tests that need to misbehave or stay silent.
type rawDevice struct {
	t    testing.TB
	key  ed25519.PrivateKey
	conn *tls.Conn
	r    *protocol.Reader
	w    *protocol.Writer
	ids  *protocol.IDs
}

var rawCodec = func() *protocol.Codec {
	c, err := protocol.NewCodec(protocol.Device, protocol.Limits{})
	if err != nil {
		panic(err)
	}
	return c
}()

// newKey returns a fresh Ed25519 device key.
func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// preRegister applies a Device with key, as an operator pre-registering a
// device, and returns it with a certificate from the device CA.
func (p *platform) preRegister(name string, key ed25519.PrivateKey) (*wasmbedv1.Device, *tls.Certificate) {
	p.t.Helper()
	enc, err := pki.EncodePublicKey(key.Public())
	if err != nil {
		p.t.Fatal(err)
	}
	dev := &wasmbedv1.Device{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: name},
		Spec: wasmbedv1.DeviceSpec{DeviceID: name, PublicKey: enc, DeviceType: wasmbedv1.DeviceTypeESP32}}
	if err := env.Client.Create(p.t.Context(), dev); err != nil {
		p.t.Fatal(err)
	}
	return dev, p.deviceCert(name, key)
}

// deviceCert issues a device certificate for key from the platform's device
// CA.
func (p *platform) deviceCert(id string, key ed25519.PrivateKey) *tls.Certificate {
	p.t.Helper()
	c, err := p.ca.IssueDevice(key.Public(), pki.DeviceOptions{DeviceID: id})
	if err != nil {
		p.t.Fatal(err)
	}
	cert, err := pki.NewTLSCertificate(key, c.Leaf, c.Chain...)
	if err != nil {
		p.t.Fatal(err)
	}
	return &cert
}

// dial connects a raw device to addr with cert (none for enrollment).
func (p *platform) dial(addr string, key ed25519.PrivateKey, cert *tls.Certificate) (*rawDevice, error) {
	p.t.Helper()
	cfg, err := pki.ClientTLSConfig(pki.ClientOptions{Root: p.ca.Root.Cert, GatewayCA: p.ca.GatewayCA.Cert, Certificate: cert, ServerName: "127.0.0.1"})
	if err != nil {
		p.t.Fatal(err)
	}
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	ctx, cancel := context.WithTimeout(p.t.Context(), 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	p.t.Cleanup(func() { _ = tc.Close() })
	ids, _ := protocol.NewIDs(protocol.Device)
	return &rawDevice{t: p.t, key: key, conn: tc, r: protocol.NewReader(tc, rawCodec), w: protocol.NewWriter(tc, rawCodec), ids: ids}, nil
}

func (d *rawDevice) send(m protocol.Message) uint64 {
	d.t.Helper()
	id := d.ids.Next()
	d.reply(id, m)
	return id
}

func (d *rawDevice) reply(id uint64, m protocol.Message) {
	d.t.Helper()
	if err := d.w.WriteEnvelope(protocol.Envelope{Version: protocol.Version, MessageID: id, Message: m}); err != nil {
		d.t.Fatalf("device write: %v", err)
	}
}

// read returns the next envelope, waiting up to 30 seconds.
func (d *rawDevice) read() (protocol.Envelope, error) {
	_ = d.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	return d.r.ReadEnvelope()
}

// next returns the next envelope that is not a heartbeat acknowledgement.
func (d *rawDevice) next() protocol.Envelope {
	d.t.Helper()
	for {
		env, err := d.read()
		if err != nil {
			d.t.Fatalf("device read: %v", err)
		}
		if _, ok := env.Message.(*protocol.HeartbeatAck); !ok {
			return env
		}
	}
}

// announce sends what firmware sends when a session opens: a heartbeat and
// a metrics report (no applications).
func (d *rawDevice) announce() {
	d.send(&protocol.Heartbeat{UptimeSeconds: 1})
	d.send(&protocol.MetricsReport{UptimeSeconds: 1})
}

// enrollRequest builds a valid EnrollRequest for key over conn's connection.
func enrollRequest(t testing.TB, d *rawDevice, sealing []byte) *protocol.EnrollRequest {
	t.Helper()
	csr, err := pki.NewDeviceCSR(d.key, "")
	if err != nil {
		t.Fatal(err)
	}
	req := &protocol.EnrollRequest{PublicKey: d.key.Public().(ed25519.PublicKey), KeyAlgorithm: protocol.KeyEd25519, DeviceType: "esp32", CSR: csr}
	if sealing != nil {
		binding, err := pki.EnrollmentBinding(d.conn.ConnectionState())
		if err != nil {
			t.Fatal(err)
		}
		req.SealingKey = sealing
		if req.SealingKeyProof, err = pki.SignSealingKeyProof(d.key, binding, sealing); err != nil {
			t.Fatal(err)
		}
	}
	return req
}
