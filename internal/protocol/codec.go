package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/fxamacker/cbor/v2"
)

// Default decoding limits.
const (
	// DefaultMaxFrameSize is the default largest frame body, 1 MiB.
	DefaultMaxFrameSize = 1 << 20
	// EnrollmentMaxFrameSize is the frame size limit recommended for
	// enrollment connections, whose peers are not yet authenticated: it fits
	// an EnrollRequest with a CSR and an EnrollResponse with a certificate
	// chain.
	EnrollmentMaxFrameSize = 16 << 10
	// DefaultMaxNestedLevels is the default nesting limit. Version 1 messages
	// nest at most 3 levels (MetricsReport: body map, apps array, app map).
	DefaultMaxNestedLevels = 8
	// DefaultMaxArrayElements is the default array length limit.
	DefaultMaxArrayElements = 256
	// DefaultMaxMapPairs is the default map size limit.
	DefaultMaxMapPairs = 256

	// MinMaxNestedLevels is the smallest nesting limit a Codec accepts.
	MinMaxNestedLevels = 4
	// MinMaxArrayElements is the smallest array length limit a Codec accepts.
	MinMaxArrayElements = 16
	// MinMaxMapPairs is the smallest map size limit a Codec accepts.
	MinMaxMapPairs = 16
	// MaxFrameSizeLimit is the largest frame size the 4-byte length prefix
	// can describe.
	MaxFrameSizeLimit = math.MaxUint32
)

// Limits bound what a Codec and a Reader accept. They are checked before
// memory is allocated for the data they describe: the frame size against the
// length prefix before the body is read, and the CBOR limits during a
// well-formedness scan before anything is decoded. A zero field takes its
// default.
type Limits struct {
	// MaxFrameSize is the largest frame body, in bytes, excluding the 4-byte
	// length prefix. Default DefaultMaxFrameSize.
	MaxFrameSize int64
	// MaxNestedLevels bounds the nesting of arrays and maps in a message body,
	// the body map itself being level 1. Default DefaultMaxNestedLevels,
	// minimum MinMaxNestedLevels, maximum 64.
	MaxNestedLevels int
	// MaxArrayElements bounds the length of any array in a message body.
	// Default DefaultMaxArrayElements, minimum MinMaxArrayElements.
	MaxArrayElements int
	// MaxMapPairs bounds the number of pairs of any map in a message body.
	// Default DefaultMaxMapPairs, minimum MinMaxMapPairs.
	MaxMapPairs int
}

// withDefaults returns l with zero fields set to their defaults, or an error
// if a field is out of range.
func (l Limits) withDefaults() (Limits, error) {
	if l.MaxFrameSize == 0 {
		l.MaxFrameSize = DefaultMaxFrameSize
	}
	if l.MaxNestedLevels == 0 {
		l.MaxNestedLevels = DefaultMaxNestedLevels
	}
	if l.MaxArrayElements == 0 {
		l.MaxArrayElements = DefaultMaxArrayElements
	}
	if l.MaxMapPairs == 0 {
		l.MaxMapPairs = DefaultMaxMapPairs
	}
	switch {
	case l.MaxFrameSize < 0 || l.MaxFrameSize > MaxFrameSizeLimit:
		return l, fmt.Errorf("protocol: MaxFrameSize %d out of range [1, %d]", l.MaxFrameSize, int64(MaxFrameSizeLimit))
	case l.MaxNestedLevels < MinMaxNestedLevels || l.MaxNestedLevels > 64:
		return l, fmt.Errorf("protocol: MaxNestedLevels %d out of range [%d, 64]", l.MaxNestedLevels, MinMaxNestedLevels)
	case l.MaxArrayElements < MinMaxArrayElements:
		return l, fmt.Errorf("protocol: MaxArrayElements %d below minimum %d", l.MaxArrayElements, MinMaxArrayElements)
	case l.MaxMapPairs < MinMaxMapPairs:
		return l, fmt.Errorf("protocol: MaxMapPairs %d below minimum %d", l.MaxMapPairs, MinMaxMapPairs)
	}
	return l, nil
}

// Envelope is the unit of the protocol: one per frame.
//
// On the wire it is the CBOR array [version, message-id, type, body].
type Envelope struct {
	// Version is the protocol version; Encode writes Version when it is zero.
	Version uint16
	// MessageID correlates a reply with its request: each side numbers the
	// requests it sends (devices with odd ids, gateways with even ids,
	// starting at 1 and 2), and a reply carries the id of its request. Zero
	// means "no message", used only by Error replies to unreadable input.
	MessageID uint64
	// Message is the body.
	Message Message
}

// LogValue lets log/slog print an envelope as its type and message id,
// never its contents (artifacts are large, configuration may be private).
func (e Envelope) LogValue() slog.Value {
	var t Type
	if e.Message != nil {
		t = e.Message.Type()
	}
	return slog.GroupValue(slog.String("type", t.String()), slog.Uint64("id", e.MessageID))
}

// Codec decodes envelopes under a set of Limits and checks that each message
// comes from the side allowed to send it. It is immutable and safe for
// concurrent use: build one per configuration and share it between sessions.
type Codec struct {
	local  Side
	limits Limits
	dm     cbor.DecMode
}

// encMode encodes message bodies deterministically (RFC 8949 section 4.2.1,
// core deterministic encoding).
var encMode cbor.UserBufferEncMode = func() cbor.UserBufferEncMode {
	em, err := cbor.CoreDetEncOptions().UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// rejectedSimpleValues refuses null and undefined: no message uses them.
var rejectedSimpleValues = func() *cbor.SimpleValueRegistry {
	r, err := cbor.NewSimpleValueRegistryFromDefaults(
		cbor.WithRejectedSimpleValue(cbor.SimpleValue(22)), // null
		cbor.WithRejectedSimpleValue(cbor.SimpleValue(23)), // undefined
	)
	if err != nil {
		panic(err)
	}
	return r
}()

// NewCodec returns a Codec for the given side of a session: a Gateway codec
// accepts messages a device may send and a Device codec messages a gateway
// may send; an Either codec accepts any message. Zero fields of lim take
// their defaults.
func NewCodec(local Side, lim Limits) (*Codec, error) {
	lim, err := lim.withDefaults()
	if err != nil {
		return nil, err
	}
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  lim.MaxNestedLevels,
		MaxArrayElements: lim.MaxArrayElements,
		MaxMapPairs:      lim.MaxMapPairs,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
		NaN:              cbor.NaNDecodeForbidden,
		Inf:              cbor.InfDecodeForbidden,
		SimpleValues:     rejectedSimpleValues,
	}.DecMode()
	if err != nil {
		return nil, fmt.Errorf("protocol: build decoder: %w", err)
	}
	return &Codec{local: local, limits: lim, dm: dm}, nil
}

// Limits returns the codec's limits, defaults filled in.
func (c *Codec) Limits() Limits { return c.limits }

// Side returns the side the codec decodes for.
func (c *Codec) Side() Side { return c.local }

// Decode decodes one frame body (without its length prefix) into an
// envelope. The returned message does not alias frame.
//
// Errors match ErrLimitExceeded (*LimitError), ErrMalformed
// (*MalformedError), ErrUnsupported (*UnsupportedMessageError),
// ErrUnsupportedVersion (*VersionError) or ErrWrongDirection
// (*DirectionError); ReplyTo turns each into the Error reply to send.
func (c *Codec) Decode(frame []byte) (Envelope, error) {
	if int64(len(frame)) > c.limits.MaxFrameSize {
		return Envelope{}, &LimitError{Limit: LimitFrameSize, Max: c.limits.MaxFrameSize, Got: int64(len(frame))}
	}
	h, body, err := parseHeader(frame)
	if err != nil {
		return Envelope{}, &MalformedError{Err: err}
	}
	if h.version != Version {
		return Envelope{}, &VersionError{MessageID: h.id, Version: h.version}
	}
	msg := newMessage(h.typ)
	if msg == nil {
		return Envelope{}, &UnsupportedMessageError{MessageID: h.id, Type: h.typ}
	}
	if s := h.typ.Sender(); s != Either && c.local != Either && s == c.local {
		return Envelope{}, &DirectionError{MessageID: h.id, Type: h.typ, Sender: c.local.peer()}
	}
	if err := c.dm.Unmarshal(body, msg); err != nil {
		return Envelope{}, c.bodyError(h, body, err)
	}
	if err := msg.validate(); err != nil {
		return Envelope{}, &MalformedError{MessageID: h.id, Type: h.typ, Err: err}
	}
	return Envelope{Version: h.version, MessageID: h.id, Message: msg}, nil
}

// bodyError maps an error of the CBOR decoder to a typed error.
func (c *Codec) bodyError(h header, body []byte, err error) error {
	var (
		nested *cbor.MaxNestedLevelError
		array  *cbor.MaxArrayElementsError
		pairs  *cbor.MaxMapPairsError
	)
	switch {
	case errors.As(err, &nested):
		return &LimitError{Limit: LimitNestedLevels, Max: int64(c.limits.MaxNestedLevels), Got: int64(c.limits.MaxNestedLevels) + 1, MessageID: h.id}
	case errors.As(err, &array):
		got := firstOversized(body, majorArray, uint64(c.limits.MaxArrayElements)) //nolint:gosec // limits are non-negative (Limits.withDefaults)
		return &LimitError{Limit: LimitArrayElements, Max: int64(c.limits.MaxArrayElements), Got: got, MessageID: h.id}
	case errors.As(err, &pairs):
		got := firstOversized(body, majorMap, uint64(c.limits.MaxMapPairs)) //nolint:gosec // limits are non-negative (Limits.withDefaults)
		return &LimitError{Limit: LimitMapPairs, Max: int64(c.limits.MaxMapPairs), Got: got, MessageID: h.id}
	}
	return &MalformedError{MessageID: h.id, Type: h.typ, Err: err}
}

// checkSend reports whether the codec's side may send a message of type t.
func (c *Codec) checkSend(id uint64, t Type) error {
	if s := t.Sender(); s != Either && c.local != Either && s != c.local {
		return &DirectionError{MessageID: id, Type: t, Sender: c.local}
	}
	return nil
}

// Encode returns the deterministic CBOR encoding of env, without a length
// prefix. It checks that the message is known and has its required fields;
// it does not check the direction (a Writer does).
func Encode(env Envelope) ([]byte, error) {
	var buf bytes.Buffer
	if err := encodeTo(&buf, env); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// AppendFrame appends the frame for env, length prefix included, to dst.
func AppendFrame(dst []byte, env Envelope) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	start := buf.Len()
	buf.Write(make([]byte, 4))
	if err := encodeTo(buf, env); err != nil {
		return dst, err
	}
	b := buf.Bytes()
	n := len(b) - start - 4
	if int64(n) > MaxFrameSizeLimit {
		return dst, &LimitError{Limit: LimitFrameSize, Max: MaxFrameSizeLimit, Got: int64(n), MessageID: env.MessageID}
	}
	binary.BigEndian.PutUint32(b[start:], uint32(n)) //nolint:gosec // n <= MaxFrameSizeLimit, checked above
	return b, nil
}

// encodeTo appends the encoding of env to buf.
func encodeTo(buf *bytes.Buffer, env Envelope) error {
	if env.Message == nil {
		return fmt.Errorf("protocol: encode message %d: %w", env.MessageID, errNilMessage)
	}
	t := env.Message.Type()
	if err := env.Message.validate(); err != nil {
		return &MalformedError{MessageID: env.MessageID, Type: t, Err: err}
	}
	v := env.Version
	if v == 0 {
		v = Version
	}
	buf.Grow(sizeHint(env.Message))
	buf.Write(appendHeader(buf.AvailableBuffer(), header{version: v, id: env.MessageID, typ: t}))
	if err := encMode.MarshalToBuffer(env.Message, buf); err != nil {
		return fmt.Errorf("protocol: encode %s: %w", t, err)
	}
	return nil
}

var errNilMessage = errors.New("nil message")

// sizeHint estimates the encoded size of m, so that large messages are
// encoded into a buffer allocated once.
func sizeHint(m Message) int {
	const overhead = 64 // envelope header, keys, string heads, small fields
	switch m := m.(type) {
	case *Deploy:
		return overhead + len(m.App) + len(m.Artifact) + len(m.Sealed)
	case *Update:
		return overhead + len(m.App) + len(m.Artifact) + len(m.Sealed)
	}
	return overhead
}

// header is the part of an envelope before the body.
type header struct {
	version uint16
	id      uint64
	typ     Type
}

// envelopeHead is the initial byte of an envelope: a definite array of 4.
const envelopeHead = 0x84

// appendHeader appends the envelope's array head and its first three
// elements to b.
func appendHeader(b []byte, h header) []byte {
	b = append(b, envelopeHead)
	b = appendUint(b, uint64(h.version))
	b = appendUint(b, h.id)
	return appendUint(b, uint64(h.typ))
}

// appendUint appends the shortest encoding of the unsigned integer v.
func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 24:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0x18, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0x19), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0x1a), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0x1b), v)
}

var (
	errEmptyFrame     = errors.New("empty frame")
	errNotEnvelope    = errors.New("envelope is not a 4-element array")
	errIndefEnvelope  = errors.New("indefinite-length envelope array")
	errShortHeader    = errors.New("envelope header truncated")
	errBadHeaderField = errors.New("envelope header field is not an unsigned integer")
)

// parseHeader reads the envelope header from frame and returns it with the
// encoded body.
func parseHeader(frame []byte) (header, []byte, error) {
	if len(frame) == 0 {
		return header{}, nil, errEmptyFrame
	}
	switch frame[0] {
	case envelopeHead:
	case 0x9f:
		return header{}, nil, errIndefEnvelope
	default:
		return header{}, nil, errNotEnvelope
	}
	rest := frame[1:]
	var fields [3]uint64
	for i := range fields {
		v, n, err := readUint(rest)
		if err != nil {
			return header{}, nil, fmt.Errorf("envelope field %d: %w", i, err)
		}
		fields[i], rest = v, rest[n:]
	}
	var h header
	h.id = fields[1]
	if fields[0] > math.MaxUint16 {
		return h, nil, fmt.Errorf("version %d out of range", fields[0])
	}
	if fields[2] > math.MaxUint32 {
		return h, nil, fmt.Errorf("message type %d out of range", fields[2])
	}
	h.version, h.typ = uint16(fields[0]), Type(fields[2]) //nolint:gosec // fields[0] <= MaxUint16, checked above
	if len(rest) == 0 {
		return h, nil, fmt.Errorf("envelope has no body: %w", errShortHeader)
	}
	return h, rest, nil
}

// readUint reads one CBOR unsigned integer (major type 0) from b.
func readUint(b []byte) (v uint64, n int, err error) {
	if len(b) == 0 {
		return 0, 0, errShortHeader
	}
	if b[0]>>5 != 0 {
		return 0, 0, errBadHeaderField
	}
	ai := b[0] & 0x1f
	switch {
	case ai < 24:
		return uint64(ai), 1, nil
	case ai > 27:
		return 0, 0, errBadHeaderField
	}
	n = 1 << (ai - 24) // 1, 2, 4 or 8 bytes follow
	if len(b) < 1+n {
		return 0, 0, errShortHeader
	}
	for _, c := range b[1 : 1+n] {
		v = v<<8 | uint64(c)
	}
	return v, 1 + n, nil
}

// CBOR major types that firstOversized looks for.
const (
	majorArray = 4
	majorMap   = 5
)

// firstOversized returns the declared length of the first array (or map,
// per major) in data that is longer than limit, or 0 if it finds none. It
// runs only to report an error the decoder already found, after data passed
// the decoder's checks up to that item, so it need not validate anything.
func firstOversized(data []byte, major byte, limit uint64) int64 {
	off, pending := 0, uint64(1)
	for pending > 0 && off < len(data) {
		mt, ai := data[off]>>5, data[off]&0x1f
		off++
		var arg uint64
		switch {
		case ai < 24:
			arg = uint64(ai)
		case ai <= 27:
			n := 1 << (ai - 24)
			if off+n > len(data) {
				return 0
			}
			for _, b := range data[off : off+n] {
				arg = arg<<8 | uint64(b)
			}
			off += n
		default:
			return 0 // indefinite lengths were refused earlier
		}
		pending--
		switch mt {
		case 2, 3: // byte and text strings
			if arg > uint64(len(data)-off) { //nolint:gosec // off <= len(data): checked by the loop and after each header
				return 0
			}
			off += int(arg)
		case majorArray, majorMap:
			if mt == major && arg > limit {
				return int64(min(arg, math.MaxInt64))
			}
			if arg > uint64(len(data)) {
				return 0
			}
			if mt == majorMap {
				arg *= 2
			}
			pending += arg
		case 6: // tag: its content follows
			pending++
		}
	}
	return 0
}
