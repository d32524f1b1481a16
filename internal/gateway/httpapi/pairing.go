package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
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

func (a *api) pairingKey() types.NamespacedName {
	return types.NamespacedName{Namespace: a.opts.SystemNamespace, Name: wasmbedv1.PairingConfigMap}
}

func (a *api) showPairing(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	var cm corev1.ConfigMap
	err := a.opts.Reader.Get(c.r.Context(), a.pairingKey(), &cm)
	switch {
	case apierrors.IsNotFound(err):
		return c.writeJSON(http.StatusOK, a.pairingStatus(pairing.Window{}))
	case err != nil:
		return fromKubernetes(err, "the pairing window")
	}
	w, err := pairing.Parse(cm.Data)
	if err != nil {
		return internal(fmt.Errorf("configmap %s: %w", a.pairingKey(), err))
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

// writePairing stores w in the pairing ConfigMap, creating it if needed. A
// merge patch replaces every key of the window, so that nothing of an
// earlier window (its token) survives.
func (a *api) writePairing(c *call, w pairing.Window) error {
	ctx := c.r.Context()
	data := w.Data()
	patchData := map[string]*string{}
	for _, k := range []string{pairing.KeyOpenUntil, pairing.KeyOpenedAt, pairing.KeyOpenedBy, pairing.KeyTokenSHA256} {
		patchData[k] = nil
		if v, ok := data[k]; ok {
			patchData[k] = &v
		}
	}
	body, err := json.Marshal(map[string]any{"data": patchData})
	if err != nil {
		return internal(err)
	}
	key := a.pairingKey()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	for range 3 {
		err = a.opts.Writer.Patch(ctx, cm, client.RawPatch(types.MergePatchType, body))
		if !apierrors.IsNotFound(err) {
			break
		}
		cm.Data = data
		if err = a.opts.Writer.Create(ctx, cm); !apierrors.IsAlreadyExists(err) {
			break
		}
	}
	if apierrors.IsNotFound(err) {
		// The system namespace is missing: the installation is incomplete.
		return internal(fmt.Errorf("create configmap %s: %w", key, err))
	}
	if err != nil {
		return fromKubernetes(err, "the pairing window")
	}
	return nil
}
