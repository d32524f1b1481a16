;; memhog: grows its memory one page at a time on every tick until
;; memory.grow fails (returns -1), then returns normally. The runtime
;; reports the refused growth (tests memoryLimit at run time).
(module
  (memory 1)
  (global $pages (mut i32) (i32.const 1))
  (func (export "wasmbed_tick")
    (block $done
      (loop $grow
        (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (global.set $pages (i32.add (global.get $pages) (i32.const 1)))
        (br $grow)))))
