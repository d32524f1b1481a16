package artifact

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// MaxReplayApps bounds the number of applications a ReplayState tracks.
const MaxReplayApps = 1024

// maxReplayStateSize bounds an encoded ReplayState.
const maxReplayStateSize = MaxReplayApps * (MaxNameLen + 3 + 9)

// ReplayState holds a device's replay-protection state: for each application
// ever installed, the highest artifact sequence accepted. Marks never go down
// and are kept when an application is removed, so an old artifact of a
// removed application cannot be installed again. It implements SequenceStore
// and is safe for concurrent use.
//
// The device stores it in flash (MarshalBinary) in the same transaction as
// the installed artifact, so the two never disagree after a power cut.
type ReplayState struct {
	mu   sync.Mutex
	last map[string]uint64
}

// NewReplayState returns an empty ReplayState.
func NewReplayState() *ReplayState {
	return &ReplayState{last: make(map[string]uint64)}
}

// LastSequence returns the highest sequence accepted for app, 0 if none.
func (r *ReplayState) LastSequence(app string) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[app], nil
}

// Accept raises app's mark to seq. It refuses, with ErrReplay or
// ErrDowngrade, a sequence that is not above the current mark, and with
// ErrTooLarge a new application beyond MaxReplayApps.
func (r *ReplayState) Accept(app string, seq uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = make(map[string]uint64)
	}
	cur, ok := r.last[app]
	switch {
	case seq == cur:
		return refuse(ErrReplay, "app %q sequence %d already accepted", app, seq)
	case seq < cur:
		return refuse(ErrDowngrade, "app %q sequence %d below last accepted %d", app, seq, cur)
	case !ok && len(r.last) >= MaxReplayApps:
		return refuse(ErrTooLarge, "replay state holds %d applications, limit %d", len(r.last), MaxReplayApps)
	}
	r.last[app] = seq
	return nil
}

// Len returns the number of applications tracked.
func (r *ReplayState) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.last)
}

// MarshalBinary encodes the state as a canonical CBOR map from application
// name to sequence.
func (r *ReplayState) MarshalBinary() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.last
	if m == nil {
		m = map[string]uint64{}
	}
	b, err := encMode.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("artifact: encode replay state: %w", err)
	}
	return b, nil
}

var replayDecMode = func() cbor.DecMode {
	sv, err := cbor.NewSimpleValueRegistryFromDefaults(
		cbor.WithRejectedSimpleValue(cbor.SimpleValue(22)), // null
		cbor.WithRejectedSimpleValue(cbor.SimpleValue(23)), // undefined
	)
	if err != nil {
		panic(err)
	}
	dm, err := cbor.DecOptions{
		SimpleValues:     sv,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  4,
		MaxArrayElements: 16,
		MaxMapPairs:      MaxReplayApps,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// UnmarshalBinary replaces the state with the one encoded in b.
func (r *ReplayState) UnmarshalBinary(b []byte) error {
	if len(b) > maxReplayStateSize {
		return refuse(ErrTooLarge, "replay state is %d bytes, limit %d", len(b), maxReplayStateSize)
	}
	m := make(map[string]uint64)
	if err := replayDecMode.Unmarshal(b, &m); err != nil {
		return &Error{Err: ErrMalformed, Detail: "decode replay state", Cause: err}
	}
	for app, seq := range m {
		if err := checkName("application name", app, MaxNameLen); err != nil {
			return err
		}
		if seq == 0 {
			return refuse(ErrMalformed, "replay state has sequence 0 for %q", app)
		}
	}
	canon, err := encMode.Marshal(m)
	if err != nil {
		return fmt.Errorf("artifact: re-encode replay state: %w", err)
	}
	if !bytes.Equal(canon, b) {
		return refuse(ErrMalformed, "replay state encoding is not canonical")
	}
	r.mu.Lock()
	r.last = m
	r.mu.Unlock()
	return nil
}

// NextSequence returns the sequence an issuer should give the next artifact
// of an application for a device, after last: the larger of last+1 and the
// Unix time of now in milliseconds. The time term keeps sequences increasing
// across issuer restarts and a lost last value, as long as the issuer's clock
// does not go back; the last+1 term keeps them increasing when it does, or
// when several artifacts are issued within a millisecond.
func NextSequence(last uint64, now time.Time) uint64 {
	next := last + 1
	if ms := now.UnixMilli(); ms > 0 && uint64(ms) > next {
		next = uint64(ms)
	}
	return next
}
