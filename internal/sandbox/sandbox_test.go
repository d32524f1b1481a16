package sandbox

import (
	"testing"
	"time"
)

func TestWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Limits
		want Limits
	}{
		{"zero", Limits{}, Limits{MemoryLimit: DefaultMemoryLimit, ExecutionTimeout: DefaultExecutionTimeout, MaxStackSize: DefaultMaxStackSize}},
		{"negative timeout", Limits{ExecutionTimeout: -time.Second}, Limits{MemoryLimit: DefaultMemoryLimit, ExecutionTimeout: DefaultExecutionTimeout, MaxStackSize: DefaultMaxStackSize}},
		{"set", Limits{MemoryLimit: 1, ExecutionTimeout: time.Second, MaxStackSize: 2}, Limits{MemoryLimit: 1, ExecutionTimeout: time.Second, MaxStackSize: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.WithDefaults(); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMemoryPages(t *testing.T) {
	tests := []struct {
		bytes uint64
		want  uint32
	}{
		{0, 0}, {1, 1}, {PageSize, 1}, {PageSize + 1, 2}, {4 << 30, 65536}, {1 << 62, 65536}, {^uint64(0), 65536},
	}
	for _, tt := range tests {
		if got := (Limits{MemoryLimit: tt.bytes}).MemoryPages(); got != tt.want {
			t.Errorf("MemoryPages(%d): got %d, want %d", tt.bytes, got, tt.want)
		}
	}
}
