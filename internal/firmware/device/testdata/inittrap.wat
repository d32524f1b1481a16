;; inittrap: traps in wasmbed_init (an update that cannot start).
(module
  (func (export "wasmbed_init") unreachable)
  (func (export "wasmbed_tick")))
