//go:build !unix

package sim

func checkFileLimit(int) error { return nil }
