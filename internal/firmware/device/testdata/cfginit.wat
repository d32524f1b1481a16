;; cfginit: reads configuration key "mode" in wasmbed_init and traps
;; unless its value is "ok"; its ticks do nothing. Tests use it to check
;; that an application sees its configuration while it initialises.
(module
  (import "wasmbed" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (memory 1)
  (data (i32.const 0) "mode")
  (func (export "wasmbed_init")
    (if (i32.ne (call $config_get (i32.const 0) (i32.const 4) (i32.const 16) (i32.const 8)) (i32.const 2))
      (then unreachable))
    ;; "ok" little-endian: 'o' = 0x6f, 'k' = 0x6b
    (if (i32.ne (i32.load16_u (i32.const 16)) (i32.const 0x6b6f))
      (then unreachable)))
  (func (export "wasmbed_tick")))
