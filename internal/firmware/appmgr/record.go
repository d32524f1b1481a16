package appmgr

import (
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// Flash keys. Names are at most protocol.MaxNameLen (253) bytes, so every
// key fits flash.MaxKey.
const (
	metaPrefix   = "a:" // a:<name>   application record (CBOR)
	configPrefix = "c:" // c:<name>   application configuration (CBOR)
	// 0:<name> and 1:<name> hold the module bytes of slot 0 and slot 1.
)

func metaKey(name string) string   { return metaPrefix + name }
func configKey(name string) string { return configPrefix + name }
func slotKey(slot int, name string) string {
	return string(rune('0'+slot)) + ":" + name //nolint:gosec // slot is 0 or 1
}

// record is an application's persisted state.
type record struct {
	// Active is the slot holding the last version known to start (or
	// installed without a start), -1 if none.
	Active int8 `cbor:"1,keyasint"`
	// Pending is the slot holding a version on trial, -1 if none. A record
	// found with a pending slot at boot is an interrupted update.
	Pending int8 `cbor:"2,keyasint"`
	// Run is the desired run state.
	Run bool `cbor:"3,keyasint,omitempty"`
	// Slots describe the module in each slot; an empty slot is zero.
	Slots [2]slotInfo `cbor:"4,keyasint"`
	// Stopped records that the application was stopped on request, so it
	// reports "stopped" rather than "installed" after a reboot.
	Stopped bool `cbor:"5,keyasint,omitempty"`
}

type slotInfo struct {
	Version  string `cbor:"1,keyasint,omitempty"`
	Sequence uint64 `cbor:"2,keyasint,omitempty"`
	SHA256   []byte `cbor:"3,keyasint,omitempty"`
	Size     uint32 `cbor:"4,keyasint,omitempty"`
	Memory   uint64 `cbor:"5,keyasint,omitempty"`
	Timeout  int64  `cbor:"6,keyasint,omitempty"` // nanoseconds
	Stack    uint64 `cbor:"7,keyasint,omitempty"`
}

func (s slotInfo) empty() bool { return len(s.SHA256) == 0 }

func (s slotInfo) limits() sandbox.Limits {
	return sandbox.Limits{MemoryLimit: s.Memory, ExecutionTimeout: time.Duration(s.Timeout), MaxStackSize: s.Stack}
}

type appConfig struct {
	Generation uint64            `cbor:"1,keyasint,omitempty"`
	Values     map[string]string `cbor:"2,keyasint,omitempty"`
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	if decMode, err = (cbor.DecOptions{
		MaxNestedLevels:  4,
		MaxArrayElements: 16,
		MaxMapPairs:      256,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}).DecMode(); err != nil {
		panic(err)
	}
}

func encode(v any) []byte {
	b, err := encMode.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("appmgr: encode %T: %v", v, err)) // only fixed, encodable types
	}
	return b
}

func decodeRecord(b []byte) (record, error) {
	var r record
	if err := decMode.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode app record: %w", err)
	}
	valid := func(s int8) bool { return s >= -1 && s <= 1 }
	if !valid(r.Active) || !valid(r.Pending) || (r.Active >= 0 && r.Active == r.Pending) {
		return r, fmt.Errorf("decode app record: bad slots active=%d pending=%d", r.Active, r.Pending)
	}
	for _, s := range []int8{r.Active, r.Pending} {
		if s >= 0 && len(r.Slots[s].SHA256) != 32 {
			return r, fmt.Errorf("decode app record: slot %d has no digest", s)
		}
	}
	return r, nil
}
