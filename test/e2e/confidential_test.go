package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/fleetctl"
	"github.com/wasmbed/wasmbed/internal/gateway"
)

// TestConfidentialThroughGatewayProcess seals a module on the client side
// with the issuer key the controller publishes, and deploys it to a board
// of each type connected to a gateway run as a process. The devices run
// it; the module's bytes are then in no object the API server stores, and
// not in the gateway process's memory, which does hold the ciphertext it
// delivered.
func TestConfidentialThroughGatewayProcess(t *testing.T) {
	e := platformEnv(t)
	const gwName = "e2e-gw-sealed"
	gw := e.startGatewayProc(t, gwName, nil)
	fl := e.startFleet(t, fleetOptions{devices: 2, sessions: []string{gw.session}})
	fl.waitGateway(t, gwName)
	for _, name := range fl.names {
		dev := &wasmbedv1.Device{}
		if err := e.admin.Get(t.Context(), keyOf(name), dev); err != nil {
			t.Fatal(err)
		}
		if dev.Spec.SealingKey == "" {
			t.Fatalf("device %s (%s) has no sealing key: a confidential application cannot reach it", name, dev.Spec.DeviceType)
		}
	}

	// A module with 32 random bytes no other module has: the marker.
	marker := randomBytes(t, 32)
	secret := release{version: "1.0", module: withCustomSection(apps.MustLoad(apps.Blinky), marker)}
	const name = "sealed"
	app := fl.application(name, secret, 2)
	if err := fleetctl.Seal(t.Context(), e.admin, wasmbedv1.DefaultSystemNamespace, app, secret.module); err != nil {
		t.Fatal(err)
	}
	if app.Spec.WasmBinary != nil || app.Spec.SealedModule == nil || !app.Spec.Confidential {
		t.Fatalf("sealed application: wasmBinary %d bytes, sealedModule %v, confidential %v", len(app.Spec.WasmBinary), app.Spec.SealedModule != nil, app.Spec.Confidential)
	}
	fl.deploy(t, app)
	fl.waitConverged(t, 2*time.Minute, desired{app: name, release: secret, installs: 1})

	needles := markerForms(marker)
	if plain, _ := json.Marshal(fl.application("plain", secret, 1)); !containsAny(plain, needles) {
		t.Fatal("the search does not find the marker in a plaintext Application")
	}

	// (a) No object the API server stores holds the module, raw or in
	// base64.
	lists := []client.ObjectList{&wasmbedv1.ApplicationList{}, &wasmbedv1.DeviceApplicationList{}, &wasmbedv1.DeviceList{},
		&corev1.ConfigMapList{}, &corev1.SecretList{}, &corev1.EventList{}, &eventsv1.EventList{}}
	for _, l := range lists {
		if err := e.admin.List(t.Context(), l); err != nil {
			t.Fatalf("list %T: %v", l, err)
		}
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		if containsAny(b, needles) {
			t.Errorf("a %T holds the plaintext module", l)
		}
	}

	// (b) The gateway process's memory does not hold the module, but does
	// hold the ciphertext payload it delivered (so the dump is not empty
	// or unreadable).
	var das wasmbedv1.DeviceApplicationList
	if err := e.admin.List(t.Context(), &das, client.MatchingLabels{wasmbedv1.LabelApplication: name}); err != nil {
		t.Fatal(err)
	}
	if len(das.Items) == 0 || das.Items[0].Spec.Artifact == nil {
		t.Fatal("no issued DeviceApplication of the sealed application")
	}
	cm := &corev1.ConfigMap{}
	if err := e.admin.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: das.Items[0].Spec.Artifact.Payload.ConfigMap}, cm); err != nil {
		t.Fatal(err)
	}
	payload := cm.BinaryData[gateway.PayloadKey]
	if len(payload) < 64 {
		t.Fatalf("payload ConfigMap %s: %d bytes", cm.Name, len(payload))
	}
	if containsAny(payload, needles) {
		t.Fatal("the payload delivered through the gateway holds the plaintext module")
	}
	mid := len(payload) / 2
	ciphertext := payload[mid-32 : mid+32]

	found, err := scanMemory(gw.cmd.Process.Pid, append([][]byte{ciphertext}, needles...))
	if errors.Is(err, fs.ErrPermission) {
		t.Skipf("cannot read the gateway's memory (%v): the kernel's ptrace policy forbids it here", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !found[0] {
		t.Fatal("the gateway's memory does not hold the ciphertext it delivered: the memory scan does not work")
	}
	// The same scan finds the marker in a process known to hold the
	// plaintext: this one, which built the module and runs the controller.
	if self, err := scanMemory(os.Getpid(), needles[:1]); err != nil || !self[0] {
		t.Fatalf("the memory scan does not find the marker in the test process, which holds it (%v)", err)
	}
	for i, n := range needles {
		if found[i+1] {
			t.Errorf("the gateway's memory holds the plaintext module (form %d, %d bytes)", i, len(n))
		}
	}
}

// markerForms returns marker as it may appear in memory or in JSON: raw,
// and in base64 at each of the three alignments it can have inside a
// longer encoded value.
func markerForms(marker []byte) [][]byte {
	out := [][]byte{marker}
	for s := range 3 {
		out = append(out, []byte(base64.StdEncoding.EncodeToString(marker[s:s+27])))
	}
	return out
}

func containsAny(b []byte, needles [][]byte) bool {
	for _, n := range needles {
		if bytes.Contains(b, n) {
			return true
		}
	}
	return false
}

// scanMemory reads every readable mapping of process pid through
// /proc/PID/maps and /proc/PID/mem and reports which needles occur. An
// error wrapping fs.ErrPermission means the memory cannot be read at all.
func scanMemory(pid int, needles [][]byte) ([]bool, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	maps, err := os.ReadFile(dir + "/maps")
	if err != nil {
		return nil, fmt.Errorf("read maps: %w", err)
	}
	mem, err := os.Open(dir + "/mem")
	if err != nil {
		return nil, fmt.Errorf("open mem: %w", err)
	}
	defer mem.Close()
	longest := 0
	for _, n := range needles {
		longest = max(longest, len(n))
	}
	found := make([]bool, len(needles))
	var read int64
	sc := bufio.NewScanner(bytes.NewReader(maps))
	buf := make([]byte, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1][0] != 'r' || (len(f) >= 6 && (f[5] == "[vvar]" || f[5] == "[vsyscall]" || f[5] == "[vvar_vclock]")) {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps line %q", sc.Text())
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("maps line %q", sc.Text())
		}
		// Chunks overlap by the longest needle, not to miss one across a
		// boundary.
		var tail []byte
		for off := start; off < end; {
			n := min(uint64(len(buf)), end-off)
			m, err := mem.ReadAt(buf[:n], int64(off)) //nolint:gosec // addresses fit
			if m > 0 {
				read += int64(m)
				chunk := append(tail, buf[:m]...) //nolint:gocritic // a new slice each chunk
				for i, nd := range needles {
					found[i] = found[i] || bytes.Contains(chunk, nd)
				}
				tail = append([]byte(nil), chunk[max(0, len(chunk)-longest):]...)
			}
			if err != nil && !errors.Is(err, io.EOF) {
				if errors.Is(err, fs.ErrPermission) {
					return nil, fmt.Errorf("read mem: %w", err)
				}
				break // an unreadable region (I/O error on a device mapping): skip it
			}
			off += uint64(m) //nolint:gosec // non-negative
			if m == 0 {
				break
			}
		}
	}
	if read == 0 {
		return nil, fmt.Errorf("read no byte of %s/mem: %w", dir, fs.ErrPermission)
	}
	return found, sc.Err()
}
