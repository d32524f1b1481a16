// Package edkey decides whether a 32-byte string is an Ed25519 public key
// Wasmbed may pin or trust.
//
// Go's crypto/ed25519 verifies with the cofactorless equation and decodes
// public keys leniently (non-canonical encodings are accepted, as ZIP 215
// allows). Under a public key of small order — the identity, the point of
// order 2, the points of order 4 and 8, and the non-canonical spellings of
// the first two — [k]A takes at most eight values, so anyone can produce a
// signature that verifies for a message of their choice without any private
// key (R = the identity, S = 0 works for one message in eight). Such keys
// must never be pinned: [Check] refuses them, along with encodings that are
// not canonical and strings that are not points of the curve at all.
//
// Keys with a small-order component added to a prime-order point (mixed
// order) are not refused: signing under them still needs the private
// scalar, so they give an attacker nothing.
//
// The package depends on the standard library only; it runs on devices.
package edkey

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
)

// Sentinel errors; the error Check returns is an *Error matching one.
var (
	// ErrLength: the key is not 32 bytes long.
	ErrLength = errors.New("ed25519 public key has the wrong length")
	// ErrNonCanonical: the encoded y coordinate is not below the field
	// prime (a second spelling of another point).
	ErrNonCanonical = errors.New("ed25519 public key is not canonically encoded")
	// ErrNotOnCurve: the encoding is no point of the curve.
	ErrNotOnCurve = errors.New("ed25519 public key is not a curve point")
	// ErrSmallOrder: the point has order 1, 2, 4 or 8; signatures under it
	// can be forged without a private key.
	ErrSmallOrder = errors.New("ed25519 public key has small order")
)

// Error is a refused key: Reason is one of the sentinels.
type Error struct {
	// Reason is ErrLength, ErrNonCanonical, ErrNotOnCurve or ErrSmallOrder.
	Reason error
	// Detail says more, for logs.
	Detail string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Reason.Error()
	}
	return e.Reason.Error() + ": " + e.Detail
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Reason }

var (
	// p is the field prime 2^255 - 19.
	p = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	// d is the curve constant -121665/121666 mod p.
	d = func() *big.Int {
		num := new(big.Int).Neg(big.NewInt(121665))
		den := new(big.Int).ModInverse(big.NewInt(121666), p)
		return num.Mul(num, den).Mod(num, p)
	}()
	one = big.NewInt(1)
)

// smallOrderY holds the y coordinates of the eight points of small order,
// as canonical little-endian encodings without the sign bit: 0 (order 4),
// 1 (the identity), p-1 (order 2) and the two y values of the points of
// order 8. Both signs of x give a small-order point for each.
var smallOrderY = [][32]byte{
	{},
	{0x01},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
		0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
	{0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
		0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
}

// CheckFast refuses what Check refuses except points off the curve, with
// byte comparisons only (no allocation): the length, non-canonical
// encodings and the points of small order — everything under which a
// signature can be forged. It serves hot paths (every TLS handshake) for
// keys that Check accepted when they were pinned or certified; a key off
// the curve admits no forgery, crypto/ed25519 refuses to decode it.
func CheckFast(pub []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return &Error{Reason: ErrLength, Detail: fmt.Sprintf("%d bytes, want %d", len(pub), ed25519.PublicKeySize)}
	}
	var enc [32]byte
	copy(enc[:], pub)
	enc[31] &= 0x7f
	for _, y := range smallOrderY {
		if enc == y {
			return &Error{Reason: ErrSmallOrder}
		}
	}
	if nonCanonical(&enc) {
		return &Error{Reason: ErrNonCanonical, Detail: "y coordinate not below 2^255-19"}
	}
	return nil
}

// nonCanonical reports whether the little-endian y (sign bit cleared) is at
// least p = 2^255-19, whose encoding is ed ff ... ff 7f.
func nonCanonical(enc *[32]byte) bool {
	if enc[31] != 0x7f || enc[0] < 0xed {
		return false
	}
	for _, b := range enc[1:31] {
		if b != 0xff {
			return false
		}
	}
	return true
}

// Check returns nil if pub is a canonically encoded Ed25519 public key of
// large order, and an *Error otherwise. It costs a few big-integer
// operations (see BenchmarkCheck): call it where a key is pinned or
// accepted, not on every signature.
func Check(pub []byte) error {
	if err := CheckFast(pub); err != nil {
		return err
	}
	sign := pub[31] >> 7
	// y, big-endian, sign bit cleared.
	var be [32]byte
	for i := range be {
		be[31-i] = pub[i]
	}
	be[0] &= 0x7f
	y := new(big.Int).SetBytes(be[:])
	// x^2 = u/v with u = y^2 - 1, v = d y^2 + 1 must be a square mod p;
	// u/v is one exactly when u·v is (u/v = u·v / v^2), which spares the
	// inversion. v is never zero: -1/d is not a square.
	u := new(big.Int).Mul(y, y)
	v := new(big.Int).Mul(d, u)
	u.Sub(u, one)
	v.Add(v, one)
	uv := u.Mul(u, v)
	uv.Mod(uv, p)
	if uv.Sign() == 0 {
		// x = 0: only y = ±1, both listed above; a set sign bit with x = 0
		// is no valid encoding either way.
		if sign == 1 {
			return &Error{Reason: ErrNotOnCurve, Detail: "x = 0 with the sign bit set"}
		}
		return &Error{Reason: ErrSmallOrder}
	}
	if big.Jacobi(uv, p) != 1 {
		return &Error{Reason: ErrNotOnCurve, Detail: "x^2 is not a square"}
	}
	return nil
}
