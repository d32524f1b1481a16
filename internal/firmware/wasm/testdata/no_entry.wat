(module
  (func (export "main")))
