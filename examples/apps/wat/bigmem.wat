;; bigmem: declares a 64-page (4 MiB) minimum memory (refused at install
;; under a smaller memoryLimit).
(module
  (memory 64)
  (func (export "wasmbed_tick")))
