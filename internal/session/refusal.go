package session

import (
	"errors"

	"github.com/wasmbed/wasmbed/internal/protocol"
)

// Refusal is an error a Handler, Enroller or Renewer returns to refuse a
// device with a clear answer. Text is what the device is told; Err, the
// detailed cause, only reaches the gateway's log.
type Refusal struct {
	// Code is the Error code sent to the device.
	Code protocol.ErrorCode
	// Disconnect, when non-zero, makes a refused session end with a
	// Disconnect of this reason (revoked devices) instead of an Error.
	Disconnect protocol.DisconnectReason
	// Reason is a short CamelCase word for metrics and logs, from a small
	// fixed set (UnknownDevice, Revoked, PairingClosed, ...).
	Reason string
	// Text is the explanation sent to the device.
	Text string
	// Err is the cause, for the gateway's log.
	Err error
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return "refused (" + r.Reason + "): " + r.Text + ": " + r.Err.Error()
	}
	return "refused (" + r.Reason + "): " + r.Text
}

func (r *Refusal) Unwrap() error { return r.Err }

// asRefusal returns err as a *Refusal; any other error becomes an internal
// error whose detail stays in the log.
func asRefusal(err error) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	return &Refusal{Code: protocol.CodeInternal, Reason: "Internal", Text: "internal error", Err: err}
}

// ReasonBusy is the Refusal reason of an EnrollRequest refused because
// Limits.MaxEnrollments enrollments are being answered already.
const ReasonBusy = "Busy"
