;; A component whose exports take and return scalars, a string, a list and a
;; record, lifted with the canonical ABI from one core module with a bump allocator.
;;   add: func(a: u32, b: u32) -> u32
;;   greet: func(name: string) -> string        ("Hello, " + name + "!")
;;   sum: func(values: list<u32>) -> u32
;;   swap: func(p: point) -> point              (record point { x: s32, y: s32 })
(component
  (core module $m
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    (data (i32.const 16) "Hello, ")

    ;; cabi_realloc(old_ptr, old_size, align, new_size) -> ptr: bump allocation.
    (func $realloc (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $ptr i32)
      (local.set $ptr
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
          (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
      (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
      (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (drop (memory.grow
            (i32.add
              (i32.div_u
                (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
                (i32.const 65536))
              (i32.const 1))))))
      (local.get $ptr))

    (func (export "add") (param i32 i32) (result i32)
      (i32.add (local.get 0) (local.get 1)))

    ;; (name_ptr, name_len) -> pointer to (ptr, len) of the greeting
    (func (export "greet") (param $p i32) (param $n i32) (result i32)
      (local $out i32) (local $ret i32)
      (local.set $out
        (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
          (i32.add (local.get $n) (i32.const 8))))
      (memory.copy (local.get $out) (i32.const 16) (i32.const 7))
      (memory.copy (i32.add (local.get $out) (i32.const 7)) (local.get $p) (local.get $n))
      (i32.store8 (i32.add (local.get $out) (i32.add (local.get $n) (i32.const 7)))
        (i32.const 33))
      (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 8)))
      (i32.store (local.get $ret) (local.get $out))
      (i32.store offset=4 (local.get $ret) (i32.add (local.get $n) (i32.const 8)))
      (local.get $ret))

    ;; (values_ptr, count) -> the sum of the u32s
    (func (export "sum") (param $p i32) (param $n i32) (result i32)
      (local $acc i32) (local $i i32)
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $acc
            (i32.add (local.get $acc)
              (i32.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (local.get $acc))

    ;; (x, y) -> pointer to (y, x)
    (func (export "swap") (param i32 i32) (result i32)
      (local $ret i32)
      (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 8)))
      (i32.store (local.get $ret) (local.get 1))
      (i32.store offset=4 (local.get $ret) (local.get 0))
      (local.get $ret)))
  (core instance $i (instantiate $m))

  (type $point' (record (field "x" s32) (field "y" s32)))
  (export $point "point" (type $point'))

  (func (export "add") (param "a" u32) (param "b" u32) (result u32)
    (canon lift (core func $i "add")))
  (func (export "greet") (param "name" string) (result string)
    (canon lift (core func $i "greet") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (func (export "sum") (param "values" (list u32)) (result u32)
    (canon lift (core func $i "sum") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (func (export "swap") (param "p" $point) (result $point)
    (canon lift (core func $i "swap") (memory (core memory $i "memory")))))
