;; divzero: divides by zero on every tick (a plain trap).
(module
  (global $zero (mut i32) (i32.const 0))
  (func (export "wasmbed_tick")
    (drop (i32.div_u (i32.const 1) (global.get $zero)))))
