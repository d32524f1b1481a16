;; loop: an app whose tick never returns (tests executionTimeout).
(module
  (memory 1)
  (func (export "wasmbed_tick")
    (loop $forever
      (br $forever))))
