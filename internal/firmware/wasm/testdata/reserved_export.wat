(module
  (global (export "__wasmbed_sp") (mut i32) (i32.const 0))
  (func (export "wasmbed_tick")))
