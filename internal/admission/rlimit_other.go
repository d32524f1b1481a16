//go:build !unix

package admission

func limitCPU(uint64) {}

func limitAddressSpace(uint64) {}
