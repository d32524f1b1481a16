package protocol

import (
	"errors"
	"strconv"
)

// Sentinel errors. Every error returned by Decode, Reader and Writer that
// callers may branch on matches one of these with errors.Is; the typed errors
// below carry the details.
var (
	// ErrMalformed matches frames and messages that are not valid protocol
	// data: bad CBOR, wrong types, duplicate map keys, indefinite lengths,
	// CBOR tags, trailing bytes, missing required fields, empty frames.
	ErrMalformed = errors.New("protocol: malformed message")
	// ErrLimitExceeded matches every *LimitError.
	ErrLimitExceeded = errors.New("protocol: decoding limit exceeded")
	// ErrFrameTooLarge matches a *LimitError for the frame size limit. The
	// stream is no longer aligned on a frame boundary: close the connection.
	ErrFrameTooLarge = errors.New("protocol: frame too large")
	// ErrTooDeep matches a *LimitError for the nesting limit.
	ErrTooDeep = errors.New("protocol: message nested too deeply")
	// ErrTooManyElements matches a *LimitError for the array length limit.
	ErrTooManyElements = errors.New("protocol: array has too many elements")
	// ErrTooManyPairs matches a *LimitError for the map size limit.
	ErrTooManyPairs = errors.New("protocol: map has too many pairs")
	// ErrTruncated matches a stream that ended inside a frame. It also
	// matches io.ErrUnexpectedEOF.
	ErrTruncated = errors.New("protocol: truncated frame")
	// ErrUnsupported matches *UnsupportedMessageError.
	ErrUnsupported = errors.New("protocol: unsupported message type")
	// ErrUnsupportedVersion matches *VersionError.
	ErrUnsupportedVersion = errors.New("protocol: unsupported protocol version")
	// ErrWrongDirection matches *DirectionError.
	ErrWrongDirection = errors.New("protocol: message sent in the wrong direction")
)

// Limit names a decoding limit in a *LimitError.
type Limit string

// Limits that a *LimitError can report.
const (
	LimitFrameSize     Limit = "frame size"
	LimitNestedLevels  Limit = "nested levels"
	LimitArrayElements Limit = "array elements"
	LimitMapPairs      Limit = "map pairs"
)

// LimitError reports input refused because it exceeds one of the Limits.
// Only LimitFrameSize leaves the stream unaligned; after the other limits
// the Reader has consumed the whole frame and may read on.
type LimitError struct {
	// Limit names the limit that was hit.
	Limit Limit
	// Max is the configured maximum.
	Max int64
	// Got is the value seen, or 0 when the decoder stopped before learning it.
	Got int64
	// MessageID is the id of the offending message, or 0 if unknown.
	MessageID uint64
}

// Error describes the problem.
func (e *LimitError) Error() string {
	s := "protocol: " + string(e.Limit) + " limit exceeded: "
	if e.Got > 0 {
		s += strconv.FormatInt(e.Got, 10) + " > "
	}
	return s + "max " + strconv.FormatInt(e.Max, 10)
}

// Is reports whether target is ErrLimitExceeded or the sentinel of e's limit.
func (e *LimitError) Is(target error) bool {
	if target == ErrLimitExceeded {
		return true
	}
	switch e.Limit {
	case LimitFrameSize:
		return target == ErrFrameTooLarge
	case LimitNestedLevels:
		return target == ErrTooDeep
	case LimitArrayElements:
		return target == ErrTooManyElements
	case LimitMapPairs:
		return target == ErrTooManyPairs
	}
	return false
}

func (e *LimitError) reply() (uint64, ErrorCode) { return e.MessageID, CodeTooLarge }

// MalformedError reports a frame or message that is not valid protocol data.
type MalformedError struct {
	// MessageID is the id of the offending message, or 0 when the envelope
	// header could not be read.
	MessageID uint64
	// Type is the message type, or 0 when the envelope header could not be
	// read.
	Type Type
	// Err describes the problem; it may wrap an error of the CBOR library.
	Err error
}

// Error describes the problem.
func (e *MalformedError) Error() string {
	s := "protocol: malformed "
	if e.Type != 0 {
		s += e.Type.String() + " "
	}
	s += "message"
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *MalformedError) Unwrap() error { return e.Err }

// Is reports whether target is ErrMalformed.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

func (e *MalformedError) reply() (uint64, ErrorCode) { return e.MessageID, CodeMalformed }

// UnsupportedMessageError reports an envelope with a message type this
// version does not know, typically from a newer peer. The frame was consumed;
// answer it with ReplyTo and keep the session.
type UnsupportedMessageError struct {
	// MessageID is the id of the unsupported message.
	MessageID uint64
	// Type is the unknown message type.
	Type Type
}

// Error describes the problem.
func (e *UnsupportedMessageError) Error() string {
	return "protocol: unsupported message type " + strconv.FormatUint(uint64(e.Type), 10)
}

// Is reports whether target is ErrUnsupported.
func (e *UnsupportedMessageError) Is(target error) bool { return target == ErrUnsupported }

func (e *UnsupportedMessageError) reply() (uint64, ErrorCode) { return e.MessageID, CodeUnsupported }

// VersionError reports an envelope of a protocol version this package does
// not speak.
type VersionError struct {
	// MessageID is the id of the message.
	MessageID uint64
	// Version is the version the peer sent.
	Version uint16
}

// Error describes the problem.
func (e *VersionError) Error() string {
	return "protocol: unsupported protocol version " + strconv.FormatUint(uint64(e.Version), 10) +
		" (want " + strconv.FormatUint(uint64(Version), 10) + ")"
}

// Is reports whether target is ErrUnsupportedVersion.
func (e *VersionError) Is(target error) bool { return target == ErrUnsupportedVersion }

func (e *VersionError) reply() (uint64, ErrorCode) { return e.MessageID, CodeUnsupportedVersion }

// DirectionError reports a message that its sender may not send, e.g. a
// Deploy received by a gateway, or a Heartbeat a gateway tried to write.
type DirectionError struct {
	// MessageID is the id of the message.
	MessageID uint64
	// Type is the message type.
	Type Type
	// Sender is the side that sent (or tried to send) the message.
	Sender Side
}

// Error describes the problem.
func (e *DirectionError) Error() string {
	return "protocol: " + e.Type.String() + " may be sent only by the " +
		e.Type.Sender().String() + ", not the " + e.Sender.String()
}

// Is reports whether target is ErrWrongDirection.
func (e *DirectionError) Is(target error) bool { return target == ErrWrongDirection }

func (e *DirectionError) reply() (uint64, ErrorCode) { return e.MessageID, CodeUnexpected }

// replier is implemented by the errors that deserve an Error reply.
type replier interface {
	error
	reply() (messageID uint64, code ErrorCode)
}

// ReplyTo builds the Error envelope a receiver sends back for an error
// returned by Codec.Decode or Reader.ReadEnvelope: CodeUnsupported for an
// unknown message type, CodeUnsupportedVersion, CodeMalformed, CodeTooLarge,
// or CodeUnexpected for a message sent in the wrong direction. The reply
// carries the offending message's id (0 when it could not be read). ok is
// false for errors that need no reply: I/O errors, io.EOF, and a malformed
// Error message (an Error is never answered with an Error).
//
// After ReplyTo, the receiver may keep reading unless errors.Is(err,
// ErrFrameTooLarge) or the error is an I/O error: then it should send the
// reply (optionally followed by a Disconnect) and close the connection.
func ReplyTo(err error) (reply Envelope, ok bool) {
	var r replier
	if !errors.As(err, &r) {
		return Envelope{}, false
	}
	if me, isMalformed := r.(*MalformedError); isMalformed && me.Type == TypeError {
		return Envelope{}, false
	}
	id, code := r.reply()
	return Envelope{
		Version:   Version,
		MessageID: id,
		Message:   &Error{Code: code, Text: r.Error()},
	}, true
}
