package seal

import (
	"crypto/cipher"
	"crypto/ecdh"
	"fmt"
	"sync"
)

// OpenerOptions tunes an Opener.
type OpenerOptions struct {
	// MaxSealedSize bounds the size of a sealed blob. Zero means
	// DefaultMaxSealedSize.
	MaxSealedSize int
	// CacheSize is the number of epochs whose derived keys are kept. Zero
	// means 4; negative disables the cache.
	CacheSize int
}

// MaxTrustedKeys bounds the number of platform keys an Opener trusts (the
// current key and those being rotated in or out).
const MaxTrustedKeys = 8

// Opener opens blobs sealed for one device. It is safe for concurrent use.
type Opener struct {
	device    *ecdh.PrivateKey
	devPub    []byte
	senders   map[KeyID]*sender
	maxSealed int

	mu    sync.Mutex
	cache []cachedEpoch // ring, newest at next-1
	next  int
}

type sender struct {
	pub    []byte
	static []byte // X25519(d, S)
}

type cachedEpoch struct {
	sender KeyID
	eph    [32]byte
	aeads  [numPurposes]cipher.AEAD
}

// NewOpener returns an Opener for the device's X25519 key that accepts blobs
// from the given platform keys (at most MaxTrustedKeys).
func NewOpener(device *ecdh.PrivateKey, platform []*ecdh.PublicKey, opts OpenerOptions) (*Opener, error) {
	if err := checkX25519Private(device); err != nil {
		return nil, err
	}
	if len(platform) == 0 {
		return nil, newError(ErrInvalidKey, "no platform sealing key")
	}
	if len(platform) > MaxTrustedKeys {
		return nil, newError(ErrInvalidKey, "%d platform sealing keys, limit %d", len(platform), MaxTrustedKeys)
	}
	o := &Opener{
		device:    device,
		devPub:    device.PublicKey().Bytes(),
		senders:   make(map[KeyID]*sender, len(platform)),
		maxSealed: opts.MaxSealedSize,
	}
	if o.maxSealed <= 0 {
		o.maxSealed = DefaultMaxSealedSize
	}
	for i, pub := range platform {
		if err := checkX25519Public(pub); err != nil {
			return nil, err
		}
		static, err := device.ECDH(pub)
		if err != nil {
			return nil, &Error{Err: ErrInvalidKey, Detail: fmt.Sprintf("platform key %d", i), Cause: err}
		}
		o.senders[KeyIDOf(pub)] = &sender{pub: pub.Bytes(), static: static}
	}
	size := opts.CacheSize
	if size == 0 {
		size = 4
	}
	if size > 0 {
		o.cache = make([]cachedEpoch, 0, size)
	}
	return o, nil
}

// Open authenticates and decrypts a blob sealed for purpose p with aad, and
// returns the plaintext. Every failure is an *Error; see PeerMessage for what
// to tell the peer.
func (o *Opener) Open(p Purpose, sealed, aad []byte) ([]byte, error) {
	h, err := ParseHeader(sealed, o.maxSealed)
	if err != nil {
		return nil, err
	}
	if h.Purpose != p {
		return nil, newError(ErrDecrypt, "blob sealed for %s, want %s", h.Purpose, p)
	}
	aeads, cached, err := o.keys(h)
	if err != nil {
		return nil, err
	}
	plain, err := aeads[p].Open(nil, h.Nonce[:], sealed[HeaderSize:], additionalData(sealed[:HeaderSize], aad))
	if err != nil {
		return nil, &Error{Err: ErrDecrypt, Detail: fmt.Sprintf("%s blob from key %s, counter %d: authentication failed", p, h.Sender, h.Counter()), Cause: err}
	}
	if !cached {
		o.remember(h, aeads)
	}
	return plain, nil
}

// keys returns the derived keys for h's epoch, from the cache or by key
// agreement.
func (o *Opener) keys(h *Header) ([numPurposes]cipher.AEAD, bool, error) {
	snd, ok := o.senders[h.Sender]
	if !ok {
		return [numPurposes]cipher.AEAD{}, false, newError(ErrUnknownSender, "sender key %s is not trusted", h.Sender)
	}
	o.mu.Lock()
	for i := range o.cache {
		if c := &o.cache[i]; c.sender == h.Sender && c.eph == h.Ephemeral {
			a := c.aeads
			o.mu.Unlock()
			return a, true, nil
		}
	}
	o.mu.Unlock()
	ephPub, err := ecdh.X25519().NewPublicKey(h.Ephemeral[:])
	if err != nil {
		return [numPurposes]cipher.AEAD{}, false, &Error{Err: ErrDecrypt, Detail: "ephemeral key", Cause: err}
	}
	shared, err := o.device.ECDH(ephPub)
	if err != nil {
		return [numPurposes]cipher.AEAD{}, false, &Error{Err: ErrDecrypt, Detail: "ephemeral key agreement", Cause: err}
	}
	aeads, err := deriveKeys(shared, snd.static, h.Ephemeral[:], snd.pub, o.devPub)
	clear(shared)
	if err != nil {
		return [numPurposes]cipher.AEAD{}, false, err
	}
	return aeads, false, nil
}

// remember caches an epoch's keys once a blob of it has opened.
func (o *Opener) remember(h *Header, aeads [numPurposes]cipher.AEAD) {
	if o.cache == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range o.cache {
		if c := &o.cache[i]; c.sender == h.Sender && c.eph == h.Ephemeral {
			return
		}
	}
	e := cachedEpoch{sender: h.Sender, eph: h.Ephemeral, aeads: aeads}
	if len(o.cache) < cap(o.cache) {
		o.cache = append(o.cache, e)
		return
	}
	o.cache[o.next] = e
	o.next = (o.next + 1) % len(o.cache)
}
