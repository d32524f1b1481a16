package appmgr

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// Config configures a Manager.
type Config struct {
	// Store is the device's flash store. Required.
	Store *flash.Store
	// Runner starts applications. Required.
	Runner Runner
	// Observer receives every state change, in order, outside the
	// manager's lock, from one goroutine at a time; it may call back into
	// the manager. Optional.
	Observer func(Event)
	// Logger receives lifecycle logs; nil discards them.
	Logger *slog.Logger
}

// Manager installs, starts, stops, updates and removes the applications of
// one device. It is safe for concurrent use; operations are serialised.
type Manager struct {
	mu     sync.Mutex
	store  *flash.Store
	runner Runner
	log    *slog.Logger
	apps   map[string]*app
	queue  []Event
	// delivering is set while one goroutine delivers queued events.
	delivering bool
	observe    func(Event)

	// cfgMu guards configs, the applications' configuration values. It is
	// apart from mu so an application can read its configuration while
	// the manager holds mu to start it (wasmbed_init). Writers hold mu too.
	cfgMu   sync.RWMutex
	configs map[string]*appConfig

	exitMu sync.Mutex
	exits  []exit

	refusals [numRefusals]uint64
	// installs counts versions written to flash (see Installs).
	installs uint64
}

type app struct {
	name   string
	rec    record
	inst   Instance
	gen    uint64 // incremented for every start, to ignore stale exits
	state  protocol.AppState
	reason protocol.Reason
	res    protocol.Resource
	msg    string
}

type exit struct {
	name string
	gen  uint64
	err  error
}

// Open loads the applications from store, repairs what a power loss left
// half done — an update on trial is rolled back to the last good version,
// an interrupted first install is forgotten, unreferenced module slots are
// erased — and starts every application whose desired state is running.
// Start failures are reported as statuses and events, not as errors.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Runner == nil {
		return nil, errors.New("appmgr: Store and Runner are required")
	}
	m := &Manager{
		store: cfg.Store, runner: cfg.Runner,
		log: cfg.Logger, observe: cfg.Observer, apps: make(map[string]*app),
		configs: make(map[string]*appConfig),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.mu.Lock()
	err := m.recover()
	if err == nil {
		for _, name := range slices.Sorted(maps.Keys(m.apps)) {
			if a := m.apps[name]; a.rec.Run {
				// A failure is the app's status, reported like any other;
				// it must not keep the device from booting.
				if err := m.startActive(ctx, a); err != nil {
					m.log.Warn("application did not start at boot", "app", name, "err", err)
				}
			}
		}
	}
	m.unlock()
	if err != nil {
		return nil, fmt.Errorf("appmgr: open: %w", err)
	}
	return m, nil
}

func (m *Manager) recover() error {
	var fix flash.Batch
	for _, key := range m.store.Keys(metaPrefix) {
		name := key[len(metaPrefix):]
		raw, err := m.store.Get(key)
		var rec record
		if err == nil {
			rec, err = decodeRecord(raw)
		}
		if err != nil {
			m.log.Warn("app record damaged, forgetting app", "app", name, "err", err)
			fix.Delete(key)
			fix.Delete(slotKey(0, name))
			fix.Delete(slotKey(1, name))
			fix.Delete(configKey(name))
			m.emit(EventRecovered, Status{Name: name, Slot: -1, State: protocol.StateRemoved, Reason: protocol.ReasonInternal, Message: "damaged application record"})
			continue
		}
		a := &app{name: name, rec: rec, state: protocol.StateInstalled}
		if rec.Stopped {
			a.state = protocol.StateStopped
		}
		if p := rec.Pending; p >= 0 {
			a.rec.Pending = -1
			a.rec.Slots[p] = slotInfo{}
			if rec.Active < 0 {
				m.log.Info("interrupted install rolled back", "app", name, "sequence", rec.Slots[p].Sequence)
				fix.Delete(key)
				fix.Delete(slotKey(0, name))
				fix.Delete(slotKey(1, name))
				fix.Delete(configKey(name))
				m.emit(EventRecovered, Status{Name: name, Slot: -1, State: protocol.StateRemoved, Message: "interrupted install rolled back"})
				continue
			}
			m.log.Info("interrupted update rolled back", "app", name, "sequence", rec.Slots[p].Sequence)
			fix.Put(key, encode(a.rec))
			a.msg = "interrupted update rolled back"
			m.emit(EventRecovered, a.status())
		}
		for s := range 2 {
			if int8(s) != a.rec.Active && m.store.Has(slotKey(s, name)) {
				fix.Delete(slotKey(s, name))
			}
		}
		m.apps[name] = a
	}
	for _, prefix := range []string{"0:", "1:", configPrefix} {
		for _, key := range m.store.Keys(prefix) {
			if m.apps[key[len(prefix):]] == nil {
				fix.Delete(key)
			}
		}
	}
	if fix.Len() > 0 {
		if err := m.store.Commit(&fix); err != nil {
			return fmt.Errorf("commit recovery: %w", err)
		}
	}
	m.cfgMu.Lock()
	defer m.cfgMu.Unlock()
	for name := range m.apps {
		if raw, err := m.store.Get(configKey(name)); err == nil {
			var c appConfig
			if decMode.Unmarshal(raw, &c) == nil {
				m.configs[name] = &c
			}
		}
	}
	return nil
}

// lock takes the manager and applies the exits reported before: an
// operation never acts on an instance that has already ended.
func (m *Manager) lock() {
	m.mu.Lock()
	m.drainExits()
}

// unlock releases the manager. It applies the exits reported while the
// lock was held (their onExit could not take it), and delivers the queued
// events to the observer, in order and outside the lock.
//
// One goroutine delivers at a time. A goroutine that finds another
// delivering — another operation, or the observer itself calling back into
// the manager — leaves its events to that one, which takes the lock again
// after every batch and stops only once the queue is empty.
func (m *Manager) unlock() {
	delivering := false // this goroutine is the one delivering
	for {
		m.drainExits()
		var q []Event
		switch {
		case len(m.queue) > 0 && (delivering || !m.delivering):
			delivering, m.delivering = true, true
			q, m.queue = m.queue, nil
		case delivering:
			delivering, m.delivering = false, false
		}
		m.mu.Unlock()
		if len(q) > 0 {
			if m.observe != nil {
				for _, ev := range q {
					m.observe(ev)
				}
			}
			m.mu.Lock()
			continue
		}
		// Exits reported since the drain, while the lock was still held.
		m.exitMu.Lock()
		more := len(m.exits) > 0
		m.exitMu.Unlock()
		if !more || !m.mu.TryLock() {
			return // whoever holds the lock now applies them
		}
	}
}

func (m *Manager) emit(kind EventKind, st Status) {
	m.queue = append(m.queue, Event{Kind: kind, Status: st})
}

// onExit is the exit callback handed to the runner.
func (m *Manager) onExit(name string, gen uint64, err error) {
	m.exitMu.Lock()
	m.exits = append(m.exits, exit{name, gen, err})
	m.exitMu.Unlock()
	if m.mu.TryLock() {
		m.unlock()
	}
}

func (m *Manager) drainExits() {
	m.exitMu.Lock()
	ex := m.exits
	m.exits = nil
	m.exitMu.Unlock()
	for _, e := range ex {
		a := m.apps[e.name]
		if a == nil || a.gen != e.gen || a.inst == nil {
			continue // stopped, restarted or removed since
		}
		a.inst = nil
		a.setErr(e.err)
		m.log.Info("app exited", "app", a.name, "state", a.state, "err", e.err)
		m.emit(EventExited, a.status())
	}
}

func (a *app) status() Status {
	st := Status{
		Name: a.name, Slot: int(a.rec.Active), State: a.state, Reason: a.reason,
		Resource: a.res, Message: a.msg, Run: a.rec.Run,
	}
	s := a.rec.Active
	if a.rec.Pending >= 0 {
		s = a.rec.Pending
	}
	if s >= 0 {
		st.Version, st.Sequence, st.ModuleBytes = a.rec.Slots[s].Version, a.rec.Slots[s].Sequence, a.rec.Slots[s].Size
	}
	return st
}

func (a *app) setState(s protocol.AppState, msg string) {
	a.state, a.reason, a.res, a.msg = s, 0, 0, msg
}

// setErr classifies a runner error into the application's state.
func (a *app) setErr(err error) {
	var trap *TrapError
	var lim *LimitError
	switch {
	case errors.As(err, &lim):
		a.setState(protocol.StateLimitExceeded, lim.Error())
		a.res = lim.Resource
	case errors.As(err, &trap):
		a.setState(protocol.StateTrapped, trap.Reason)
	case errors.Is(err, ErrInvalidModule):
		a.setState(protocol.StateFailed, err.Error())
		a.reason = protocol.ReasonInvalidModule
	default:
		a.setState(protocol.StateFailed, err.Error())
		a.reason = protocol.ReasonInternal
	}
}

// loadModule reads a slot's module and checks it against its digest.
func (m *Manager) loadModule(name string, slot int8) ([]byte, error) {
	info := m.apps[name].rec.Slots[slot]
	mod, err := m.store.Get(slotKey(int(slot), name))
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	if sum := sha256.Sum256(mod); !bytes.Equal(sum[:], info.SHA256) {
		return nil, fmt.Errorf("module in slot %d does not match its digest", slot)
	}
	return mod, nil
}

// start starts the module in slot; it sets no status.
func (m *Manager) start(ctx context.Context, a *app, slot int8) error {
	mod, err := m.loadModule(a.name, slot)
	if err != nil {
		return err
	}
	info := a.rec.Slots[slot]
	a.gen++
	gen, name := a.gen, a.name
	inst, err := m.runner.Start(ctx, RunSpec{
		Name: a.name, Version: info.Version, Sequence: info.Sequence, Module: mod, Limits: info.limits(), Config: m,
	}, func(err error) { m.onExit(name, gen, err) })
	if err != nil {
		return err
	}
	a.inst = inst
	return nil
}

// startActive starts the active version and reports the outcome.
func (m *Manager) startActive(ctx context.Context, a *app) error {
	if a.rec.Active < 0 {
		a.setState(protocol.StateFailed, "no installed version")
		a.reason = protocol.ReasonNotInstalled
		m.emit(EventFailed, a.status())
		return errors.New("no installed version")
	}
	if err := m.start(ctx, a, a.rec.Active); err != nil {
		a.setErr(err)
		m.log.Warn("app failed to start", "app", a.name, "err", err)
		m.emit(EventFailed, a.status())
		return err
	}
	a.setState(protocol.StateRunning, "")
	m.emit(EventStarted, a.status())
	return nil
}

// adopt stops a's running instance and gives it rec, the record just
// committed; a nil a is a new application, registered under name.
func (m *Manager) adopt(ctx context.Context, a *app, name string, rec record) *app {
	if a == nil {
		a = &app{name: name}
		m.apps[name] = a
	}
	m.stopInstance(ctx, a)
	a.rec = rec
	return a
}

func (m *Manager) stopInstance(ctx context.Context, a *app) {
	if a.inst == nil {
		return
	}
	inst := a.inst
	a.inst = nil
	a.gen++
	if err := inst.Stop(ctx); err != nil {
		m.log.Warn("app stop failed", "app", a.name, "err", err)
	}
}

func (m *Manager) refuse(name string, r Refusal, format string, args ...any) error {
	err := &RefusalError{App: name, Reason: r, Detail: fmt.Sprintf(format, args...)}
	if r < numRefusals {
		m.refusals[r]++
	}
	m.log.Info("app request refused", "app", name, "reason", r, "detail", err.Detail)
	return err
}

// check refuses a request the manager cannot take whatever the device:
// a bad name, a module that does not match its digest, an older version.
// Whether the application fits the device is the board profile's
// decision, taken before (see the device's admission); the flash store
// refuses what does not fit in it.
func (m *Manager) check(req *Request) error {
	switch {
	case len(req.Name) == 0 || len(req.Name) > protocol.MaxNameLen:
		return m.refuse(req.Name, RefusedName, "name length %d outside [1, %d]", len(req.Name), protocol.MaxNameLen)
	case sha256.Sum256(req.Module) != req.SHA256:
		return m.refuse(req.Name, RefusedHash, "")
	}
	if a := m.apps[req.Name]; a != nil && a.rec.Active >= 0 && req.Sequence < a.rec.Slots[a.rec.Active].Sequence {
		return m.refuse(req.Name, RefusedOlder, "sequence %d, installed %d", req.Sequence, a.rec.Slots[a.rec.Active].Sequence)
	}
	return nil
}

// failed returns the status to report with err: a refusal as such, any
// other failure as the application's unchanged status, or as failed when
// it is not installed.
func (m *Manager) failed(name string, err error) (Status, error) {
	var re *RefusalError
	if errors.As(err, &re) {
		return Status{Name: name, Slot: -1, State: protocol.StateRefused, Reason: re.Reason.Reason(), Message: re.Reason.String()}, err
	}
	if a := m.apps[name]; a != nil {
		return a.status(), err
	}
	return Status{Name: name, Slot: -1, State: protocol.StateFailed, Reason: protocol.ReasonInternal, Message: err.Error()}, err
}

func (m *Manager) commit(name string, b *flash.Batch) error {
	err := m.store.Commit(b)
	if errors.Is(err, flash.ErrNoSpace) {
		return m.refuse(name, RefusedFlash, "%v", err)
	}
	if err != nil {
		return &StorageError{App: name, Err: err}
	}
	return nil
}

// Install installs req as a new application or as the new version of an
// installed one. The module goes into the application's inactive slot. With
// req.Start the new version runs on trial and becomes active only once it
// has started; if it fails, the previous version is restored (and
// restarted if it was meant to run) and a *StartError reports both. A
// refused request returns a *RefusalError and changes nothing.
// Re-installing the active version only applies req.Start.
func (m *Manager) Install(ctx context.Context, req Request) (Status, error) {
	m.lock()
	defer m.unlock()
	if err := m.check(&req); err != nil {
		return m.failed(req.Name, err)
	}
	a := m.apps[req.Name]
	if a != nil && a.rec.Active >= 0 {
		if cur := a.rec.Slots[a.rec.Active]; cur.Sequence == req.Sequence && bytes.Equal(cur.SHA256, req.SHA256[:]) {
			return m.reinstall(ctx, a, &req)
		}
	}
	rec := record{Active: -1, Pending: -1}
	if a != nil {
		rec = a.rec
	}
	target := int8(0)
	if rec.Active == 0 {
		target = 1
	}
	rec.Slots[target] = newSlot(&req)
	if !req.Start {
		return m.installStopped(ctx, a, &req, rec, target)
	}
	return m.installOnTrial(ctx, a, &req, rec, target)
}

func newSlot(req *Request) slotInfo {
	return slotInfo{
		Version: req.Version, Sequence: req.Sequence, SHA256: slices.Clone(req.SHA256[:]), Size: uint32(len(req.Module)), //nolint:gosec // a module fits one protocol frame, far below 4 GiB
		Memory: req.Limits.MemoryLimit, Timeout: int64(req.Limits.ExecutionTimeout), Stack: req.Limits.MaxStackSize,
	}
}

// installStopped installs without a trial: the new version is active at
// once and the old one erased, in one commit.
func (m *Manager) installStopped(ctx context.Context, a *app, req *Request, rec record, target int8) (Status, error) {
	var b flash.Batch
	b.Put(slotKey(int(target), req.Name), req.Module)
	b.Append(req.Extra)
	old := rec.Active
	rec.Active, rec.Pending, rec.Run, rec.Stopped = target, -1, false, false
	if old >= 0 {
		rec.Slots[old] = slotInfo{}
		b.Delete(slotKey(int(old), req.Name))
	}
	b.Put(metaKey(req.Name), encode(rec))
	if err := m.commit(req.Name, &b); err != nil {
		return m.failed(req.Name, err)
	}
	m.installs++
	a = m.adopt(ctx, a, req.Name, rec)
	a.setState(protocol.StateInstalled, "")
	m.emit(EventInstalled, a.status())
	return a.status(), nil
}

// installOnTrial installs in two commits around a start: (1) the module
// and the record naming its slot on trial; (2) the outcome, the new
// version promoted or its slot erased.
func (m *Manager) installOnTrial(ctx context.Context, a *app, req *Request, rec record, target int8) (Status, error) {
	var b flash.Batch
	b.Put(slotKey(int(target), req.Name), req.Module)
	oldRun, oldStopped := rec.Run, rec.Stopped
	rec.Pending, rec.Run, rec.Stopped = target, true, false
	b.Put(metaKey(req.Name), encode(rec))
	if err := m.commit(req.Name, &b); err != nil {
		return m.failed(req.Name, err)
	}
	m.installs++
	a = m.adopt(ctx, a, req.Name, rec)
	startErr := m.start(ctx, a, target)

	next := rec
	next.Pending = -1
	b.Reset()
	if startErr == nil || rec.Active < 0 {
		// Promote: the new version started, or there is nothing to fall
		// back to (a first install keeps its module and reports the failure).
		old := next.Active
		next.Active = target
		if old >= 0 {
			next.Slots[old] = slotInfo{}
			b.Delete(slotKey(int(old), req.Name))
		}
	} else {
		next.Slots[target] = slotInfo{}
		next.Run, next.Stopped = oldRun, oldStopped
		b.Delete(slotKey(int(target), req.Name))
	}
	b.Put(metaKey(req.Name), encode(next))
	// Extra (the replay mark) lands with the outcome: an update cut short
	// by a power loss is rolled back at boot and can be delivered again.
	b.Append(req.Extra)
	if err := m.store.Commit(&b); err != nil {
		m.stopInstance(ctx, a)
		a.setState(protocol.StateFailed, "storage failure")
		a.reason = protocol.ReasonInternal
		return a.status(), &StorageError{App: req.Name, Err: err}
	}
	if startErr == nil {
		a.rec = next
		a.setState(protocol.StateRunning, "")
		m.log.Info("app version running", "app", a.name, "version", req.Version, "sequence", req.Sequence)
		m.emit(EventStarted, a.status())
		return a.status(), nil
	}
	return m.fallBack(ctx, a, req, rec, next, startErr)
}

// fallBack reports a version that failed to start and, if there was one,
// restores the previous version (next, already committed) and restarts it
// if it was meant to run.
func (m *Manager) fallBack(ctx context.Context, a *app, req *Request, trial, next record, startErr error) (Status, error) {
	a.setErr(startErr)
	failed := a.status()
	m.emit(EventFailed, failed)
	a.rec = next
	if trial.Active < 0 {
		return failed, &StartError{Failed: failed, Err: startErr}
	}
	m.log.Warn("app update failed, falling back", "app", a.name, "failed", req.Sequence, "sequence", next.Slots[next.Active].Sequence, "err", startErr)
	a.setState(protocol.StateInstalled, "")
	if next.Stopped {
		a.setState(protocol.StateStopped, "")
	}
	if next.Run {
		if err := m.start(ctx, a, next.Active); err != nil {
			a.setErr(err)
		} else {
			a.setState(protocol.StateRunning, "")
		}
	}
	fb := a.status()
	m.emit(EventFellBack, fb)
	return failed, &StartError{Failed: failed, Fallback: &fb, Err: startErr}
}

func (m *Manager) reinstall(ctx context.Context, a *app, req *Request) (Status, error) {
	if req.Extra != nil && req.Extra.Len() > 0 {
		if err := m.commit(a.name, req.Extra); err != nil {
			return a.status(), err
		}
	}
	if req.Start && a.inst == nil {
		return m.startLocked(ctx, a)
	}
	return a.status(), nil
}

// Start starts an installed application and persists that it should run.
func (m *Manager) Start(ctx context.Context, name string) (Status, error) {
	m.lock()
	defer m.unlock()
	a := m.apps[name]
	if a == nil {
		return m.failed(name, m.refuse(name, RefusedNotInstalled, ""))
	}
	return m.startLocked(ctx, a)
}

func (m *Manager) startLocked(ctx context.Context, a *app) (Status, error) {
	if a.inst != nil {
		return a.status(), nil
	}
	if !a.rec.Run {
		rec := a.rec
		rec.Run, rec.Stopped = true, false
		var b flash.Batch
		b.Put(metaKey(a.name), encode(rec))
		if err := m.commit(a.name, &b); err != nil {
			return a.status(), err
		}
		a.rec = rec
	}
	err := m.startActive(ctx, a)
	return a.status(), err
}

// Stop stops an application and persists that it should not run.
func (m *Manager) Stop(ctx context.Context, name string) (Status, error) {
	m.lock()
	defer m.unlock()
	a := m.apps[name]
	if a == nil {
		return m.failed(name, m.refuse(name, RefusedNotInstalled, ""))
	}
	if a.rec.Run || !a.rec.Stopped {
		rec := a.rec
		rec.Run, rec.Stopped = false, true
		var b flash.Batch
		b.Put(metaKey(a.name), encode(rec))
		if err := m.commit(a.name, &b); err != nil {
			return a.status(), err
		}
		a.rec = rec
	}
	m.stopInstance(ctx, a)
	a.setState(protocol.StateStopped, "")
	m.emit(EventStopped, a.status())
	return a.status(), nil
}

// Remove stops an application and erases it, both slots and its
// configuration, in one atomic commit.
func (m *Manager) Remove(ctx context.Context, name string) (Status, error) {
	m.lock()
	defer m.unlock()
	a := m.apps[name]
	if a == nil {
		return m.failed(name, m.refuse(name, RefusedNotInstalled, ""))
	}
	m.stopInstance(ctx, a)
	var b flash.Batch
	b.Delete(metaKey(name))
	b.Delete(slotKey(0, name))
	b.Delete(slotKey(1, name))
	b.Delete(configKey(name))
	if err := m.commit(name, &b); err != nil {
		a.setState(protocol.StateStopped, "")
		return a.status(), err
	}
	st := a.status()
	st.State, st.Slot, st.Reason, st.Resource, st.Message, st.Run = protocol.StateRemoved, -1, 0, 0, "", false
	delete(m.apps, name)
	m.cfgMu.Lock()
	delete(m.configs, name)
	m.cfgMu.Unlock()
	m.emit(EventRemoved, st)
	return st, nil
}

// maxConfigBytes bounds an application's persisted configuration.
const maxConfigBytes = 4096

// Configure stores an application's configuration. A generation not newer
// than the stored one is ignored.
func (m *Manager) Configure(name string, generation uint64, values map[string]string) error {
	m.lock()
	defer m.unlock()
	a := m.apps[name]
	if a == nil {
		return m.refuse(name, RefusedNotInstalled, "")
	}
	m.cfgMu.RLock()
	cur := m.configs[name]
	m.cfgMu.RUnlock()
	if cur != nil && generation != 0 && generation <= cur.Generation {
		return nil
	}
	c := &appConfig{Generation: generation, Values: maps.Clone(values)}
	raw := encode(c)
	if len(raw) > maxConfigBytes {
		return m.refuse(name, RefusedFlash, "configuration of %d bytes, limit %d", len(raw), maxConfigBytes)
	}
	var b flash.Batch
	b.Put(configKey(name), raw)
	if err := m.commit(name, &b); err != nil {
		return err
	}
	m.cfgMu.Lock()
	m.configs[name] = c
	m.cfgMu.Unlock()
	return nil
}

// Lookup returns an application's configuration value; it implements the
// runtime's configuration source. It does not wait for the manager's
// operations, so an application may read its configuration while it
// starts (from wasmbed_init), at boot as after a command.
func (m *Manager) Lookup(name, key string) (string, bool) {
	m.cfgMu.RLock()
	defer m.cfgMu.RUnlock()
	if c := m.configs[name]; c != nil {
		v, ok := c.Values[key]
		return v, ok
	}
	return "", false
}

// Status returns an application's status.
func (m *Manager) Status(name string) (Status, bool) {
	m.lock()
	defer m.unlock()
	if a := m.apps[name]; a != nil {
		return a.status(), true
	}
	return Status{}, false
}

// Statuses appends the status of every installed application to dst, in
// name order.
func (m *Manager) Statuses(dst []Status) []Status {
	m.lock()
	defer m.unlock()
	n := len(dst)
	for _, a := range m.apps {
		dst = append(dst, a.status())
	}
	slices.SortFunc(dst[n:], func(x, y Status) int { return cmp.Compare(x.Name, y.Name) })
	return dst
}

// Running returns how many applications run.
func (m *Manager) Running() int {
	m.lock()
	defer m.unlock()
	n := 0
	for _, a := range m.apps {
		if a.inst != nil {
			n++
		}
	}
	return n
}

// Refusals returns how many requests were refused for reason r since the
// manager was opened.
func (m *Manager) Refusals(r Refusal) uint64 {
	m.lock()
	defer m.unlock()
	if r >= numRefusals {
		return 0
	}
	return m.refusals[r]
}

// Installs returns how many versions were written to flash since the
// manager was opened: each install of a new version, or of a version into
// a slot again after a power loss rolled it back, counts once; delivering
// the active version again does not. Fault tests read it to prove that no
// version was installed twice.
func (m *Manager) Installs() uint64 {
	m.lock()
	defer m.unlock()
	return m.installs
}

// Shutdown stops every instance without changing desired states, as a
// device does before it powers down.
func (m *Manager) Shutdown(ctx context.Context) {
	m.lock()
	defer m.unlock()
	for _, a := range m.apps {
		m.stopInstance(ctx, a)
	}
}
