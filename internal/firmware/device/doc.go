// Package device composes the simulated Wasmbed firmware: the
// WasmbedFirmware structure of the architecture,
//
//	Firmware{Runtime, Security, Applications, WiFi, Monitoring, Client}
//
// wired together for one boot of one device, and a [Device] that owns the
// parts that survive a power cycle — its flash chip and its configuration
// — and boots, runs, reboots and loses power.
//
// Every source of time, randomness and I/O is injected through [Config]:
// the clock (hal.Clock, shared by the link manager, the client, the
// application ticks and the HAL), the random source (backoff jitter, the
// simulated medium), the dialer, the flash chip and the logger. Many
// devices share one [wasm.Engine] so a module is compiled once per process.
//
// # Boot
//
// Boot mounts the flash store (replaying its log: a power cut in the
// middle of a write leaves each transaction entirely applied or absent),
// loads or creates the device's identity key, opens the application
// manager (which rolls back an update that a power loss interrupted and
// restarts every application whose desired state is running), and starts
// the gateway client, which enrolls the device if it has no identity yet.
//
// # Fault injection
//
// [Device.PowerLoss] cuts power at once: flash writes in flight are torn,
// the connection drops without a goodbye, RAM (the Firmware) is lost; the
// device stays off for Config.PowerOffTime and boots again from flash.
// [Device.Reboot] is an orderly restart, [Device.FlapLink] takes the link
// down for a while, and the chip returned by [Device.Flash] can cut power
// at an exact write step.
package device
