(module
  (func $s)
  (start $s)
  (func (export "wasmbed_tick")))
