;; The smallest useful WASI command: writes "hello\n" to stdout and exits 0.
;; The load generator's default guest and the sandbox bench's "tiny WASI command".
;; Rebuild with `cargo run --example wat2wasm -- examples/tiny.wat examples/tiny.wasm`.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec {buf = 16, len = 6} at 0; the bytes at 16.
  (data (i32.const 0) "\10\00\00\00\06\00\00\00")
  (data (i32.const 16) "hello\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
