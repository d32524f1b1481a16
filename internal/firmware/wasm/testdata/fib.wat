;; fib: recursive fib(25) per tick (242,785 calls): measures call overhead
;; and thus the cost of stack accounting.
(module
  (global $out (mut i32) (i32.const 0))
  (func $fib (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add
        (call $fib (i32.sub (local.get $n) (i32.const 1)))
        (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func (export "wasmbed_tick")
    (global.set $out (call $fib (i32.const 25))))
  (func (export "result") (result i32) (global.get $out)))
