(module
  (import "wasmbed" "reboot" (func (result i32)))
  (func (export "wasmbed_tick")))
