;; calltree: a loop-free binary tree of calls, 2^40 of them, at most 41
;; frames deep (tests that executionTimeout is checked at function
;; entries, not only at loop headers).
(module
  (func $tree (param $depth i32)
    (if (local.get $depth)
      (then
        (call $tree (i32.sub (local.get $depth) (i32.const 1)))
        (call $tree (i32.sub (local.get $depth) (i32.const 1))))))
  (func (export "wasmbed_tick")
    (call $tree (i32.const 40))))
