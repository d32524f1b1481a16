;; Multi-value blocks, br_table, select, bulk memory and sign extension:
;; exercises the instrumenter's decoder; traps if a result is wrong.
(module
  (memory 1 2)
  (func $swap (param i32 i32) (result i32 i32) (local.get 1) (local.get 0))
  (func $pick (param i32) (result i32)
    (block $c (block $b (block $a
      (br_table $a $b $c (local.get 0)))
      (return (i32.const 10)))
      (return (i32.const 20)))
    (i32.const 30))
  (func (export "wasmbed_tick")
    (local i32)
    (call $swap (i32.const 1) (i32.const 2))
    (i32.sub)                                ;; 2 - 1 = 1
    (block (param i32) (result i32) (i32.const 1) (i32.add))
    (local.set 0)
    (if (i32.ne (local.get 0) (i32.const 2)) (then unreachable))
    (if (i32.ne (call $pick (i32.const 1)) (i32.const 20)) (then unreachable))
    (if (i32.ne (select (i32.const 7) (i32.const 8) (i32.const 0)) (i32.const 8)) (then unreachable))
    (memory.fill (i32.const 0) (i32.const 255) (i32.const 16))
    (memory.copy (i32.const 100) (i32.const 0) (i32.const 16))
    (if (i32.ne (i32.extend8_s (i32.load8_u (i32.const 105))) (i32.const -1)) (then unreachable))
    (if (i32.ne (memory.size) (i32.const 1)) (then unreachable))
    (if (i32.ne (memory.grow (i32.const 1)) (i32.const 1)) (then unreachable))
    (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))))
