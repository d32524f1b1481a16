package httpapi

import (
	"errors"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wasmbed/wasmbed/internal/fleetctl"
	"github.com/wasmbed/wasmbed/internal/pairing"
)

// PairingStatus is the pairing window as the API shows it.
type PairingStatus struct {
	// Open is true while gateways accept enrollments.
	Open bool `json:"open"`
	// OpenUntil is when the window closes by itself.
	OpenUntil *metav1.Time `json:"openUntil,omitempty"`
	// OpenedAt is when the window was opened.
	OpenedAt *metav1.Time `json:"openedAt,omitempty"`
	// OpenedBy names who opened it.
	OpenedBy string `json:"openedBy,omitempty"`
	// TokenRequired is true when enrolling devices must present the
	// pairing token.
	TokenRequired bool `json:"tokenRequired"`
	// Token is the generated pairing token, returned once by the open that
	// generated it and never stored in clear.
	Token string `json:"token,omitempty"`
}

// PairingOpenRequest is the body of opening the pairing window.
type PairingOpenRequest struct {
	// Duration is how long the window stays open, as a Go duration; at most
	// 24h, 15m when omitted.
	Duration string `json:"duration,omitempty"`
	// GenerateToken makes enrolling devices present a token, generated now
	// and returned once.
	GenerateToken bool `json:"generateToken,omitempty"`
}

func (a *api) pairingStatus(w pairing.Window) PairingStatus {
	now := a.opts.Clock.Now()
	s := PairingStatus{Open: w.OpenAt(now), TokenRequired: w.TokenRequired(), OpenedBy: w.OpenedBy}
	if !w.OpenUntil.IsZero() {
		t := metav1.NewTime(w.OpenUntil)
		s.OpenUntil = &t
	}
	if !w.OpenedAt.IsZero() {
		t := metav1.NewTime(w.OpenedAt)
		s.OpenedAt = &t
	}
	if !s.Open {
		s.TokenRequired = false
	}
	return s
}

func (a *api) showPairing(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	w, err := fleetctl.Pairing(c.r.Context(), a.opts.Reader, a.opts.SystemNamespace)
	if err != nil {
		if errors.Is(err, pairing.ErrMalformed) {
			return internal(err)
		}
		return fromKubernetes(err, "the pairing window")
	}
	return c.writeJSON(http.StatusOK, a.pairingStatus(w))
}

func (a *api) openPairing(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	var req PairingOpenRequest
	if err := c.readOptionalJSON(&req); err != nil {
		return err
	}
	var d time.Duration
	if req.Duration != "" {
		var err error
		if d, err = time.ParseDuration(req.Duration); err != nil || d <= 0 || d > pairing.MaxDuration {
			return invalidField("duration", "must be a duration from 1s to %v, such as 15m", pairing.MaxDuration)
		}
	}
	var token string
	if req.GenerateToken {
		var err error
		if token, err = pairing.NewToken(); err != nil {
			return internal(err)
		}
	}
	w, err := pairing.Open(a.opts.Clock.Now(), d, userName(c.user), []byte(token))
	if err != nil {
		return invalidField("duration", "%v", err)
	}
	if err := a.writePairing(c, w); err != nil {
		return err
	}
	s := a.pairingStatus(w)
	s.Token = token
	return c.writeJSON(http.StatusOK, s)
}

func (a *api) closePairing(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	if err := c.readOptionalJSON(&struct{}{}); err != nil {
		return err
	}
	if err := a.writePairing(c, pairing.Window{}); err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, a.pairingStatus(pairing.Window{}))
}

// writePairing stores w in the pairing ConfigMap (fleetctl.SetPairing).
func (a *api) writePairing(c *call, w pairing.Window) error {
	err := fleetctl.SetPairing(c.r.Context(), a.opts.Writer, a.opts.SystemNamespace, w)
	if errors.Is(err, fleetctl.ErrNotInstalled) {
		// The system namespace is missing: the installation is incomplete.
		return internal(err)
	}
	if err != nil {
		return fromKubernetes(err, "the pairing window")
	}
	return nil
}
