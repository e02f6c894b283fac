//! The products with AVX-512 BF16, where the CPU has no AMX (AMD Zen 4 and
//! later, Intel Cooper Lake).

use std::arch::x86_64::*;

use super::{EDGE, STRIP};

/// Queries whose products one pass over a training pair of tiles
/// keeps in registers: 8 x 2 accumulators, 2 training vectors.
const ROWS: usize = 8;

/// Whether the CPU has the instructions [`strip`] needs.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bf16")
}

/// The products AMX's `strip` takes, from the same layouts: a training
/// tile's row `p` (64 bytes) holds values `2p, 2p + 1` of its 16 rows,
/// which is `vdpbf16ps`'s pairing, and each query's pair is broadcast.
/// `vdpbf16ps` rounds once per term, flushes subnormals and rounds to
/// nearest, as the tiles do, so [`super::SLACK`] holds for it too.
///
/// # Safety
/// AVX-512F and AVX-512 BF16 must be present ([`available`]); `kp`
/// even; `a` must hold 32 rows of `kp` bf16, `train` `cols / 16` tiles
/// of `kp x 16` bf16, `init` `cols` f32, `c` 32 rows of `stride >= cols`
/// f32.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn strip(
    a: *const u16,
    kp: usize,
    train: *const u16,
    init: *const f32,
    cols: usize,
    c: *mut f32,
    stride: usize,
) {
    // SAFETY: the caller's promises; every read below stays within the
    // first 32 rows of `a` and the `cols` columns of `train` and
    // `init`, every write within `c`'s 32 rows of `cols`.
    unsafe {
        for j in (0..cols).step_by(2 * EDGE) {
            let t0 = train.add(j * kp);
            let t1 = t0.add(EDGE * kp);
            let start = [
                _mm512_loadu_ps(init.add(j)),
                _mm512_loadu_ps(init.add(j + EDGE)),
            ];
            for r0 in (0..STRIP).step_by(ROWS) {
                let mut acc = [start; ROWS];
                for p in 0..kp / 2 {
                    let x0: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(t0.add(p * 2 * EDGE).cast()));
                    let x1: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(t1.add(p * 2 * EDGE).cast()));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let pair = a.add((r0 + r) * kp + 2 * p).cast::<i32>().read_unaligned();
                        let q: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                        acc[0] = _mm512_dpbf16_ps(acc[0], q, x0);
                        acc[1] = _mm512_dpbf16_ps(acc[1], q, x1);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    let row = c.add((r0 + r) * stride + j);
                    _mm512_storeu_ps(row, acc[0]);
                    _mm512_storeu_ps(row.add(EDGE), acc[1]);
                }
            }
        }
    }
}
