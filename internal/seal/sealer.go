package seal

import (
	"crypto/cipher"
	"crypto/ecdh"
	"fmt"
	"sync/atomic"
)

// SealerOptions tunes a Sealer.
type SealerOptions struct {
	// MessageLimit is the number of messages one key seals per purpose
	// before Seal fails with ErrKeyExhausted. Zero means MaxMessagesPerKey;
	// larger values are refused.
	MessageLimit uint64
	// ByteLimit is the plaintext volume one key seals per purpose before
	// Seal fails with ErrKeyExhausted. Zero means MaxBytesPerKey; larger
	// values are refused.
	ByteLimit uint64
	// MaxSealedSize bounds the size of a sealed blob. Zero means
	// DefaultMaxSealedSize.
	MaxSealedSize int
}

// Sealer seals payloads for one device. It is safe for concurrent use.
type Sealer struct {
	platform  *ecdh.PrivateKey
	sender    KeyID
	device    []byte // device's X25519 public key
	devPub    *ecdh.PublicKey
	static    []byte // X25519(s, D)
	limit     uint64
	byteLimit uint64
	maxSealed int
	epoch     atomic.Pointer[epoch]
}

// epoch is one ephemeral key and the keys and counters derived from it.
type epoch struct {
	eph      []byte
	aeads    [numPurposes]cipher.AEAD
	counters [numPurposes]atomic.Uint64
	volume   [numPurposes]atomic.Uint64
}

// NewSealer returns a Sealer that seals from the platform's static sealing
// key to the device's X25519 public key.
func NewSealer(platform *ecdh.PrivateKey, device *ecdh.PublicKey, opts SealerOptions) (*Sealer, error) {
	if err := checkX25519Private(platform); err != nil {
		return nil, err
	}
	if err := checkX25519Public(device); err != nil {
		return nil, err
	}
	limit := opts.MessageLimit
	if limit == 0 {
		limit = MaxMessagesPerKey
	}
	if limit > MaxMessagesPerKey {
		return nil, fmt.Errorf("seal: message limit %d above the maximum %d", limit, MaxMessagesPerKey)
	}
	byteLimit := opts.ByteLimit
	if byteLimit == 0 {
		byteLimit = MaxBytesPerKey
	}
	if byteLimit > MaxBytesPerKey {
		return nil, fmt.Errorf("seal: byte limit %d above the maximum %d", byteLimit, MaxBytesPerKey)
	}
	maxSealed := opts.MaxSealedSize
	if maxSealed <= 0 {
		maxSealed = DefaultMaxSealedSize
	}
	if maxSealed < Overhead {
		return nil, fmt.Errorf("seal: max sealed size %d below the %d-byte overhead", maxSealed, Overhead)
	}
	static, err := platform.ECDH(device)
	if err != nil {
		return nil, &Error{Err: ErrInvalidKey, Detail: "device public key", Cause: err}
	}
	s := &Sealer{
		platform:  platform,
		sender:    KeyIDOf(platform.PublicKey()),
		device:    device.Bytes(),
		devPub:    device,
		static:    static,
		limit:     limit,
		byteLimit: byteLimit,
		maxSealed: maxSealed,
	}
	if err := s.Rekey(); err != nil {
		return nil, err
	}
	return s, nil
}

// Rekey starts a new epoch: a fresh ephemeral key, fresh per-purpose keys and
// counters back at zero. Seals already in progress finish under the old key.
func (s *Sealer) Rekey() error {
	ek, err := GenerateKey()
	if err != nil {
		return err
	}
	shared, err := ek.ECDH(s.devPub)
	if err != nil {
		return &Error{Err: ErrInvalidKey, Detail: "ephemeral agreement", Cause: err}
	}
	eph := ek.PublicKey().Bytes()
	aeads, err := deriveKeys(shared, s.static, eph, s.platform.PublicKey().Bytes(), s.device)
	clear(shared)
	if err != nil {
		return err
	}
	s.epoch.Store(&epoch{eph: eph, aeads: aeads})
	return nil
}

// Sender returns the key id of the platform key this Sealer seals with.
func (s *Sealer) Sender() KeyID { return s.sender }

// Remaining returns how many more messages the current key may seal for p.
func (s *Sealer) Remaining(p Purpose) uint64 {
	if !p.Valid() {
		return 0
	}
	used := s.epoch.Load().counters[p].Load()
	if used >= s.limit {
		return 0
	}
	return s.limit - used
}

// MaxPlaintext returns the largest plaintext Seal accepts.
func (s *Sealer) MaxPlaintext() int { return s.maxSealed - Overhead }

// Seal encrypts plaintext for purpose p, binding aad, and returns the sealed
// blob. It fails with ErrKeyExhausted once the current key has reached its
// message or byte limit for p (call Rekey), and with ErrTooLarge when the blob would exceed the
// size limit.
func (s *Sealer) Seal(p Purpose, plaintext, aad []byte) ([]byte, error) {
	if !p.Valid() {
		return nil, fmt.Errorf("seal: unknown purpose %d", uint8(p))
	}
	if len(plaintext) > s.MaxPlaintext() {
		return nil, newError(ErrTooLarge, "plaintext is %d bytes, limit %d", len(plaintext), s.MaxPlaintext())
	}
	ep := s.epoch.Load()
	// The atomic increment hands every caller a distinct counter; a
	// refused value is never handed out again, so no nonce can repeat.
	n := ep.counters[p].Add(1) - 1
	if n >= s.limit {
		return nil, newError(ErrKeyExhausted, "%s key sealed %d messages", p, s.limit)
	}
	if v := ep.volume[p].Add(uint64(len(plaintext))); v > s.byteLimit {
		return nil, newError(ErrKeyExhausted, "%s key would seal %d bytes, limit %d", p, v, s.byteLimit)
	}
	out := make([]byte, HeaderSize, HeaderSize+len(plaintext)+TagSize)
	out = appendHeader(out[:0], p, s.sender, ep.eph, n)
	return ep.aeads[p].Seal(out, out[HeaderSize-NonceSize:HeaderSize], plaintext, additionalData(out[:HeaderSize], aad)), nil
}
