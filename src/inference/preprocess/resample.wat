;; The inner loop of resample.ts (OpenCV's INTER_LINEAR into a planar float tensor) in WebAssembly with
;; 128-bit SIMD: one output pixel per iteration, its R, G, B (and one spare lane) in one f32x4.
;; About twice the speed of the same arithmetic in JavaScript, with identical results (same float
;; operations in the same order). Assembled to src/inference/preprocess/resample-wasm.ts at build time
;; (scripts/gen-wasm.mjs); resample.ts lays the pixels, the tables and the tensor out in this memory.
(module
  (memory (export "memory") 1)

  ;; One output row of `n` pixels. For output column x, with o = 4x:
  ;;   a = r0 + i32[c0 + o]      byte offset of the left tap in the upper source row
  ;;   b = a + i32[dc + o]       the right tap (same row)
  ;;   a + dr, b + dr            the taps in the lower source row
  ;;   w = f32[wx + o]           weight of the right tap; wy the weight of the lower row
  ;; Each tap reads 4 bytes (R, G, B and the next byte: the pixel buffer has one spare byte at its
  ;; end), widened to f32x4. v = lerp(lerp(a, b, w), lerp(c, d, w), wy) * mul + add, per channel;
  ;; R, G, B go to outR + o, outG + o, outB + o.
  (func (export "row")
    (param $n i32) (param $c0 i32) (param $dc i32) (param $wx i32)
    (param $r0 i32) (param $dr i32) (param $wy f32)
    (param $outR i32) (param $outG i32) (param $outB i32)
    (param $mR f32) (param $mG f32) (param $mB f32) (param $aR f32) (param $aG f32) (param $aB f32)
    (local $o i32) (local $end i32) (local $a i32) (local $b i32)
    (local $pa v128) (local $pb v128) (local $pc v128) (local $pd v128) (local $w v128)
    (local $wyv v128) (local $mul v128) (local $add v128) (local $t0 v128) (local $t1 v128) (local $v v128)
    (local.set $wyv (f32x4.splat (local.get $wy)))
    (local.set $mul
      (f32x4.replace_lane 2 (f32x4.replace_lane 1 (f32x4.splat (local.get $mR)) (local.get $mG)) (local.get $mB)))
    (local.set $add
      (f32x4.replace_lane 2 (f32x4.replace_lane 1 (f32x4.splat (local.get $aR)) (local.get $aG)) (local.get $aB)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $a (i32.add (local.get $r0) (i32.load (i32.add (local.get $c0) (local.get $o)))))
        (local.set $b (i32.add (local.get $a) (i32.load (i32.add (local.get $dc) (local.get $o)))))
        (local.set $pa (f32x4.convert_i32x4_u (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u
          (v128.load32_zero (local.get $a))))))
        (local.set $pb (f32x4.convert_i32x4_u (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u
          (v128.load32_zero (local.get $b))))))
        (local.set $pc (f32x4.convert_i32x4_u (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u
          (v128.load32_zero (i32.add (local.get $a) (local.get $dr)))))))
        (local.set $pd (f32x4.convert_i32x4_u (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u
          (v128.load32_zero (i32.add (local.get $b) (local.get $dr)))))))
        (local.set $w (v128.load32_splat (i32.add (local.get $wx) (local.get $o))))
        (local.set $t0 (f32x4.add (local.get $pa) (f32x4.mul (f32x4.sub (local.get $pb) (local.get $pa)) (local.get $w))))
        (local.set $t1 (f32x4.add (local.get $pc) (f32x4.mul (f32x4.sub (local.get $pd) (local.get $pc)) (local.get $w))))
        (local.set $v (f32x4.add (local.get $t0) (f32x4.mul (f32x4.sub (local.get $t1) (local.get $t0)) (local.get $wyv))))
        (local.set $v (f32x4.add (f32x4.mul (local.get $v) (local.get $mul)) (local.get $add)))
        (f32.store (i32.add (local.get $outR) (local.get $o)) (f32x4.extract_lane 0 (local.get $v)))
        (f32.store (i32.add (local.get $outG) (local.get $o)) (f32x4.extract_lane 1 (local.get $v)))
        (f32.store (i32.add (local.get $outB) (local.get $o)) (f32x4.extract_lane 2 (local.get $v)))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $next))))
)
