package hal

import (
	"fmt"
	"sync"
	"time"
)

// SimConfig sizes a simulated board. Zero fields take the defaults noted.
type SimConfig struct {
	// Pins is the number of GPIO pins (default 32, at most 64).
	Pins int
	// UARTPorts is the number of UART ports (default 1).
	UARTPorts int
	// SPIBuses is the number of SPI buses (default 1).
	SPIBuses int
	// I2CBuses is the number of I2C buses (default 1).
	I2CBuses int
	// MaxEvents bounds the recorded pin-event log; the oldest events are
	// dropped first (default 256).
	MaxEvents int
	// MaxUARTCapture bounds each port's captured transmit bytes; the oldest
	// bytes are dropped first (default 4096).
	MaxUARTCapture int
	// Power gives the current drawn in each power state (default
	// DefaultPowerModel).
	Power PowerModel
}

// PowerModel is the current drawn by the MCU in each power state, used for
// consumption accounting.
type PowerModel struct {
	ActiveMilliAmps    float64
	SleepMilliAmps     float64
	DeepSleepMilliAmps float64
	// Volts is the supply voltage.
	Volts float64
}

// DefaultPowerModel is a generic 3.3 V MCU.
var DefaultPowerModel = PowerModel{ActiveMilliAmps: 20, SleepMilliAmps: 2, DeepSleepMilliAmps: 0.01, Volts: 3.3}

// PinEvent is one recorded change of a pin's level.
type PinEvent struct {
	At   time.Time
	Pin  int
	High bool
}

// I2CDevice is a simulated I2C peripheral (target side).
type I2CDevice interface {
	// Transfer handles a write of w followed by a read into r.
	Transfer(w, r []byte) error
}

// SPIDevice is a simulated SPI peripheral.
type SPIDevice interface {
	// Transfer receives tx and fills rx (same length).
	Transfer(tx, rx []byte) error
}

// SensorFunc produces a sensor reading at time now.
type SensorFunc func(now time.Time) (float64, error)

// Sim is a simulated board implementing every HAL interface on an injected
// clock, recording what the firmware did so tests can observe it. Its
// observation and injection methods (PinEvents, UARTOutput, InjectUART, ...)
// are safe to call concurrently with the firmware.
type Sim struct {
	clock Clock
	cfg   SimConfig

	mu       sync.Mutex
	modes    []PinMode // lazily allocated
	outputs  uint64    // driven levels
	inputs   uint64    // externally driven levels
	events   []PinEvent
	evStart  int // ring start when len(events)==MaxEvents
	toggles  map[int]int
	uarts    []simUART // lazily allocated
	i2c      map[busAddr]I2CDevice
	spi      map[int]SPIDevice
	sensors  map[int]SensorFunc
	power    PowerState
	powerAt  time.Time
	energyJ  float64
	powerCnt int
}

type busAddr struct {
	bus  int
	addr uint16
}

type simUART struct {
	tx       []byte
	rx       []byte
	loopback bool
}

// NewSim returns a simulated board on clock.
func NewSim(clock Clock, cfg SimConfig) *Sim {
	if cfg.Pins <= 0 {
		cfg.Pins = 32
	}
	if cfg.Pins > 64 {
		cfg.Pins = 64
	}
	if cfg.UARTPorts <= 0 {
		cfg.UARTPorts = 1
	}
	if cfg.SPIBuses <= 0 {
		cfg.SPIBuses = 1
	}
	if cfg.I2CBuses <= 0 {
		cfg.I2CBuses = 1
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 256
	}
	if cfg.MaxUARTCapture <= 0 {
		cfg.MaxUARTCapture = 4096
	}
	if cfg.Power == (PowerModel{}) {
		cfg.Power = DefaultPowerModel
	}
	return &Sim{clock: clock, cfg: cfg, powerAt: clock.Now()}
}

// Board returns the simulator's peripherals as a Board. Each call returns
// a new Board value sharing the same state.
func (s *Sim) Board() *Board {
	return &Board{
		GPIO:    simGPIO{s},
		UART:    simUARTs{s},
		SPI:     simSPI{s},
		I2C:     simI2C{s},
		Sensors: simSensors{s},
		Power:   simPower{s},
	}
}

// ---- GPIO ----

type simGPIO struct{ s *Sim }

func (g simGPIO) Configure(pin int, mode PinMode) error {
	s := g.s
	if pin < 0 || pin >= s.cfg.Pins {
		return fmt.Errorf("configure pin %d: %w", pin, ErrNoSuchPin)
	}
	if mode > PinOutput {
		return fmt.Errorf("configure pin %d mode %d: %w", pin, mode, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.modes == nil {
		if mode == PinDisabled {
			return nil
		}
		s.modes = make([]PinMode, s.cfg.Pins)
	}
	s.modes[pin] = mode
	return nil
}

func (g simGPIO) Write(pin int, high bool) error {
	s := g.s
	if pin < 0 || pin >= s.cfg.Pins {
		return fmt.Errorf("write pin %d: %w", pin, ErrNoSuchPin)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.modes == nil || s.modes[pin] != PinOutput {
		return fmt.Errorf("write pin %d: %w", pin, ErrPinMode)
	}
	bit := uint64(1) << pin
	if (s.outputs&bit != 0) == high {
		return nil
	}
	if high {
		s.outputs |= bit
	} else {
		s.outputs &^= bit
	}
	s.recordLocked(PinEvent{At: s.clock.Now(), Pin: pin, High: high})
	return nil
}

func (s *Sim) recordLocked(ev PinEvent) {
	if s.toggles == nil {
		s.toggles = make(map[int]int)
	}
	s.toggles[ev.Pin]++
	if len(s.events) < s.cfg.MaxEvents {
		s.events = append(s.events, ev)
		return
	}
	s.events[s.evStart] = ev
	s.evStart = (s.evStart + 1) % len(s.events)
}

func (g simGPIO) Read(pin int) (bool, error) {
	s := g.s
	if pin < 0 || pin >= s.cfg.Pins {
		return false, fmt.Errorf("read pin %d: %w", pin, ErrNoSuchPin)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bit := uint64(1) << pin
	mode := PinDisabled
	if s.modes != nil {
		mode = s.modes[pin]
	}
	switch mode {
	case PinOutput:
		return s.outputs&bit != 0, nil
	case PinInput:
		return s.inputs&bit != 0, nil
	case PinInputPullUp:
		// High unless driven low: inputs bit set means "driven low" here.
		return s.inputs&bit == 0, nil
	}
	return false, fmt.Errorf("read pin %d: %w", pin, ErrPinMode)
}

// SetInput drives pin from outside the MCU (a button, another chip). For a
// pull-up input, high=false pulls it low.
func (s *Sim) SetInput(pin int, high bool) {
	if pin < 0 || pin >= s.cfg.Pins {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bit := uint64(1) << pin
	pullUp := s.modes != nil && s.modes[pin] == PinInputPullUp
	set := high
	if pullUp {
		set = !high
	}
	if set {
		s.inputs |= bit
	} else {
		s.inputs &^= bit
	}
}

// PinEvents returns the recorded output level changes, oldest first (at
// most SimConfig.MaxEvents of them).
func (s *Sim) PinEvents() []PinEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PinEvent, 0, len(s.events))
	out = append(out, s.events[s.evStart:]...)
	out = append(out, s.events[:s.evStart]...)
	return out
}

// Toggles returns how many times pin changed level since the start (not
// bounded by the event log size).
func (s *Sim) Toggles(pin int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.toggles[pin]
}

// PinMode returns the configured mode of pin.
func (s *Sim) PinMode(pin int) PinMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.modes == nil || pin < 0 || pin >= len(s.modes) {
		return PinDisabled
	}
	return s.modes[pin]
}

// ---- UART ----

type simUARTs struct{ s *Sim }

func (s *Sim) uartLocked(port int) (*simUART, error) {
	if port < 0 || port >= s.cfg.UARTPorts {
		return nil, fmt.Errorf("uart %d: %w", port, ErrNoSuchPort)
	}
	if s.uarts == nil {
		s.uarts = make([]simUART, s.cfg.UARTPorts)
	}
	return &s.uarts[port], nil
}

func (u simUARTs) Write(port int, p []byte) (int, error) {
	s := u.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ua, err := s.uartLocked(port)
	if err != nil {
		return 0, err
	}
	ua.tx = appendBounded(ua.tx, p, s.cfg.MaxUARTCapture)
	if ua.loopback {
		ua.rx = appendBounded(ua.rx, p, s.cfg.MaxUARTCapture)
	}
	return len(p), nil
}

func (u simUARTs) Read(port int, p []byte) (int, error) {
	s := u.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ua, err := s.uartLocked(port)
	if err != nil {
		return 0, err
	}
	n := copy(p, ua.rx)
	ua.rx = ua.rx[:copy(ua.rx, ua.rx[n:])]
	if len(ua.rx) == 0 {
		ua.rx = nil
	}
	return n, nil
}

func appendBounded(buf, p []byte, limit int) []byte {
	if len(p) >= limit {
		return append(buf[:0], p[len(p)-limit:]...)
	}
	if over := len(buf) + len(p) - limit; over > 0 {
		buf = buf[:copy(buf, buf[over:])]
	}
	return append(buf, p...)
}

// UARTOutput returns a copy of the bytes transmitted on port (the last
// SimConfig.MaxUARTCapture of them).
func (s *Sim) UARTOutput(port int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uarts == nil || port < 0 || port >= len(s.uarts) {
		return nil
	}
	return append([]byte(nil), s.uarts[port].tx...)
}

// InjectUART queues p as bytes received on port.
func (s *Sim) InjectUART(port int, p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ua, err := s.uartLocked(port)
	if err != nil {
		return err
	}
	ua.rx = appendBounded(ua.rx, p, s.cfg.MaxUARTCapture)
	return nil
}

// SetUARTLoopback connects port's TX to its RX.
func (s *Sim) SetUARTLoopback(port int, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ua, err := s.uartLocked(port)
	if err != nil {
		return err
	}
	ua.loopback = on
	return nil
}

// ---- I2C ----

type simI2C struct{ s *Sim }

// AttachI2C connects dev at the 7-bit address addr of bus.
func (s *Sim) AttachI2C(bus int, addr uint16, dev I2CDevice) error {
	if bus < 0 || bus >= s.cfg.I2CBuses {
		return fmt.Errorf("i2c bus %d: %w", bus, ErrNoSuchPort)
	}
	if addr > 0x7f {
		return fmt.Errorf("i2c address %#x: %w", addr, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.i2c == nil {
		s.i2c = make(map[busAddr]I2CDevice)
	}
	s.i2c[busAddr{bus, addr}] = dev
	return nil
}

func (c simI2C) Transfer(bus int, addr uint16, w, r []byte) error {
	s := c.s
	if bus < 0 || bus >= s.cfg.I2CBuses {
		return fmt.Errorf("i2c bus %d: %w", bus, ErrNoSuchPort)
	}
	s.mu.Lock()
	dev := s.i2c[busAddr{bus, addr}]
	s.mu.Unlock()
	if dev == nil {
		return fmt.Errorf("i2c %d addr %#x: %w", bus, addr, ErrNoDevice)
	}
	return dev.Transfer(w, r)
}

// TempSensor is a simulated TMP102-style I2C temperature sensor: register
// 0x00 holds the temperature as a 12-bit two's-complement value in 1/16 °C,
// left-aligned in two big-endian bytes. Writing one byte selects the
// register; reads return the selected register. It is safe for concurrent use.
type TempSensor struct {
	mu      sync.Mutex
	celsius float64
	reg     byte
}

// NewTempSensor returns a sensor reading celsius.
func NewTempSensor(celsius float64) *TempSensor { return &TempSensor{celsius: celsius} }

// Set changes the temperature the sensor reports.
func (t *TempSensor) Set(celsius float64) {
	t.mu.Lock()
	t.celsius = celsius
	t.mu.Unlock()
}

// Celsius returns the temperature the sensor reports, quantised to its
// 1/16 °C resolution.
func (t *TempSensor) Celsius() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return float64(t.raw()) / 16
}

func (t *TempSensor) raw() int16 {
	v := t.celsius * 16
	if v > 2047 {
		v = 2047
	}
	if v < -2048 {
		v = -2048
	}
	return int16(v)
}

// Transfer implements I2CDevice.
func (t *TempSensor) Transfer(w, r []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(w) > 0 {
		if w[0] > 0x03 {
			return fmt.Errorf("tmp102 register %#x: %w", w[0], ErrInvalid)
		}
		t.reg = w[0]
	}
	var val uint16
	switch t.reg {
	case 0x00:
		val = uint16(t.raw()) << 4 //nolint:gosec // the sensor's 12-bit two's-complement register, as the part encodes it
	case 0x01:
		val = 0x60a0 // configuration register reset value
	case 0x02:
		val = 75 * 16 << 4 // T_LOW default 75 °C
	case 0x03:
		val = 80 * 16 << 4 // T_HIGH default 80 °C
	}
	for i := range r {
		if i%2 == 0 {
			r[i] = byte(val >> 8)
		} else {
			r[i] = byte(val) //nolint:gosec // the register's low byte
		}
	}
	return nil
}

// AddTempSensor attaches a TempSensor reading celsius at addr on bus and
// registers it as sensor SensorTemperature. It returns the sensor so tests
// can change its reading.
func (s *Sim) AddTempSensor(bus int, addr uint16, celsius float64) (*TempSensor, error) {
	ts := NewTempSensor(celsius)
	if err := s.AttachI2C(bus, addr, ts); err != nil {
		return nil, err
	}
	s.SetSensor(SensorTemperature, func(time.Time) (float64, error) {
		var buf [2]byte
		if err := (simI2C{s}).Transfer(bus, addr, []byte{0}, buf[:]); err != nil {
			return 0, err
		}
		raw := int16(uint16(buf[0])<<8|uint16(buf[1])) >> 4 //nolint:gosec // the sensor's 12-bit two's-complement register, as the part encodes it
		return float64(raw) / 16, nil
	})
	return ts, nil
}

// ---- SPI ----

type simSPI struct{ s *Sim }

// AttachSPI connects dev to bus (one device per bus; chip select is
// implied).
func (s *Sim) AttachSPI(bus int, dev SPIDevice) error {
	if bus < 0 || bus >= s.cfg.SPIBuses {
		return fmt.Errorf("spi bus %d: %w", bus, ErrNoSuchPort)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.spi == nil {
		s.spi = make(map[int]SPIDevice)
	}
	s.spi[bus] = dev
	return nil
}

func (c simSPI) Transfer(bus int, tx, rx []byte) error {
	s := c.s
	if bus < 0 || bus >= s.cfg.SPIBuses {
		return fmt.Errorf("spi bus %d: %w", bus, ErrNoSuchPort)
	}
	if rx != nil && len(rx) != len(tx) {
		return fmt.Errorf("spi transfer: rx %d bytes, tx %d bytes: %w", len(rx), len(tx), ErrInvalid)
	}
	s.mu.Lock()
	dev := s.spi[bus]
	s.mu.Unlock()
	if rx == nil {
		rx = make([]byte, len(tx))
	}
	if dev == nil {
		// Floating MISO with a pull-up reads all ones.
		for i := range rx {
			rx[i] = 0xff
		}
		return nil
	}
	return dev.Transfer(tx, rx)
}

// SPILoopback is an SPIDevice wiring MOSI to MISO: it echoes every byte.
type SPILoopback struct{}

// Transfer implements SPIDevice.
func (SPILoopback) Transfer(tx, rx []byte) error {
	copy(rx, tx)
	return nil
}

// ---- Sensors ----

type simSensors struct{ s *Sim }

// SetSensor registers fn as sensor id (replacing any previous one).
func (s *Sim) SetSensor(id int, fn SensorFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sensors == nil {
		s.sensors = make(map[int]SensorFunc)
	}
	s.sensors[id] = fn
}

func (c simSensors) ReadSensor(id int) (float64, error) {
	s := c.s
	s.mu.Lock()
	fn := s.sensors[id]
	s.mu.Unlock()
	if fn == nil {
		return 0, fmt.Errorf("sensor %d: %w", id, ErrNoDevice)
	}
	return fn(s.clock.Now())
}

// ---- Power ----

type simPower struct{ s *Sim }

func (p simPower) State() PowerState {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	return p.s.power
}

func (p simPower) SetState(st PowerState) error {
	if st > PowerDeepSleep {
		return fmt.Errorf("power state %d: %w", st, ErrInvalid)
	}
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accountLocked(s.clock.Now())
	if s.power != st {
		s.power = st
		s.powerCnt++
	}
	return nil
}

func (s *Sim) accountLocked(now time.Time) {
	if dt := now.Sub(s.powerAt); dt > 0 {
		var ma float64
		switch s.power {
		case PowerActive:
			ma = s.cfg.Power.ActiveMilliAmps
		case PowerSleep:
			ma = s.cfg.Power.SleepMilliAmps
		case PowerDeepSleep:
			ma = s.cfg.Power.DeepSleepMilliAmps
		}
		s.energyJ += ma / 1000 * s.cfg.Power.Volts * dt.Seconds()
	}
	if now.After(s.powerAt) {
		s.powerAt = now
	}
}

// PowerStats reports the power accounting of the simulated board.
type PowerStats struct {
	State       PowerState
	Transitions int
	// EnergyJoules consumed since the simulator was created, integrating
	// the PowerModel's current over time spent in each state.
	EnergyJoules float64
}

// PowerStats returns the power accounting up to the clock's current time.
func (s *Sim) PowerStats() PowerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accountLocked(s.clock.Now())
	return PowerStats{State: s.power, Transitions: s.powerCnt, EnergyJoules: s.energyJ}
}
