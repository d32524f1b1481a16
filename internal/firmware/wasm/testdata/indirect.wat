;; Recursion through call_indirect, a table and ref.func: every path must
;; stay accounted against maxStackSize.
(module
  (type $t (func (param i32) (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) $down)
  (elem declare func $up)
  (global $g funcref (ref.func $up))
  (func $down (type $t)
    (call_indirect (type $t) (i32.add (local.get 0) (i32.const 1)) (i32.const 1)))
  (func $up (type $t)
    (call_indirect (type $t) (i32.add (local.get 0) (i32.const 1)) (i32.const 0)))
  (func (export "wasmbed_init")
    (table.set 0 (i32.const 1) (global.get $g)))
  (func (export "wasmbed_tick")
    (drop (call_indirect (type $t) (i32.const 0) (i32.const 0)))))
