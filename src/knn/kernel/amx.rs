//! Brute force's prefilter products in bf16 on Intel AMX tiles.
//!
//! At d = 32 the f32 GEMM was 58% of brute force's time, running its FMAs at
//! the core's peak (perf), so only cheaper products could make it faster.
//! An AMX tile product takes 16 x 32 bf16 by 32 x 16 bf16 into 16 x 16 f32 in
//! one instruction, 2.5-3x the f32 GEMM's rate per core on products of 32
//! terms (measured: 280-360 GFLOP/s of d = 32 work against matrixmultiply's
//! AVX-512 ~120), bound by storing the f32 results, not by the products.
//!
//! The products only decide which training rows to skip, so exactness needs
//! nothing but a wider error margin ([`SLACK`]); every survivor is still
//! measured by the reference distance.
//!
//! AMX needs Linux's permission (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), asked once
//! per process; where the CPU lacks AMX, the kernel refuses, or
//! `SPARKBOOK_AMX=0` is set, brute force keeps its f32 GEMM. Rust has no
//! stable AMX intrinsics, so the few instructions are written as `asm!`.

/// Added to the f32 prefilter's slack (see `brute::prefilter`) when its
/// products come from bf16 inputs. Rounding an f32 input to bf16 moves it by
/// at most `u = 2^-8` of itself, so each product `x_t y_t` moves by at most
/// `(2u + u^2) |x_t y_t|`, and `2 |x . y|` by at most `(2u + u^2) N` with
/// `N = |x|^2 + |y|^2`. The bf16 products are exact in f32, and the tile sums
/// them in f32 with at most one rounding per term, which the f32 slack
/// already covers; flushing subnormals to zero adds at most `2^-126` per term,
/// which its `TINY` per term covers. `1.5 x (2u + u^2)` keeps the f32 slack's
/// reserve.
pub(crate) const SLACK: f64 = 1.5 * (1.0 / 128.0 + 1.0 / 65536.0);

/// Rows narrower than this keep the f32 GEMM: a tile product takes 32 values
/// whatever the width, and storing its results costs the same, while the
/// GEMM's work shrinks with the rows. One thread, 1M x 20k: d = 32 18.5 ->
/// 11.0 s on tiles, d = 8 7.0 -> 8.1 s.
pub(crate) const MIN_DIM: usize = 17;

/// Values per tile row: 32 bf16 = 64 bytes, also the width of one f32 tile
/// row (16 values).
const K_TILE: usize = 32;
/// Rows of a tile, and f32 columns of a result tile.
const EDGE: usize = 16;
/// Queries per strip of products (two tiles tall): the strip's products
/// (32 x 256 f32, 32 KiB) stay in L1 until they are scanned.
pub(crate) const STRIP: usize = 2 * EDGE;

/// Whether products can run on AMX tiles here: asked once per process.
pub(crate) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| std::env::var("SPARKBOOK_AMX").as_deref() != Ok("0") && imp::enable())
}

/// Training rows in bf16, laid out as a tile's right operand, each with the
/// value its products start from.
#[derive(Clone, Debug)]
pub(crate) struct Rows {
    /// Values per row, `dim` padded to whole tiles.
    kp: usize,
    /// The rows in the tiles' pair layout (see [`Rows::pack`]).
    train: Vec<u16>,
    init: Vec<f32>,
}

impl Rows {
    /// Room for `rows` rows of `dim` values.
    pub(crate) fn new(dim: usize, rows: usize) -> Rows {
        let kp = dim.div_ceil(K_TILE) * K_TILE;
        let cols = rows.div_ceil(STRIP) * STRIP;
        Rows {
            kp,
            train: vec![0; cols * kp],
            init: vec![0.0; cols],
        }
    }

    /// Row `j`, `x`, as the f32 prefilter takes it (`fl(x - mu)`, rounded
    /// to f32), then to bf16, and its products' start `shrink * fl|x - mu|^2`,
    /// rounded to f32: the quantities `brute::prefilter`'s bound is stated
    /// for. A tile's right operand holds, for 16 training rows, each pair of
    /// consecutive values side by side: row `r` of the tile is values
    /// `2r, 2r + 1` of rows `0..16`.
    pub(crate) fn pack(&mut self, j: usize, x: &[f64], mu: &[f64], shrink: f64) {
        let (tile, col) = (j / EDGE, j % EDGE);
        let base = tile * EDGE * self.kp + 2 * col;
        let mut sq = 0.0;
        for (t, (&v, &c)) in x.iter().zip(mu).enumerate() {
            let s = v - c;
            sq += s * s;
            let (k, pair) = (t / K_TILE, t % K_TILE);
            self.train[base + (k * EDGE + pair / 2) * 2 * EDGE + pair % 2] = bf16(s as f32);
        }
        self.init[j] = (shrink * sq) as f32;
    }

    /// Rows room was made for, to a whole strip.
    fn cols(&self) -> usize {
        self.init.len()
    }
}

/// bf16 copies of a query group, and one strip's products with [`Rows`].
pub(crate) struct Tiles {
    kp: usize,
    /// Queries, row-major, `kp` bf16 per row, rows padded to a whole strip.
    queries: Vec<u16>,
    /// One strip's products, [`STRIP`] rows of up to `cols` f32.
    prod: Vec<f32>,
    cols: usize,
}

impl Tiles {
    /// Room for `queries` queries of `dim` values, and products with up to
    /// `train` rows at a time.
    pub(crate) fn new(dim: usize, queries: usize, train: usize) -> Tiles {
        let kp = dim.div_ceil(K_TILE) * K_TILE;
        let cols = train.div_ceil(STRIP) * STRIP;
        Tiles {
            kp,
            queries: vec![0; queries.div_ceil(STRIP) * STRIP * kp],
            prod: vec![0.0; STRIP * (cols + EDGE)],
            cols,
        }
    }

    /// Query `i`'s values, `value(t)` for `t < dim`, as bf16.
    pub(crate) fn pack_query(&mut self, i: usize, dim: usize, value: impl Fn(usize) -> f32) {
        let row = &mut self.queries[i * self.kp..(i + 1) * self.kp];
        for (t, v) in row[..dim].iter_mut().enumerate() {
            *v = bf16(value(t));
        }
    }

    /// The products of queries `i0..i0 + STRIP` with rows `j0..j0 + n` of
    /// `rows` (`j0` on a whole strip): row `b` of the result holds query
    /// `i0 + b`'s, `n` values (then padding) per row of the stride returned,
    /// `n` to a whole strip.
    pub(crate) fn products(
        &mut self,
        rows: &Rows,
        i0: usize,
        (j0, n): (usize, usize),
    ) -> (&[f32], usize) {
        assert!(i0 % STRIP == 0 && (i0 + STRIP) * self.kp <= self.queries.len());
        assert_eq!(rows.kp, self.kp, "Tiles::products: rows of another width");
        let cols = n.div_ceil(STRIP) * STRIP;
        assert!(j0 % STRIP == 0 && cols <= self.cols && j0 + cols <= rows.cols());
        // One tile row (64 bytes) more than the products: at a pitch of 4
        // KiB, a tile's 16 rows all fell into one L1 set.
        let pitch = cols + EDGE;
        // SAFETY: `available()` returned true before any `Tiles` was filled
        // (brute force checks it), and the reads and writes stay inside the
        // buffers: STRIP query rows from `i0`, `cols` training rows from `j0`
        // (whole tiles of `EDGE` rows), a `STRIP x cols` result with stride
        // `pitch`.
        unsafe {
            imp::strip(
                self.queries[i0 * self.kp..].as_ptr(),
                self.kp,
                rows.train[j0 * self.kp..].as_ptr(),
                rows.init[j0..].as_ptr(),
                cols,
                self.prod.as_mut_ptr(),
                pitch,
            );
        }
        (&self.prod[..STRIP * pitch], pitch)
    }
}

/// Round to nearest even; f32 subnormals become zero, as the tiles would
/// read them (the margin's `TINY` per term covers it).
fn bf16(x: f32) -> u16 {
    let x = if x.is_subnormal() { 0.0 * x } else { x };
    let b = x.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
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
}

/// No AMX off x86-64 Linux.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    pub(super) fn enable() -> bool {
        false
    }

    /// # Safety
    /// Never called: [`enable`] is false.
    pub(super) unsafe fn strip(
        _: *const u16,
        _: usize,
        _: *const u16,
        _: *const f32,
        _: usize,
        _: *mut f32,
        _: usize,
    ) {
        unreachable!("AMX is never enabled on this target")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each product is the exact sum of the bf16 values' products plus its
    /// start, up to f32 rounding of the sum, for row counts around the tiles
    /// and dimensions across two tiles.
    #[test]
    fn products_are_the_bf16_dot_products() {
        if !available() {
            return;
        }
        let mut rng = super::super::tests::Rng(5);
        for (dim, m, n) in [(32, 32, 256), (3, 40, 17), (45, 64, 96), (64, 33, 32)] {
            let q: Vec<f32> = (0..m * dim).map(|_| rng.unit() as f32 - 0.5).collect();
            let t: Vec<f32> = (0..n * dim)
                .map(|_| rng.unit() as f32 * 4.0 - 2.0)
                .collect();
            let mut tiles = Tiles::new(dim, m, n);
            let mut rows = Rows::new(dim, n);
            for i in 0..m {
                tiles.pack_query(i, dim, |x| q[i * dim + x]);
            }
            // Training values f32 holds exactly, shifted by a zero mean.
            let zero = vec![0.0; dim];
            let mut start = Vec::new();
            for j in 0..n {
                let row: Vec<f64> = t[j * dim..(j + 1) * dim]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                let shrink = 0.5 + j as f64 * 0.01;
                let sq = row.iter().fold(0.0, |a, v| a + v * v);
                start.push(f64::from((shrink * sq) as f32));
                rows.pack(j, &row, &zero, shrink);
            }
            let wide = |v: f32| f64::from(f32::from_bits(u32::from(bf16(v)) << 16));
            for i0 in (0..m).step_by(STRIP) {
                let (prod, stride) = tiles.products(&rows, i0, (0, n));
                for b in 0..STRIP.min(m - i0) {
                    for j in 0..n {
                        let (i, mut sum, mut size) = (i0 + b, start[j], start[j]);
                        for x in 0..dim {
                            let p = wide(q[i * dim + x]) * wide(t[j * dim + x]);
                            sum += p;
                            size += p.abs();
                        }
                        let got = f64::from(prod[b * stride + j]);
                        let bound = (dim + 1) as f64 * f64::from(f32::EPSILON) * size;
                        assert!(
                            (got - sum).abs() <= bound,
                            "d {dim} ({i}, {j}): {got} vs {sum}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        let back = |v: f32| f32::from_bits(u32::from(bf16(v)) << 16);
        assert_eq!(back(1.0), 1.0);
        assert_eq!(back(1.0 + 1.0 / 256.0), 1.0, "a tie goes to the even value");
        assert_eq!(back(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(back(-1.0 - 1.0 / 200.0), -1.0 - 1.0 / 128.0);
        assert_eq!(back(f32::from_bits(1)), 0.0);
        for v in [0.1f32, 3.7, -250.3, 1e-30, 6e37] {
            assert!((back(v) - v).abs() <= v.abs() / 256.0, "{v}");
        }
    }
}
