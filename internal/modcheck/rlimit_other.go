//go:build !unix

package modcheck

func limitCPU(uint64) {}

func limitAddressSpace(uint64) {}
