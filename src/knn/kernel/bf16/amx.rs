//! The products on Intel AMX tiles.
//!
//! AMX needs Linux's permission (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), asked once
//! per process. Rust has no stable AMX intrinsics, so the few instructions are
//! written as `asm!`.

use std::arch::asm;
use std::arch::x86_64::__cpuid_count;

use super::{EDGE, K_TILE};

/// CPUID leaf 7's AMX-BF16 and AMX-TILE bits, then the kernel's permission
/// to use the tile data (refused where the OS does not manage it).
pub(super) fn enable() -> bool {
    // CPUID leaf 7 exists on every x86-64 CPU that has AMX; on older ones it
    // reads as zeros.
    let edx = __cpuid_count(7, 0).edx;
    const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    if edx & (AMX_BF16 | AMX_TILE) != AMX_BF16 | AMX_TILE {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// The tile shapes: palette 1, eight tiles of 16 rows x 64 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

/// `c[b][j] = init[j] + sum_t a[b][t] * train_j[t]` for `b < 32`,
/// `j < cols` (a multiple of 32), in 2 x 2 blocks of 16 x 16 tiles:
/// tmm0-3 accumulate, tmm4-5 hold queries, tmm6-7 training rows.
///
/// # Safety
/// AMX must be enabled ([`enable`]); `a` must hold 32 rows of `kp` bf16,
/// `train` `cols / 16` tiles of `kp x 16` bf16, `init` `cols` f32, `c` 32
/// rows of `stride >= cols` f32.
pub(super) unsafe fn strip(
    a: *const u16,
    kp: usize,
    train: *const u16,
    init: *const f32,
    cols: usize,
    c: *mut f32,
    stride: usize,
) {
    let mut config = Config([0; 64]);
    config.0[0] = 1;
    for t in 0..8 {
        config.0[16 + 2 * t] = 64;
        config.0[48 + t] = EDGE as u8;
    }
    let a_row = kp * 2;
    let tile_bytes = EDGE * a_row;
    let c_row = stride * 4;
    // SAFETY: the caller's promises; every tile load and store below stays
    // within the buffers they describe, and the tiles are released at the end.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack));
        let (a0, a1) = (a.cast::<u8>(), a.cast::<u8>().add(EDGE * a_row));
        for j in (0..cols).step_by(2 * EDGE) {
            asm!(
                "tileloadd tmm0, [{init} + {zero}*1]",
                "tileloadd tmm1, [{init} + {zero}*1 + 64]",
                "tileloadd tmm2, [{init} + {zero}*1]",
                "tileloadd tmm3, [{init} + {zero}*1 + 64]",
                init = in(reg) init.add(j),
                zero = in(reg) 0usize,
                options(nostack),
            );
            let b0 = train.cast::<u8>().add(j / EDGE * tile_bytes);
            for k in (0..a_row).step_by(2 * K_TILE) {
                asm!(
                    "tileloadd tmm4, [{a0} + {a_row}*1]",
                    "tileloadd tmm5, [{a1} + {a_row}*1]",
                    "tileloadd tmm6, [{b0} + {b_row}*1]",
                    "tileloadd tmm7, [{b1} + {b_row}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0.add(k),
                    a1 = in(reg) a1.add(k),
                    b0 = in(reg) b0.add(k * EDGE),
                    b1 = in(reg) b0.add(tile_bytes + k * EDGE),
                    a_row = in(reg) a_row,
                    b_row = in(reg) 64usize,
                    options(nostack),
                );
            }
            let c0 = c.add(j).cast::<u8>();
            asm!(
                "tilestored [{c0} + {c_row}*1], tmm0",
                "tilestored [{c0} + {c_row}*1 + 64], tmm1",
                "tilestored [{c1} + {c_row}*1], tmm2",
                "tilestored [{c1} + {c_row}*1 + 64], tmm3",
                c0 = in(reg) c0,
                c1 = in(reg) c0.add(EDGE * c_row),
                c_row = in(reg) c_row,
                options(nostack),
            );
        }
        asm!("tilerelease", options(nostack));
    }
}
