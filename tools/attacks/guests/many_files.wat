;; A guest that makes COUNT empty files whose paths are 4,095 bytes long in its
;; first preopened directory (descriptor 3): 15 nested directories of 255-byte
;; names, then files of 255-byte names (the longest a path and a segment may be,
;; PROTOCOL.md "The guest's files"). It writes no byte, so `files_bytes` 0 allows
;; it; only `max_mount_entries` stops it. Exits 0, or with the WASI errno of the
;; first call that failed.
;;
;;   argv: module.wasm COUNT          (at most 999,999)
;;
;; Row 2 of tools/attacks/round2.py runs it.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; 0..64 KiB: scratch (opened fd at 12, argc at 16, argv size at 20, argv
  ;; pointers at 64, argv bytes at 1024); the path at 64 KiB.
  (memory (export "memory") 2)

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

  (func (export "_start")
    (local $count i32) (local $k i32) (local $i i32) (local $v i32) (local $d i32)
    (local $errno i32)
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (if (i32.lt_u (i32.load (i32.const 16)) (i32.const 2)) (then (call $proc_exit (i32.const 100))))
    (drop (call $args_get (i32.const 64) (i32.const 1024)))
    (local.set $count (call $arg_number (i32.const 1)))
    ;; 15 x (255 'd' + '/') then 255 'f': 4,095 bytes.
    (memory.fill (i32.const 65536) (i32.const 100) (i32.const 3840))
    (local.set $k (i32.const 1))
    (loop $slashes
      (i32.store8 (i32.add (i32.const 65535) (i32.mul (local.get $k) (i32.const 256))) (i32.const 47))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $slashes (i32.le_u (local.get $k) (i32.const 15))))
    (memory.fill (i32.const 69376) (i32.const 102) (i32.const 255))
    ;; The directories, each a prefix of the path.
    (local.set $k (i32.const 1))
    (loop $dirs
      (local.set $errno (call $mkdir (i32.const 3) (i32.const 65536)
        (i32.sub (i32.mul (local.get $k) (i32.const 256)) (i32.const 1))))
      (if (local.get $errno) (then (call $proc_exit (local.get $errno))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $dirs (i32.le_u (local.get $k) (i32.const 15))))
    ;; The files: the last 6 bytes of the name are the file's number.
    (block $done
      (loop $files
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $v (local.get $i))
        (local.set $d (i32.const 6))
        (loop $digits
          (local.set $d (i32.sub (local.get $d) (i32.const 1)))
          (i32.store8 (i32.add (i32.const 69625) (local.get $d))
            (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
          (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
          (br_if $digits (local.get $d)))
        ;; path_open(3, no follow, path, O_CREAT|O_EXCL, every right, every right, 0)
        (local.set $errno (call $path_open (i32.const 3) (i32.const 0) (i32.const 65536) (i32.const 4095)
          (i32.const 5) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 12)))
        (if (local.get $errno) (then (call $proc_exit (local.get $errno))))
        (drop (call $fd_close (i32.load (i32.const 12))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $files)))
    (call $proc_exit (i32.const 0))))
