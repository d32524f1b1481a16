// Package hal is the hardware abstraction layer of the Wasmbed device
// firmware: GPIO, UART, SPI, I2C, sensors and power states, plus the
// injected clock every other firmware component reads time from (and
// schedules its timers on: see link.Clock).
//
// The firmware never touches hardware directly; it talks to the small
// interfaces in this package, collected in a [Board]. On a real MCU they would
// wrap registers; in this codebase they are implemented by [Sim], a simulated
// board whose state tests can observe: pin toggles recorded with timestamps,
// UART capture and loopback buffers, simulated I2C/SPI peripherals (such as the
// [TempSensor] at an I2C address) and power states with consumption
// accounting, all on the injected [Clock].
//
// Usage:
//
//	clk := hal.NewManualClock(time.Unix(0, 0))
//	sim := hal.NewSim(clk, hal.SimConfig{Pins: 32})
//	sim.AddTempSensor(0, 0x48, 21.5) // I2C bus 0, address 0x48, sensor id 0
//	board := sim.Board()
//	_ = board.GPIO.Configure(5, hal.PinOutput)
//	_ = board.GPIO.Write(5, true)
//	fmt.Println(sim.PinEvents()) // [{1970-01-01 ... 5 true}]
//
// Implementations are not safe for concurrent use unless stated otherwise:
// a device is a single-threaded state machine and owns its board. [Sim]'s
// observation methods are safe to call from another goroutine.
//
// Per-device memory is kept small: a [Sim] allocates its event log, UART
// buffers and peripheral tables only on first use.
package hal

import "errors"

// Errors returned by HAL implementations. Callers branch on them with
// errors.Is; the WASM host API maps each to a negative errno for the guest.
var (
	// ErrNoSuchPin reports a GPIO pin number the board does not have.
	ErrNoSuchPin = errors.New("no such pin")
	// ErrPinMode reports a write to a pin that is not configured as an output.
	ErrPinMode = errors.New("pin not configured for this operation")
	// ErrNoSuchPort reports a UART port, SPI bus or I2C bus the board does not have.
	ErrNoSuchPort = errors.New("no such port or bus")
	// ErrNoDevice reports that no peripheral answered (I2C NACK, no sensor with that id).
	ErrNoDevice = errors.New("no device at address")
	// ErrInvalid reports an argument a peripheral refuses (bad length, bad register).
	ErrInvalid = errors.New("invalid argument")
	// ErrUnsupported reports an operation the board does not implement.
	ErrUnsupported = errors.New("operation not supported by board")
	// ErrIO reports a peripheral failure (simulated bus error).
	ErrIO = errors.New("i/o error")
)

// PinMode is the electrical configuration of a GPIO pin.
type PinMode uint8

// Pin modes.
const (
	// PinDisabled is the reset state of every pin.
	PinDisabled PinMode = iota
	// PinInput reads the level driven from outside.
	PinInput
	// PinInputPullUp reads high unless driven low from outside.
	PinInputPullUp
	// PinOutput drives the level written by the firmware.
	PinOutput
)

// String returns the mode's name.
func (m PinMode) String() string {
	switch m {
	case PinDisabled:
		return "disabled"
	case PinInput:
		return "input"
	case PinInputPullUp:
		return "input-pullup"
	case PinOutput:
		return "output"
	}
	return "unknown"
}

// GPIO is a bank of general-purpose digital pins numbered from 0.
type GPIO interface {
	// Configure sets the mode of pin.
	Configure(pin int, mode PinMode) error
	// Write drives an output pin high (true) or low (false).
	Write(pin int, high bool) error
	// Read returns the level of pin: the driven level for outputs, the
	// external level for inputs.
	Read(pin int) (bool, error)
}

// UART is a set of serial ports numbered from 0.
type UART interface {
	// Write transmits p on port and returns the number of bytes accepted.
	Write(port int, p []byte) (int, error)
	// Read copies received bytes into p without blocking and returns how
	// many were copied (0 when nothing is pending).
	Read(port int, p []byte) (int, error)
}

// SPI is a set of SPI buses (controller side) numbered from 0.
type SPI interface {
	// Transfer clocks out tx while clocking in len(tx) bytes into rx.
	// rx may be nil (write only); otherwise len(rx) must equal len(tx).
	Transfer(bus int, tx, rx []byte) error
}

// I2C is a set of I2C buses (controller side) numbered from 0.
type I2C interface {
	// Transfer writes w to the 7-bit address addr, then (repeated start)
	// reads len(r) bytes into r. Either may be empty.
	Transfer(bus int, addr uint16, w, r []byte) error
}

// Sensors gives access to the board's sensors by small integer id
// (see SensorTemperature).
type Sensors interface {
	// ReadSensor returns the current value of sensor id in its SI-ish unit
	// (°C for temperature). ErrNoDevice reports an unknown id.
	ReadSensor(id int) (float64, error)
}

// Well-known sensor ids.
const (
	// SensorTemperature is the board temperature in degrees Celsius.
	SensorTemperature = 0
)

// PowerState is the power mode of the MCU.
type PowerState uint8

// Power states, from most to least consuming.
const (
	// PowerActive: core running.
	PowerActive PowerState = iota
	// PowerSleep: core clock gated, RAM and peripherals retained, fast wake-up.
	PowerSleep
	// PowerDeepSleep: only the always-on domain powered; wake-up by timer or pin.
	PowerDeepSleep
)

// String returns the state's name.
func (s PowerState) String() string {
	switch s {
	case PowerActive:
		return "active"
	case PowerSleep:
		return "sleep"
	case PowerDeepSleep:
		return "deep-sleep"
	}
	return "unknown"
}

// Power controls the MCU's power state.
type Power interface {
	// State returns the current power state.
	State() PowerState
	// SetState switches to s.
	SetState(s PowerState) error
}

// Board collects a device's peripherals. A nil field means the board has
// no such peripheral; callers report ErrUnsupported for it.
type Board struct {
	GPIO    GPIO
	UART    UART
	SPI     SPI
	I2C     I2C
	Sensors Sensors
	Power   Power
}
