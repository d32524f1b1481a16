package security

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/edkey"
	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/seal"
)

// Flash keys.
const (
	keyIdentity = "s:identity" // identity and sealing private keys (CBOR)
	keyEnrolled = "s:enrolled" // device id, certificate chain, pinned platform keys (CBOR)
	// r:<app> holds the highest artifact sequence accepted for app (uint64,
	// big-endian). Marks outlive the application, so an old artifact of a
	// removed application is still refused.
	replayPrefix = "r:"
)

// Errors callers branch on.
var (
	// ErrNotEnrolled reports an operation that needs an enrolled device.
	ErrNotEnrolled = errors.New("security: device not enrolled")
	// ErrBadEnrollment reports an enrollment response the device refuses
	// (invalid id, a certificate not for its key, a malformed key).
	ErrBadEnrollment = errors.New("security: bad enrollment response")
	// ErrDamaged reports that the stored identity keys or replay marks
	// fail to decode. The device refuses to run rather than silently take
	// a new identity or forget its replay marks; recovering means erasing
	// the flash and enrolling again.
	ErrDamaged = errors.New("security: stored security state damaged")
)

// Config configures a Manager.
type Config struct {
	// Store is the device's flash store. Required.
	Store *flash.Store
	// Rand is the randomness keys are generated from on first boot.
	// Required: the simulator injects a seeded source per device.
	Rand io.Reader
	// Clock is the device clock, for artifact expiry and certificate
	// renewal; nil means time.Now.
	Clock func() time.Time
	// DeviceType, Capabilities and FirmwareVersion describe the device in
	// its enrollment request.
	DeviceType      string
	Capabilities    []string
	FirmwareVersion string
	// Logger receives security events; nil discards them.
	Logger *slog.Logger
}

type identityRecord struct {
	Seed    []byte `cbor:"1,keyasint"` // Ed25519 seed
	Sealing []byte `cbor:"2,keyasint"` // X25519 private key
}

type enrolledRecord struct {
	DeviceID    string   `cbor:"1,keyasint"`
	Chain       [][]byte `cbor:"2,keyasint"` // DER, leaf first
	SigningKeys [][]byte `cbor:"3,keyasint"` // pinned Ed25519 platform keys
	SealingKeys [][]byte `cbor:"4,keyasint,omitempty"`
}

// Manager holds a device's security state: its identity key pair, its
// X25519 sealing key, its enrollment (device id, certificate chain, pinned
// platform keys) and the artifact replay marks, all kept in flash. It
// verifies and opens deploy artifacts. It is safe for concurrent use.
type Manager struct {
	mu      sync.Mutex
	store   *flash.Store
	clock   func() time.Time
	log     *slog.Logger
	cfg     Config
	key     ed25519.PrivateKey
	sealing *ecdh.PrivateKey
	enr     *enrolledRecord
	marks   marks

	// built lazily after enrollment
	verifier *artifact.Verifier
	opener   *seal.Opener
	leaf     *x509.Certificate

	refusals [numRefusals]uint64
	// ignoredKeys counts platform keys offered at a re-enrollment and
	// ignored because the device already trusts a set.
	ignoredKeys uint64
}

var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 16, DupMapKey: cbor.DupMapKeyEnforcedAPF}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

var encMode = func() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// Open loads the security state from flash. On first boot it generates the
// identity (Ed25519) and sealing (X25519) keys from cfg.Rand and commits
// both in one flash transaction, so a power loss leaves either no keys (and
// the next boot generates them) or both.
func Open(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Rand == nil {
		return nil, errors.New("security: Store and Rand are required")
	}
	m := &Manager{store: cfg.Store, clock: cfg.Clock, log: cfg.Logger, cfg: cfg}
	if m.clock == nil {
		m.clock = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if err := m.loadIdentity(); err != nil {
		return nil, fmt.Errorf("security: %w", err)
	}
	if raw, err := m.store.Get(keyEnrolled); err == nil {
		var rec enrolledRecord
		if err := decMode.Unmarshal(raw, &rec); err != nil {
			m.log.Warn("enrollment record damaged, device must re-enroll", "err", err)
		} else if err := m.checkEnrollment(&rec); err != nil {
			m.log.Warn("enrollment record invalid, device must re-enroll", "err", err)
		} else {
			m.enr = &rec
		}
	} else if !errors.Is(err, flash.ErrNotFound) {
		return nil, fmt.Errorf("security: read enrollment: %w", err)
	}
	for _, key := range m.store.Keys(replayPrefix) {
		raw, err := m.store.Get(key)
		if err == nil && len(raw) != 8 {
			err = fmt.Errorf("%d bytes, want 8", len(raw))
		}
		if err != nil {
			// Never forget a mark silently: that would reopen replays.
			return nil, fmt.Errorf("%w: replay mark %q: %w", ErrDamaged, key, err)
		}
		m.marks.set(key[len(replayPrefix):], binary.BigEndian.Uint64(raw))
	}
	return m, nil
}

func (m *Manager) loadIdentity() error {
	raw, err := m.store.Get(keyIdentity)
	if err == nil {
		var rec identityRecord
		err := decMode.Unmarshal(raw, &rec)
		if err == nil && len(rec.Seed) != ed25519.SeedSize {
			err = fmt.Errorf("seed of %d bytes, want %d", len(rec.Seed), ed25519.SeedSize)
		}
		if err != nil {
			return fmt.Errorf("%w: identity record: %w", ErrDamaged, err)
		}
		sk, err := ecdh.X25519().NewPrivateKey(rec.Sealing)
		if err != nil {
			return fmt.Errorf("%w: sealing key: %w", ErrDamaged, err)
		}
		m.key, m.sealing = ed25519.NewKeyFromSeed(rec.Seed), sk
		return nil
	}
	if !errors.Is(err, flash.ErrNotFound) {
		return fmt.Errorf("read identity: %w", err)
	}
	rec := identityRecord{Seed: make([]byte, ed25519.SeedSize), Sealing: make([]byte, 32)}
	if _, err := io.ReadFull(m.cfg.Rand, rec.Seed); err != nil {
		return fmt.Errorf("generate identity key: %w", err)
	}
	if _, err := io.ReadFull(m.cfg.Rand, rec.Sealing); err != nil {
		return fmt.Errorf("generate sealing key: %w", err)
	}
	sk, err := ecdh.X25519().NewPrivateKey(rec.Sealing)
	if err != nil {
		return fmt.Errorf("generate sealing key: %w", err)
	}
	raw, err = encMode.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode identity: %w", err)
	}
	if err := m.store.Put(keyIdentity, raw); err != nil {
		return fmt.Errorf("store identity: %w", err)
	}
	m.key, m.sealing = ed25519.NewKeyFromSeed(rec.Seed), sk
	m.log.Info("device keys generated")
	return nil
}

// PublicKey returns the device's identity public key.
func (m *Manager) PublicKey() ed25519.PublicKey { return m.key.Public().(ed25519.PublicKey) }

// SealingPublicKey returns the public half of the device's X25519 sealing
// key, which the platform seals confidential payloads for.
func (m *Manager) SealingPublicKey() *ecdh.PublicKey { return m.sealing.PublicKey() }

// DeviceID returns the enrolled device id, or "" before enrollment.
func (m *Manager) DeviceID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.enr == nil {
		return ""
	}
	return m.enr.DeviceID
}

// Enrolled reports whether the device holds an identity issued by the
// platform.
func (m *Manager) Enrolled() bool { return m.DeviceID() != "" }

// EnrollRequest describes the device for enrollment over the connection
// whose enrollment binding (pki.EnrollmentBinding) is binding: its identity
// key with a certificate request signed by it (proof of possession), and its
// X25519 sealing key with the identity key's signature binding it to the
// identity and to this connection (pki.SignSealingKeyProof).
func (m *Manager) EnrollRequest(binding []byte) (*protocol.EnrollRequest, error) {
	csr, err := pki.NewDeviceCSR(m.key, "")
	if err != nil {
		return nil, fmt.Errorf("security: enrollment request: %w", err)
	}
	sealing := m.SealingPublicKey().Bytes()
	proof, err := pki.SignSealingKeyProof(m.key, binding, sealing)
	if err != nil {
		return nil, fmt.Errorf("security: enrollment request: %w", err)
	}
	return &protocol.EnrollRequest{
		PublicKey:       bytes.Clone(m.PublicKey()),
		KeyAlgorithm:    protocol.KeyEd25519,
		DeviceType:      m.cfg.DeviceType,
		Capabilities:    m.cfg.Capabilities,
		CSR:             csr,
		FirmwareVersion: m.cfg.FirmwareVersion,
		SealingKey:      sealing,
		SealingKeyProof: proof,
	}, nil
}

func (m *Manager) checkEnrollment(rec *enrolledRecord) error {
	if err := pki.ValidateDeviceID(rec.DeviceID); err != nil {
		return fmt.Errorf("%w: %w", ErrBadEnrollment, err)
	}
	if len(rec.Chain) == 0 {
		return fmt.Errorf("%w: empty certificate chain", ErrBadEnrollment)
	}
	leaf, err := x509.ParseCertificate(rec.Chain[0])
	if err != nil {
		return fmt.Errorf("%w: parse certificate: %w", ErrBadEnrollment, err)
	}
	if pub, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(m.PublicKey()) {
		return fmt.Errorf("%w: certificate is not for this device's key", ErrBadEnrollment)
	}
	if id, err := pki.DeviceIDFromCert(leaf); err != nil || id != rec.DeviceID {
		return fmt.Errorf("%w: certificate names device %q, enrolled as %q", ErrBadEnrollment, id, rec.DeviceID)
	}
	for _, k := range rec.SigningKeys {
		// A small-order key would let anyone sign artifacts.
		if err := edkey.Check(k); err != nil {
			return fmt.Errorf("%w: signing key: %w", ErrBadEnrollment, err)
		}
	}
	if n := len(rec.SigningKeys); n == 0 || n > artifact.MaxTrustedKeys {
		return fmt.Errorf("%w: %d signing keys", ErrBadEnrollment, n)
	}
	for _, k := range rec.SealingKeys {
		if _, err := seal.ParsePublicKey(k); err != nil {
			return fmt.Errorf("%w: sealing key: %w", ErrBadEnrollment, err)
		}
	}
	return nil
}

// Enroll checks and persists the identity the gateway issued: the device
// id, the certificate chain (whose leaf must certify this device's key and
// id; the caller verified it up to the pinned root) and the platform's
// signing and sealing keys, in one flash transaction.
//
// The platform keys are pinned at the first enrollment only. A device that
// already trusts a set — one enrolling again after its certificate expired
// — keeps it: whoever answers an enrollment (a compromised gateway replica,
// or a network attacker holding a gateway key) must not be able to replace
// or shrink the keys that decide what code the device runs. A key in the
// response that the device does not already trust is ignored, logged and
// counted (IgnoredEnrollmentKeys). Trusting a new key needs a message
// signed by a currently trusted one (see docs/security.md, "Key rotation").
func (m *Manager) Enroll(resp *protocol.EnrollResponse) error {
	rec := &enrolledRecord{DeviceID: resp.DeviceID, Chain: resp.CertChain, SigningKeys: [][]byte{resp.SigningKey}}
	if len(resp.SealingKey) > 0 {
		rec.SealingKeys = [][]byte{resp.SealingKey}
	}
	m.mu.Lock()
	prev := m.enr
	m.mu.Unlock()
	if prev != nil {
		m.keepTrustedKeys(rec, prev)
	}
	return m.enroll(rec)
}

// keepTrustedKeys gives rec the platform keys of the enrollment before it,
// and reports the offered keys that are not among them.
func (m *Manager) keepTrustedKeys(rec, prev *enrolledRecord) {
	for _, k := range []struct {
		what            string
		offered, pinned [][]byte
	}{{"signing", rec.SigningKeys, prev.SigningKeys}, {"sealing", rec.SealingKeys, prev.SealingKeys}} {
		for _, o := range k.offered {
			if !slices.ContainsFunc(k.pinned, func(p []byte) bool { return bytes.Equal(p, o) }) {
				m.mu.Lock()
				m.ignoredKeys++
				m.mu.Unlock()
				m.log.Warn("re-enrollment offered an untrusted platform key; keeping the pinned keys",
					"kind", k.what, "keyId", fmt.Sprintf("%x", keyID(o)), "pinned", len(k.pinned))
			}
		}
	}
	rec.SigningKeys = slices.Clone(prev.SigningKeys)
	rec.SealingKeys = slices.Clone(prev.SealingKeys)
}

// keyID names a platform key in logs: the first 8 bytes of its SHA-256.
func keyID(k []byte) []byte {
	sum := sha256.Sum256(k)
	return sum[:8]
}

// IgnoredEnrollmentKeys returns how many platform keys re-enrollments
// offered that the device did not already trust, and ignored, since boot.
func (m *Manager) IgnoredEnrollmentKeys() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ignoredKeys
}

func (m *Manager) enroll(rec *enrolledRecord) error {
	if err := m.checkEnrollment(rec); err != nil {
		return err
	}
	raw, err := encMode.Marshal(rec)
	if err != nil {
		return fmt.Errorf("security: encode enrollment: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.store.Put(keyEnrolled, raw); err != nil {
		return fmt.Errorf("security: store enrollment: %w", err)
	}
	m.enr = rec
	m.verifier, m.opener, m.leaf = nil, nil, nil
	m.log.Info("device enrolled", "device", rec.DeviceID)
	return nil
}

// Certificate returns the device's TLS client certificate: the leaf
// alone. Gateways pin the device CA (pki.ServerTLSConfig requires it) and
// ignore intermediates a device sends, so the device CA would only cost
// bytes on the link and, in every session a gateway holds, a parsed
// certificate (about 3 KiB) kept by crypto/tls.
func (m *Manager) Certificate() (*tls.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.enr == nil {
		return nil, ErrNotEnrolled
	}
	leaf, err := m.leafLocked()
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{m.enr.Chain[0]}, PrivateKey: m.key, Leaf: leaf}, nil
}

func (m *Manager) leafLocked() (*x509.Certificate, error) {
	if m.leaf == nil {
		leaf, err := x509.ParseCertificate(m.enr.Chain[0])
		if err != nil {
			return nil, fmt.Errorf("security: parse certificate: %w", err)
		}
		m.leaf = leaf
	}
	return m.leaf, nil
}

// RenewAt returns when the device certificate should be renewed (see
// pki.RenewAt); the zero time before enrollment.
func (m *Manager) RenewAt() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.enr == nil {
		return time.Time{}
	}
	leaf, err := m.leafLocked()
	if err != nil {
		return time.Time{}
	}
	return pki.RenewAt(leaf)
}

// NeedsRenewal reports whether the device certificate is in its renewal
// window by the device clock.
func (m *Manager) NeedsRenewal() bool {
	at := m.RenewAt()
	return !at.IsZero() && !m.clock().Before(at)
}

func (m *Manager) verifierLocked() (*artifact.Verifier, error) {
	if m.enr == nil {
		return nil, ErrNotEnrolled
	}
	if m.verifier != nil {
		return m.verifier, nil
	}
	// The sealing key unwraps the content keys of format 2 confidential
	// artifacts; the Opener (which needs the pinned platform sealing key)
	// opens format 1 ones.
	cfg := artifact.VerifierConfig{DeviceID: m.enr.DeviceID, Now: m.clock, SealingKey: m.sealing}
	for _, k := range m.enr.SigningKeys {
		cfg.TrustedKeys = append(cfg.TrustedKeys, ed25519.PublicKey(k))
	}
	if op, err := m.openerLocked(); err == nil {
		cfg.Opener = op
	}
	v, err := artifact.NewVerifier(cfg)
	if err != nil {
		return nil, fmt.Errorf("security: %w", err)
	}
	m.verifier = v
	return v, nil
}

func (m *Manager) openerLocked() (*seal.Opener, error) {
	if m.opener != nil {
		return m.opener, nil
	}
	if m.enr == nil || len(m.enr.SealingKeys) == 0 {
		return nil, fmt.Errorf("security: no platform sealing key: %w", seal.ErrDecrypt)
	}
	var pubs []*ecdh.PublicKey
	for _, k := range m.enr.SealingKeys {
		p, err := seal.ParsePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("security: %w", err)
		}
		pubs = append(pubs, p)
	}
	op, err := seal.NewOpener(m.sealing, pubs, seal.OpenerOptions{})
	if err != nil {
		return nil, fmt.Errorf("security: %w", err)
	}
	m.opener = op
	return op, nil
}

// marks are the replay high-water marks; they implement
// artifact.SequenceStore.
type marks struct {
	mu sync.Mutex
	m  map[string]uint64
}

// LastSequence implements artifact.SequenceStore.
func (r *marks) LastSequence(app string) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[app], nil
}

func (r *marks) set(app string, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]uint64)
	}
	if seq > r.m[app] {
		r.m[app] = seq
	}
}
