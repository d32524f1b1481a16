// Package certsign decides whether the platform signs a certificate request a
// gateway made, and signs it: device client certificates at enrollment and
// renewal (checked against the Device, the pairing window and the
// requester), and the gateways' short-lived server certificates. The
// controller feeds it what Kubernetes' CertificateSigningRequest API carries;
// the package itself has no Kubernetes dependency.
//
//	pol := certsign.Policy{GatewayUsers: []string{"system:serviceaccount:wasmbed-system:wasmbed-gateway"}}
//	pem, denial, err := pol.SignDevice(deviceCA, certsign.DeviceRequest{...}, device, window, now)
//	switch { case err != nil: retry; case denial != nil: deny with denial.Reason; default: approve, write pem }
//
// The checks of the request itself — the key is the Device's, the request
// is signed by it, it names nothing but the device — are pki's
// IssueDeviceFromCSR and IssueGatewayFromCSR, which sign only what matches
// the signer's expectations.
package certsign

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/wasmbed/wasmbed/internal/pairing"
	"github.com/wasmbed/wasmbed/internal/pki"
)

// Reasons a request is denied, in Denial.Reason; the controller writes them
// into the request's Denied condition.
const (
	// ReasonNotGateway: the requester is not a gateway identity.
	ReasonNotGateway = "RequesterNotGateway"
	// ReasonMalformed: the request does not parse, its self-signature does
	// not verify, or its key is not Ed25519 or P-256.
	ReasonMalformed = "MalformedRequest"
	// ReasonBadUsages: the requested key usages are not those of the
	// certificate's role.
	ReasonBadUsages = "BadUsages"
	// ReasonUnknownPurpose: the purpose annotation is neither enroll nor
	// renew.
	ReasonUnknownPurpose = "UnknownPurpose"
	// ReasonPairingClosed: an enrollment request outside the pairing
	// window.
	ReasonPairingClosed = "PairingWindowClosed"
	// ReasonDeviceNotFound: the annotation names no Device.
	ReasonDeviceNotFound = "DeviceNotFound"
	// ReasonDeviceRevoked: the Device is revoked.
	ReasonDeviceRevoked = "DeviceRevoked"
	// ReasonDeviceIDMismatch: the request names another device id than the
	// Device's.
	ReasonDeviceIDMismatch = "DeviceIDMismatch"
	// ReasonKeyMismatch: the request's public key is not the Device's.
	ReasonKeyMismatch = "KeyMismatch"
	// ReasonBadNames: a gateway request asks for a name it may not have.
	ReasonBadNames = "BadNames"
)

// Denial is a refused request.
type Denial struct {
	// Reason is one of the Reason constants.
	Reason string
	// Message is a human-readable detail for the requester.
	Message string
}

// Error formats the denial.
func (d *Denial) Error() string { return d.Reason + ": " + d.Message }

func deny(reason, format string, args ...any) *Denial {
	return &Denial{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Defaults of Policy.
const (
	// DefaultDeviceLifetime is the lifetime of device certificates.
	DefaultDeviceLifetime = pki.DefaultDeviceLifetime
	// DefaultGatewayLifetime is the lifetime of gateway server
	// certificates: short, since gateways renew them through the API.
	DefaultGatewayLifetime = pki.DefaultGatewayLifetime
	// MinLifetime is the shortest lifetime a request may ask for, as
	// Kubernetes requires of expirationSeconds.
	MinLifetime = 10 * time.Minute
)

// Policy says who may request certificates and for how long they live.
type Policy struct {
	// GatewayUsers and GatewayGroups are the identities gateways
	// authenticate to Kubernetes as; requests from anyone else are denied.
	GatewayUsers  []string
	GatewayGroups []string
	// DeviceLifetime and GatewayLifetime cap the certificates' lifetimes
	// (defaults above); a request may ask for less.
	DeviceLifetime  time.Duration
	GatewayLifetime time.Duration
	// GatewayDNSNames and GatewayIPs are the names gateway certificates may
	// carry (the names devices dial); a gateway's request may ask for a
	// subset. With none, no gateway certificate is signed.
	GatewayDNSNames []string
	GatewayIPs      []net.IP
}

// Requester is who made a request, as the API server recorded it.
type Requester struct {
	Username string
	Groups   []string
}

// CheckRequester denies a requester that is not a gateway identity.
func (p Policy) CheckRequester(r Requester) *Denial {
	if slices.Contains(p.GatewayUsers, r.Username) {
		return nil
	}
	for _, g := range r.Groups {
		if slices.Contains(p.GatewayGroups, g) {
			return nil
		}
	}
	return deny(ReasonNotGateway, "%q is not a gateway identity", r.Username)
}

// Lifetime returns the lifetime of a certificate: the requested one when set
// and shorter than the cap, else the cap.
func Lifetime(requested *int32, limit time.Duration) time.Duration {
	if requested == nil {
		return limit
	}
	d := time.Duration(*requested) * time.Second
	if d < MinLifetime {
		d = MinLifetime
	}
	return min(d, limit)
}

// Device is what the platform knows about the device a request is for.
type Device struct {
	// Found reports that the Device exists.
	Found bool
	// Name is the Device's "namespace/name", for messages.
	Name string
	// DeviceID is spec.deviceId.
	DeviceID string
	// PublicKey is spec.publicKey.
	PublicKey string
	// Revoked is spec.revoked.
	Revoked bool
}

// DeviceRequest is a device certificate request.
type DeviceRequest struct {
	Requester Requester
	// CSR is the PEM (or DER) certificate request.
	CSR []byte
	// Usages are the requested key usages, as certificates/v1 names them.
	Usages []string
	// Purpose is the purpose annotation: enroll or renew.
	Purpose string
	// ExpirationSeconds is the requested lifetime, if any.
	ExpirationSeconds *int32
}

// Purposes of a device request (the values of the purpose annotation).
const (
	PurposeEnroll = "enroll"
	PurposeRenew  = "renew"
)

// More denial reasons, from the signing checks.
const (
	// ReasonInvalidDeviceID: the Device's id is not one a certificate can
	// carry.
	ReasonInvalidDeviceID = "InvalidDeviceID"
	// ReasonDeviceKeyInvalid: the Device's spec.publicKey does not parse.
	ReasonDeviceKeyInvalid = "DeviceKeyInvalid"
	// ReasonNoGatewayNames: the signer was given no gateway names to
	// expect, so it signs no gateway certificate.
	ReasonNoGatewayNames = "NoGatewayNames"
)

var (
	deviceUsages  = []string{"digital signature", "client auth"}
	gatewayUsages = []string{"digital signature", "key encipherment", "server auth"}
)

func checkUsages(got, allowed []string, required string) *Denial {
	if !slices.Contains(got, required) {
		return deny(ReasonBadUsages, "usages %v lack %q", got, required)
	}
	for _, u := range got {
		if !slices.Contains(allowed, u) {
			return deny(ReasonBadUsages, "usage %q is not allowed (allowed: %s)", u, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// SignDevice checks a device certificate request and signs it with ca's
// device CA: a gateway requester, client-auth usages, an existing and
// unrevoked Device, and, to enroll, an open pairing window at now; then
// pki's IssueDeviceFromCSR, which signs only a request for the Device's id
// and key, signed by that key, naming nothing else. It returns the
// certificate and the device CA (PEM), or why it is denied; an error is
// not the request's fault (no CA key, for example).
func (p Policy) SignDevice(ca *pki.Authority, req DeviceRequest, dev Device, window pairing.Window, now time.Time) ([]byte, *Denial, error) {
	if d := p.CheckRequester(req.Requester); d != nil {
		return nil, d, nil
	}
	switch req.Purpose {
	case PurposeEnroll:
		if !window.OpenAt(now) {
			return nil, deny(ReasonPairingClosed, "the pairing window is closed"), nil
		}
	case PurposeRenew:
	default:
		return nil, deny(ReasonUnknownPurpose, "purpose %q, want %s or %s", req.Purpose, PurposeEnroll, PurposeRenew), nil
	}
	if d := checkUsages(req.Usages, deviceUsages, "client auth"); d != nil {
		return nil, d, nil
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		return nil, deny(ReasonMalformed, "%v", err), nil
	}
	switch {
	case !dev.Found:
		return nil, deny(ReasonDeviceNotFound, "device %s not found", dev.Name), nil
	case dev.Revoked:
		return nil, deny(ReasonDeviceRevoked, "device %s is revoked", dev.Name), nil
	}
	key, err := pki.ParsePublicKey(dev.PublicKey)
	if err != nil {
		return nil, deny(ReasonDeviceKeyInvalid, "device %s: %v", dev.Name, err), nil
	}
	cert, err := ca.IssueDeviceFromCSR(csr, pki.DeviceRequest{DeviceID: dev.DeviceID, PublicKey: key, Lifetime: Lifetime(req.ExpirationSeconds, p.DeviceLifetime)})
	if err != nil {
		if d := requestDenial(err, ReasonDeviceIDMismatch); d != nil {
			return nil, d, nil
		}
		return nil, nil, err
	}
	return chainPEM(cert), nil, nil
}

// GatewayRequest is a gateway server certificate request.
type GatewayRequest struct {
	Requester         Requester
	CSR               []byte
	Usages            []string
	ExpirationSeconds *int32
}

// SignGateway checks a gateway certificate request and signs it with ca's
// gateway CA: a gateway requester, server-auth usages, and pki's
// IssueGatewayFromCSR with the request's common name as the replica's name
// and the policy's DNS names and IP addresses as those it may ask for.
func (p Policy) SignGateway(ca *pki.Authority, req GatewayRequest) ([]byte, *Denial, error) {
	if d := p.CheckRequester(req.Requester); d != nil {
		return nil, d, nil
	}
	if d := checkUsages(req.Usages, gatewayUsages, "server auth"); d != nil {
		return nil, d, nil
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		return nil, deny(ReasonMalformed, "%v", err), nil
	}
	name := csr.Subject.CommonName
	if name == "" || len(name) > 64 {
		return nil, deny(ReasonBadNames, "the common name, the replica's name, must be 1 to 64 characters"), nil
	}
	if len(p.GatewayDNSNames)+len(p.GatewayIPs) == 0 {
		return nil, deny(ReasonNoGatewayNames, "no gateway DNS names or IP addresses are configured"), nil
	}
	cert, err := ca.IssueGatewayFromCSR(csr, pki.GatewayRequest{
		Name: name, DNSNames: p.GatewayDNSNames, IPAddresses: p.GatewayIPs,
		Lifetime: Lifetime(req.ExpirationSeconds, p.GatewayLifetime),
	})
	if err != nil {
		if d := requestDenial(err, ReasonBadNames); d != nil {
			return nil, d, nil
		}
		return nil, nil, err
	}
	return chainPEM(cert), nil, nil
}

// requestDenial maps a *pki.RequestError to a denial (nil for other
// errors); a request for an unexpected name is denied with nameReason.
func requestDenial(err error, nameReason string) *Denial {
	var re *pki.RequestError
	if !errors.As(err, &re) {
		return nil
	}
	reason := ReasonMalformed
	switch {
	case errors.Is(err, pki.ErrKeyMismatch):
		reason = ReasonKeyMismatch
	case errors.Is(err, pki.ErrRequestedName):
		reason = nameReason
	case errors.Is(err, pki.ErrInvalidDeviceID):
		reason = ReasonInvalidDeviceID
	case errors.Is(err, pki.ErrMissingExpectation):
		reason = ReasonNoGatewayNames
	}
	return &Denial{Reason: reason, Message: re.Error()}
}

func chainPEM(c *pki.Certificate) []byte {
	return pki.EncodeCertificatesPEM(append([]*x509.Certificate{c.Leaf}, c.Chain...)...)
}
