;; hostcalls: 1,000 gpio_write host calls per tick.
(module
  (import "wasmbed" "gpio_write" (func $w (param i32 i32) (result i32)))
  (func (export "wasmbed_tick")
    (local $i i32)
    (loop $l
      (drop (call $w (i32.const 5) (i32.and (local.get $i) (i32.const 1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))))
