//go:build race

package sim_test

// maxPrivatePerDevice bounds private memory (smaps Anonymous, after a full
// collection) per idle device with its session open, checked by
// TestFleetMemoryBound and TestFleetScale. Under the race detector a
// device measures about 620 KiB, ten times its normal figure: shadow
// memory and larger stacks.
const maxPrivatePerDevice = 1 << 20
