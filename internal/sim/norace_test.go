//go:build !race

package sim_test

// maxPrivatePerDevice bounds private memory (smaps Anonymous, after a full
// collection) per idle device with its session open, checked by
// TestFleetMemoryBound and TestFleetScale. A device measures about
// 60 KiB (docs/simulator.md#figures).
const maxPrivatePerDevice = 96 << 10
