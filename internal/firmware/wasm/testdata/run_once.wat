;; A run-to-completion app: _start logs, sleeps 250 ms on the device clock
;; and publishes the elapsed device time as metric "elapsed_ms".
(module
  (import "wasmbed" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "wasmbed" "time_ms" (func $now (result i64)))
  (import "wasmbed" "sleep_ms" (func $sleep (param i32) (result i32)))
  (import "wasmbed" "publish_metric" (func $metric (param i32 i32 f64) (result i32)))
  (memory 1)
  (data (i32.const 0) "hello")
  (data (i32.const 16) "elapsed_ms")
  (func (export "_start")
    (local $t0 i64)
    (local.set $t0 (call $now))
    (drop (call $log (i32.const 1) (i32.const 0) (i32.const 5)))
    (drop (call $sleep (i32.const 250)))
    (drop (call $metric (i32.const 16) (i32.const 10)
      (f64.convert_i64_s (i64.sub (call $now) (local.get $t0)))))))
