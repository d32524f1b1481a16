;; sleeper: sleeps 10 s at a time, for ever, and keeps what sleep_ms
;; returned last (tests that sleeps end at the execution's deadline).
(module
  (import "wasmbed" "sleep_ms" (func $sleep (param i32) (result i32)))
  (global $last (export "last_sleep") (mut i32) (i32.const 1))
  (func (export "wasmbed_tick")
    (loop $again
      (global.set $last (call $sleep (i32.const 10000)))
      (br $again))))
