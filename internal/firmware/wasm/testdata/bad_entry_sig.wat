(module
  (func (export "wasmbed_tick") (param i32)))
