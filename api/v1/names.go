package v1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Bounds of Kubernetes names and label values.
const (
	// MaxObjectNameLength is the longest DNS-1123 subdomain, the form of
	// Device, Application and DeviceApplication names.
	MaxObjectNameLength = 253
	// MaxLabelValueLength is the longest label value.
	MaxLabelValueLength = 63
)

// hashSuffix returns "-" and the first n hex digits of the SHA-256 of parts,
// joined with a NUL byte so that no two lists of parts give the same input.
func hashSuffix(n int, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return "-" + hex.EncodeToString(h[:])[:n]
}

// DeviceObjectName derives a Device object name from a device id. Device ids
// allow upper-case letters and underscores, which object names do not: the
// id is lower-cased, every character outside [a-z0-9.-] becomes "-", and, when
// that changed anything, an 8-digit hash of the original id is appended so
// that ids differing only in case or punctuation keep distinct names. An id
// that is already a valid name is its own name.
func DeviceObjectName(deviceID string) string {
	var b strings.Builder
	b.Grow(len(deviceID))
	for i := range len(deviceID) {
		c := deviceID[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + ('a' - 'A'))
		default:
			b.WriteByte('-')
		}
	}
	name := b.String()
	if name == deviceID && len(validation.IsDNS1123Subdomain(name)) == 0 {
		return name
	}
	// Dots may only separate alphanumeric segments.
	for _, bad := range []string{"..", ".-", "-."} {
		for strings.Contains(name, bad) {
			name = strings.ReplaceAll(name, bad, "-")
		}
	}
	suffix := hashSuffix(8, deviceID)
	if limit := MaxObjectNameLength - len(suffix); len(name) > limit {
		name = name[:limit]
	}
	name = strings.Trim(name, "-.")
	if name == "" || len(validation.IsDNS1123Subdomain(name+suffix)) != 0 {
		return "device" + suffix
	}
	return name + suffix
}

// DeviceApplicationName returns the name of the DeviceApplication of an
// (Application, Device) pair: "<application>.<device>" when the Application
// name has no dot (the first dot then separates the two unambiguously) and the
// result fits, else a shortened form with a hash of both names.
func DeviceApplicationName(application, device string) string {
	if !strings.Contains(application, ".") && len(application)+1+len(device) <= MaxObjectNameLength {
		return application + "." + device
	}
	suffix := hashSuffix(12, application, device)
	app := strings.ReplaceAll(application, ".", "-")
	room := MaxObjectNameLength - len(suffix) - 1
	if len(app) > room/2 {
		app = strings.TrimRight(app[:room/2], "-.")
	}
	dev := device
	if len(dev) > room-len(app) {
		dev = strings.TrimRight(dev[:room-len(app)], "-.")
	}
	return app + "." + dev + suffix
}

// LabelValue returns name as a label value: name itself when it fits, else a
// prefix and a hash, so that every object name maps to a valid, stable label
// value. Selecting by label finds the object; the spec holds the full name.
func LabelValue(name string) string {
	if len(name) <= MaxLabelValueLength {
		return name
	}
	suffix := hashSuffix(10, name)
	prefix := strings.TrimRight(name[:MaxLabelValueLength-len(suffix)], "-._")
	return prefix + suffix
}
