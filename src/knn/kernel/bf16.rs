//! Brute force's prefilter products in bf16: on Intel AMX tiles, or with
//! AVX-512 BF16 where the CPU has no AMX.
//!
//! At d = 32 the f32 GEMM was 58% of brute force's time, running its FMAs at
//! the core's peak (perf), so only cheaper products could make it faster.
//! An AMX tile product takes 16 x 32 bf16 by 32 x 16 bf16 into 16 x 16 f32 in
//! one instruction, 2.5-3x the f32 GEMM's rate per core on products of 32
//! terms (measured: 280-360 GFLOP/s of d = 32 work against matrixmultiply's
//! AVX-512 ~120), bound by storing the f32 results, not by the products.
//! AVX-512 BF16's `vdpbf16ps` multiplies 16 pairs of bf16 and adds them to 16
//! f32 sums, twice the rate of the f32 FMAs on the same vectors (Zen 4: 57.7
//! against 26.7 G multiply-adds a second per core).
//!
//! The products only decide which training rows to skip, so exactness needs
//! nothing but a wider error margin ([`SLACK`]); every survivor is still
//! measured by the reference distance. Both units read the same layouts
//! ([`Rows`], [`Tiles`]) and round alike.
//!
//! Brute force keeps its f32 GEMM where neither unit is there (no AMX, or
//! Linux refuses it, and no AVX-512 BF16) or `SPARKBOOK_BF16=0` is set;
//! `SPARKBOOK_AMX=0` turns off AMX alone.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;

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
/// 11.0 s on tiles, d = 8 7.0 -> 8.1 s. AVX-512 BF16's work does shrink with
/// the rows, but at d = 8 it gained nothing either (`Brute`, 2 threads on
/// Zen 4: 3.47 s against 3.48, within the noise), so one threshold serves both.
pub(crate) const MIN_DIM: usize = 17;

/// Values per tile row: 32 bf16 = 64 bytes, also the width of one f32 tile
/// row (16 values).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const K_TILE: usize = 32;
/// Rows of a tile, and f32 columns of a result tile.
const EDGE: usize = 16;
/// Queries per strip of products (two tiles tall): the strip's products
/// (32 x 256 f32, 32 KiB) stay in L1 until they are scanned.
pub(crate) const STRIP: usize = 2 * EDGE;

/// What takes the bf16 products.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Unit {
    /// AMX tiles, 16 x 32 by 32 x 16 in one instruction.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    Amx,
    /// AVX-512 BF16's `vdpbf16ps`: 16 pairs a vector, twice the rate of
    /// the f32 FMAs on the same vectors (Zen 4, measured 57.7 against 26.7
    /// G multiply-adds a second per core).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The unit, asked once per process: AMX where the CPU has it and the
/// kernel allows it, else AVX-512 BF16.
fn unit() -> Option<Unit> {
    static UNIT: std::sync::OnceLock<Option<Unit>> = std::sync::OnceLock::new();
    *UNIT.get_or_init(|| {
        let off = |var| std::env::var(var).as_deref() == Ok("0");
        if off("SPARKBOOK_BF16") {
            return None;
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if !off("SPARKBOOK_AMX") && amx::enable() {
            return Some(Unit::Amx);
        }
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            return Some(Unit::Avx512);
        }
        None
    })
}

/// Whether products can run in bf16 here.
pub(crate) fn available() -> bool {
    unit().is_some()
}

/// Values per packed row for rows of `dim`: whole tiles for AMX, whole
/// pairs for AVX-512 (whose work grows with the pairs, not the tiles).
fn padded(dim: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if unit() == Some(Unit::Amx) {
        return dim.div_ceil(K_TILE) * K_TILE;
    }
    dim.div_ceil(2) * 2
}

/// Training rows in bf16, laid out as a tile's right operand, each with the
/// value its products start from.
#[derive(Clone, Debug)]
pub(crate) struct Rows {
    /// Values per row, `dim` [`padded`] for the unit.
    kp: usize,
    /// The rows in the tiles' pair layout (see [`Rows::pack`]).
    train: Vec<u16>,
    init: Vec<f32>,
}

impl Rows {
    /// Room for `rows` rows of `dim` values.
    pub(crate) fn new(dim: usize, rows: usize) -> Rows {
        let kp = padded(dim);
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
            self.train[base + t / 2 * 2 * EDGE + t % 2] = bf16(s as f32);
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
        let kp = padded(dim);
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
        assert!(i0.is_multiple_of(STRIP) && (i0 + STRIP) * self.kp <= self.queries.len());
        assert_eq!(rows.kp, self.kp, "Tiles::products: rows of another width");
        let cols = n.div_ceil(STRIP) * STRIP;
        assert!(j0.is_multiple_of(STRIP) && cols <= self.cols && j0 + cols <= rows.cols());
        // One tile row (64 bytes) more than the products: at a pitch of 4
        // KiB, a tile's 16 rows all fell into one L1 set.
        let pitch = cols + EDGE;
        // SAFETY: `available()` returned true before any `Tiles` was filled
        // (brute force checks it), and the reads and writes stay inside the
        // buffers: STRIP query rows from `i0`, `cols` training rows from `j0`
        // (whole tiles of `EDGE` rows), a `STRIP x cols` result with stride
        // `pitch`.
        type Strip = unsafe fn(*const u16, usize, *const u16, *const f32, usize, *mut f32, usize);
        let strip: Strip = match unit() {
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Some(Unit::Amx) => amx::strip,
            #[cfg(target_arch = "x86_64")]
            Some(Unit::Avx512) => avx512::strip,
            None => unreachable!("Tiles are made only where `available()`"),
        };
        unsafe {
            strip(
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
