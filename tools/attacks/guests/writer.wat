;; A guest that writes BYTES bytes of 'x', CHUNK bytes per fd_write call, to its
;; stdout or to the file /f of its first preopened directory (descriptor 3), and
;; exits 0, or with the WASI errno of the first write that failed.
;;
;;   argv: module.wasm (stdout|file) BYTES CHUNK      (CHUNK at most 4 MiB)
;;
;; Each call is retried on a short write for the rest of its buffer, as wasi-libc's
;; fwrite does, so a host that takes part of a large write loses nothing. Rows 3, 4
;; and 5 of tools/attacks/round2.py (a large file in a writable mount) and its row
;; `write` (one fd_write of 4 MiB, to stdout and to a file) run it.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; 0..64 KiB: scratch (iovec at 0, nwritten at 8, opened fd at 12, argc at 16,
  ;; argv size at 20, argv pointers at 64, argv bytes at 1024, the name "f" at 512);
  ;; 64 KiB..: the buffer, 4 MiB at most.
  (memory (export "memory") 66)
  (data (i32.const 512) "f")

  ;; argv[i] as a decimal number (no sign, stops at the first non-digit).
  (func $arg_number (param $i i32) (result i32)
    (local $p i32) (local $n i32) (local $c i32)
    (local.set $p (i32.load (i32.add (i32.const 64) (i32.mul (local.get $i) (i32.const 4)))))
    (block $done
      (loop $digits
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.lt_u (local.get $c) (i32.const 48)))
        (br_if $done (i32.gt_u (local.get $c) (i32.const 57)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10))
                               (i32.sub (local.get $c) (i32.const 48))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $digits)))
    (local.get $n))

  ;; Writes $len bytes of the buffer to $fd in one call, then the rest of a short
  ;; write; returns 0 or the errno.
  (func $write_all (param $fd i32) (param $len i32) (result i32)
    (local $off i32) (local $errno i32)
    (block $done
      (loop $more
        (br_if $done (i32.ge_u (local.get $off) (local.get $len)))
        (i32.store (i32.const 0) (i32.add (i32.const 65536) (local.get $off)))
        (i32.store (i32.const 4) (i32.sub (local.get $len) (local.get $off)))
        (local.set $errno (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
        (if (local.get $errno) (then (return (local.get $errno))))
        ;; A write that takes nothing would loop for ever: call it an I/O error.
        (if (i32.eqz (i32.load (i32.const 8))) (then (return (i32.const 29))))
        (local.set $off (i32.add (local.get $off) (i32.load (i32.const 8))))
        (br $more)))
    (i32.const 0))

  (func (export "_start")
    (local $fd i32) (local $total i32) (local $chunk i32) (local $left i32)
    (local $n i32) (local $errno i32)
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (if (i32.lt_u (i32.load (i32.const 16)) (i32.const 4)) (then (call $proc_exit (i32.const 100))))
    (drop (call $args_get (i32.const 64) (i32.const 1024)))
    (local.set $total (call $arg_number (i32.const 2)))
    (local.set $chunk (call $arg_number (i32.const 3)))
    (if (i32.or (i32.eqz (local.get $chunk)) (i32.gt_u (local.get $chunk) (i32.const 4194304)))
      (then (call $proc_exit (i32.const 101))))
    (memory.fill (i32.const 65536) (i32.const 120) (local.get $chunk))
    ;; argv[1] starting with 'f' means the file, anything else stdout.
    (local.set $fd (i32.const 1))
    (if (i32.eq (i32.load8_u (i32.load (i32.const 68))) (i32.const 102))
      (then
        ;; path_open(3, no follow, "f", O_CREAT|O_TRUNC, every right, every right, 0)
        (local.set $errno (call $path_open (i32.const 3) (i32.const 0) (i32.const 512) (i32.const 1)
          (i32.const 9) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 12)))
        (if (local.get $errno) (then (call $proc_exit (local.get $errno))))
        (local.set $fd (i32.load (i32.const 12)))))
    (local.set $left (local.get $total))
    (block $done
      (loop $chunks
        (br_if $done (i32.eqz (local.get $left)))
        (local.set $n (select (local.get $chunk) (local.get $left)
                              (i32.lt_u (local.get $chunk) (local.get $left))))
        (local.set $errno (call $write_all (local.get $fd) (local.get $n)))
        (if (local.get $errno) (then (call $proc_exit (local.get $errno))))
        (local.set $left (i32.sub (local.get $left) (local.get $n)))
        (br $chunks)))
    (call $proc_exit (i32.const 0))))
