package protocol

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

const (
	docPath     = "../../docs/protocol.md"
	beginMark   = "<!-- BEGIN GENERATED EXAMPLES -->\n"
	endMark     = "<!-- END GENERATED EXAMPLES -->\n"
	senderArrow = " → "
)

// captions describe the samples in docs/protocol.md.
var captions = map[string]string{
	"ack":                "Acknowledges the device's EnrollAck (message id 3).",
	"error":              "The device refuses the gateway's ConfigPush 6: application `sensor` does not exist.",
	"disconnect":         "A gateway shutting down says goodbye.",
	"enroll_request":     "An ESP32 asks to be enrolled with its Ed25519 key: a CSR signed by it (shortened), and its sealing key with the proof binding it to the identity key and the connection.",
	"enroll_response":    "The gateway answers with the device id, a two-certificate chain (shortened) and the signing key to pin.",
	"enroll_ack":         "The device confirms it stored its identity.",
	"heartbeat":          "One hour after boot, 80 KiB free, two apps running, RSSI -67 dBm, 1.2 % loss.",
	"heartbeat_ack":      "The gateway's clock (2026-01-01T00:00:00Z) and a 30 s interval.",
	"deploy":             "Install and start application `sensor`, artifact sequence 7 (artifact shortened).",
	"update":             "Replace `sensor` with sequence 8, with a sealed payload.",
	"start":              "Start `sensor` if sequence 8 is installed.",
	"stop":               "Stop `sensor`.",
	"remove":             "Uninstall `sensor`, sequence 8.",
	"app_status":         "Reply to the Deploy with id 2: `sensor` is running.",
	"app_status_trapped": "Unsolicited (odd id): `sensor` trapped.",
	"app_status_limit":   "Unsolicited: `sensor` exceeded its memory limit.",
	"app_status_refused": "Reply to a Deploy with id 4: the artifact is a replay.",
	"metrics_report":     "Device metrics with one application.",
	"config_push":        "Two configuration values for `sensor`, generation 3.",
	"config_ack":         "The device applied generation 3.",
	"renew_request":      "Two thirds into its certificate's lifetime, the device asks for a new one with a CSR for its current key (shortened).",
	"renew_response":     "The gateway answers the RenewRequest 13 with the new chain (shortened): new leaf, same intermediate.",
}

func generateExamples() (string, error) {
	var sb strings.Builder
	for _, s := range samples() {
		b, err := Encode(s.env)
		if err != nil {
			return "", err
		}
		diag, err := cbor.Diagnose(b)
		if err != nil {
			return "", err
		}
		ann, err := annotate(b)
		if err != nil {
			return "", err
		}
		t := s.env.Message.Type()
		dir := "device" + senderArrow + "gateway"
		switch t.Sender() {
		case Gateway:
			dir = "gateway" + senderArrow + "device"
		case Either:
			dir = "either direction"
		}
		caption, ok := captions[s.name]
		if !ok {
			return "", fmt.Errorf("no caption for sample %s", s.name)
		}
		fmt.Fprintf(&sb, "### %s (type %d, %s): `%s`\n\n", t, uint32(t), dir, s.name)
		fmt.Fprintf(&sb, "%s\n\n", caption)
		fmt.Fprintf(&sb, "Frame: length prefix `%08x`, then the %d-byte envelope\n\n", len(b), len(b))
		fmt.Fprintf(&sb, "```\n%x\n```\n\n", b)
		fmt.Fprintf(&sb, "Diagnostic notation:\n\n```\n%s\n```\n\n", diag)
		fmt.Fprintf(&sb, "Annotated:\n\n```\n%s```\n\n", ann)
	}
	return sb.String(), nil
}

// TestProtocolDocExamples keeps the examples in docs/protocol.md identical to
// the test vectors; -update regenerates them.
func TestProtocolDocExamples(t *testing.T) {
	raw, err := os.ReadFile(docPath)
	if os.IsNotExist(err) {
		t.Skip("docs/protocol.md not present")
	}
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, beginMark), strings.Index(doc, endMark)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the generated examples markers", docPath)
	}
	gen, err := generateExamples()
	if err != nil {
		t.Fatal(err)
	}
	want := doc[:i+len(beginMark)] + "\n" + gen + doc[j:]
	if *update {
		if err := os.WriteFile(docPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if doc != want {
		t.Errorf("%s examples are stale; run go test ./internal/protocol -update", docPath)
	}
}
