;; tablegrow: grows its table by 256 elements at a time until table.grow
;; fails (tests that tables are bounded; the declared maximum is far
;; above the bounds).
(module
  (table $t 1 1000000 funcref)
  (func (export "wasmbed_tick")
    (block $done
      (loop $grow
        (br_if $done (i32.eq (table.grow $t (ref.null func) (i32.const 256)) (i32.const -1)))
        (br $grow))))
  (func (export "size") (result i32) (table.size $t)))
