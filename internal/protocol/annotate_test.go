package protocol

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// names labels the parts of a CBOR item for annotated dumps: keys of a map,
// elements of a fixed array, and the layout of nested items.
type names struct {
	keys  map[uint64]string              // map keys
	elems []string                       // fixed array elements
	sub   map[uint64]*names              // layout of the value under a map key / array index
	each  *names                         // layout of every element of a variable array
	enums map[uint64]func(uint64) string // names of enumerated values under a map key
}

func enum[T interface {
	~uint32
	String() string
}](v uint64) string {
	return T(v).String() //nolint:gosec // examples are small
}

func typeName(v uint64) string { return Type(v).String() } //nolint:gosec // examples are small

var linkNames = &names{elems: []string{"rssi", "loss-permille"}}

// bodyNames labels every body key, by message type.
var bodyNames = map[Type]*names{
	TypeAck: {},
	TypeError: {keys: map[uint64]string{1: "code", 2: "text"},
		enums: map[uint64]func(uint64) string{1: enum[ErrorCode]}},
	TypeDisconnect: {keys: map[uint64]string{1: "reason", 2: "text"},
		enums: map[uint64]func(uint64) string{1: enum[DisconnectReason]}},
	TypeEnrollRequest: {keys: map[uint64]string{1: "public-key", 2: "key-algorithm", 3: "device-type",
		4: "capabilities", 5: "csr", 6: "firmware-version", 7: "pairing-token", 8: "sealing-key", 9: "sealing-key-proof"},
		enums: map[uint64]func(uint64) string{2: enum[KeyAlgorithm]}},
	TypeEnrollResponse: {keys: map[uint64]string{1: "device-id", 2: "cert-chain", 3: "signing-key", 4: "sealing-key"}},
	TypeEnrollAck:      {keys: map[uint64]string{1: "device-id"}},
	TypeHeartbeat: {keys: map[uint64]string{1: "uptime-seconds", 2: "free-memory", 3: "running-apps", 4: "link"},
		sub: map[uint64]*names{4: linkNames}},
	TypeHeartbeatAck: {keys: map[uint64]string{1: "server-time", 2: "interval-seconds"}},
	TypeDeploy:       {keys: map[uint64]string{1: "app", 2: "sequence", 3: "artifact", 4: "reserved", 5: "start"}},
	TypeUpdate:       {keys: map[uint64]string{1: "app", 2: "sequence", 3: "artifact", 4: "reserved", 5: "start"}},
	TypeStart:        {keys: map[uint64]string{1: "app", 2: "sequence"}},
	TypeStop:         {keys: map[uint64]string{1: "app", 2: "sequence"}},
	TypeRemove:       {keys: map[uint64]string{1: "app", 2: "sequence"}},
	TypeAppStatus: {keys: map[uint64]string{1: "app", 2: "sequence", 3: "state", 4: "reason", 5: "resource", 6: "message"},
		enums: map[uint64]func(uint64) string{3: enum[AppState], 4: enum[Reason], 5: enum[Resource]}},
	TypeMetricsReport: {keys: map[uint64]string{1: "uptime-seconds", 2: "free-memory", 3: "link", 4: "apps"},
		sub: map[uint64]*names{3: linkNames, 4: {each: &names{keys: map[uint64]string{
			1: "app", 2: "memory-bytes", 3: "fuel", 4: "cpu-micros", 5: "executions", 6: "traps"}}}}},
	TypeConfigPush:    {keys: map[uint64]string{1: "app", 2: "generation", 3: "values", 4: "sealed"}},
	TypeConfigAck:     {keys: map[uint64]string{1: "app", 2: "generation"}},
	TypeRenewRequest:  {keys: map[uint64]string{1: "csr"}},
	TypeRenewResponse: {keys: map[uint64]string{1: "cert-chain"}},
}

// annotate returns an annotated hex dump of an encoded envelope in the style
// of RFC 8949 appendix A: the bytes of each item on a line, with a comment
// saying what they are.
func annotate(b []byte) (string, error) {
	a := annotator{data: b}
	typ := Type(0)
	if len(b) > 3 {
		if h, _, err := parseHeader(b); err == nil {
			typ = h.typ
		}
	}
	env := &names{
		elems: []string{"version", "message-id", "type", "body"},
		sub:   map[uint64]*names{3: bodyNames[typ]},
		enums: map[uint64]func(uint64) string{2: typeName},
	}
	if err := a.item(0, "envelope", env); err != nil {
		return "", err
	}
	if a.off != len(b) {
		return "", fmt.Errorf("%d trailing bytes", len(b)-a.off)
	}
	return a.out.String(), nil
}

type annotator struct {
	data []byte
	off  int
	out  strings.Builder
}

func (a *annotator) line(depth int, raw []byte, comment string) {
	const width = 40
	h := strings.Repeat("   ", depth) + spacedHex(raw)
	if len(h) < width {
		h += strings.Repeat(" ", width-len(h))
	}
	fmt.Fprintf(&a.out, "%s # %s\n", h, comment)
}

// spacedHex prints the initial byte apart from its argument: "19 0e10".
func spacedHex(raw []byte) string {
	if len(raw) <= 1 {
		return hex.EncodeToString(raw)
	}
	return hex.EncodeToString(raw[:1]) + " " + hex.EncodeToString(raw[1:])
}

// head reads an item head; it returns major type, argument and raw bytes.
func (a *annotator) head() (major byte, arg uint64, raw []byte, err error) {
	start := a.off
	if a.off >= len(a.data) {
		return 0, 0, nil, fmt.Errorf("truncated")
	}
	ib := a.data[a.off]
	a.off++
	major, ai := ib>>5, ib&0x1f
	switch {
	case ai < 24:
		arg = uint64(ai)
	case ai <= 27:
		n := 1 << (ai - 24)
		if a.off+n > len(a.data) {
			return 0, 0, nil, fmt.Errorf("truncated")
		}
		var buf [8]byte
		copy(buf[8-n:], a.data[a.off:a.off+n])
		arg = binary.BigEndian.Uint64(buf[:])
		a.off += n
	default:
		return 0, 0, nil, fmt.Errorf("unsupported additional information %d", ai)
	}
	return major, arg, a.data[start:a.off], nil
}

func (a *annotator) item(depth int, label string, layout *names) error {
	return a.itemEnum(depth, label, layout, nil)
}

func (a *annotator) itemEnum(depth int, label string, layout *names, enumName func(uint64) string) error {
	major, arg, raw, err := a.head()
	if err != nil {
		return err
	}
	prefix := ""
	if label != "" {
		prefix = label + ": "
	}
	switch major {
	case 0:
		c := prefix + fmt.Sprintf("unsigned(%d)", arg)
		if enumName != nil {
			c += " = " + enumName(arg)
		}
		a.line(depth, raw, c)
	case 1:
		a.line(depth, raw, prefix+fmt.Sprintf("negative(%d)", -1-int64(arg))) //nolint:gosec // examples are small
	case 2, 3:
		n := int(arg) //nolint:gosec // examples are small
		content := a.data[a.off : a.off+n]
		a.off += n
		if major == 3 {
			a.line(depth, append(append([]byte{}, raw...), content...), prefix+fmt.Sprintf("text(%d) %q", n, content))
			return nil
		}
		a.line(depth, raw, prefix+fmt.Sprintf("bytes(%d)", n))
		for len(content) > 0 {
			chunk := content[:min(16, len(content))]
			content = content[len(chunk):]
			fmt.Fprintf(&a.out, "%s%s\n", strings.Repeat("   ", depth+1), hex.EncodeToString(chunk))
		}
	case 4:
		a.line(depth, raw, prefix+fmt.Sprintf("array(%d)", arg))
		for i := range arg {
			var name string
			var sub *names
			var en func(uint64) string
			if layout != nil {
				if int(i) < len(layout.elems) { //nolint:gosec // small
					name = layout.elems[i]
				}
				sub, en = layout.sub[i], layout.enums[i]
				if layout.each != nil {
					sub = layout.each
				}
			}
			if err := a.itemEnum(depth+1, name, sub, en); err != nil {
				return err
			}
		}
	case 5:
		a.line(depth, raw, prefix+fmt.Sprintf("map(%d)", arg))
		for range arg {
			kstart := a.off
			km, k, kraw, err := a.head()
			if err != nil {
				return err
			}
			if km != 0 { // text keys: config values
				a.off = kstart
				if err := a.item(depth+1, "key", nil); err != nil {
					return err
				}
				if err := a.item(depth+1, "value", nil); err != nil {
					return err
				}
				continue
			}
			name := fmt.Sprintf("key %d", k)
			var sub *names
			var en func(uint64) string
			if layout != nil {
				if n, ok := layout.keys[k]; ok {
					name += " (" + n + ")"
				}
				sub, en = layout.sub[k], layout.enums[k]
			}
			a.line(depth+1, kraw, name)
			if err := a.itemEnum(depth+2, "", sub, en); err != nil {
				return err
			}
		}
	case 7:
		switch arg {
		case 20:
			a.line(depth, raw, prefix+"false")
		case 21:
			a.line(depth, raw, prefix+"true")
		default:
			return fmt.Errorf("unsupported simple value %d", arg)
		}
	default:
		return fmt.Errorf("unsupported major type %d", major)
	}
	return nil
}
