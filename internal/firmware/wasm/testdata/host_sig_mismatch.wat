(module
  (import "wasmbed" "gpio_write" (func (param i32) (result i32)))
  (func (export "wasmbed_tick")))
