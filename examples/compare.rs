//! The Rust half of the comparison harness (`bash benches/compare.sh`).
//!
//! `prepare` writes each case's data once, as raw little-endian `f64` files, so every
//! system (sparkbook, linfa-nn, sklearn, faiss, PySpark) predicts from exactly the same
//! numbers; `run` times one Rust system on one case and prints a JSON line;
//! `growth` times sparkbook's `Auto` against the training-set size and the dimension.
//! `benches/compare.py` drives all of it and writes the table in BENCHMARKS.md.
//!
//! ```text
//! cargo run --release --example compare -- prepare --out target/bench-data [--big]
//! cargo run --release --example compare -- run --case target/bench-data/diamonds --system auto --threads 2
//! cargo run --release --example compare -- growth --threads 2
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use linfa_nn::distance::L2Dist;
use linfa_nn::{CommonNearestNeighbour, NearestNeighbour};
use ndarray::ArrayView2;
use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use sparkbook::knn::{Algorithm, KnnRegressor};
use sparkbook::prelude::*;
use sparkbook::preprocessing::StandardScaler;
use sparkbook::{Error, Result};

const K: usize = 100;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes every case's train/test matrices under `out/<case>/`.
    Prepare {
        #[arg(long)]
        out: PathBuf,
        /// Also the 1,000,000 x 200,000 case (sklearn needs ~5 minutes on it).
        #[arg(long)]
        big: bool,
    },
    /// Times one system on one prepared case; prints a JSON line.
    Run {
        #[arg(long)]
        case: PathBuf,
        #[arg(long, value_enum)]
        system: System,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Further runs are skipped once the runs so far add up to more than this.
        #[arg(long, default_value_t = 60.0)]
        long_run_s: f64,
        /// Short predicts run again, past `repeats`, until their runs add up to this
        /// (at most `MAX_RUNS`): three runs of a 0.05 s predict would give a median of
        /// three moments of a shared host's noise.
        #[arg(long, default_value_t = 0.0)]
        fill_s: f64,
        /// Leaf size of sparkbook's k-d tree (unset: the library's default).
        #[arg(long)]
        leaf_size: Option<usize>,
    },
    /// The machine's GEMM rate (matrixmultiply, 1024^3 per thread, all threads at
    /// once): the yardstick for the brute-force kernel's flops; and the peak of
    /// `vdpbf16ps`, the ceiling of its bf16 products, where the CPU has it.
    Gemm {
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// sparkbook `Auto` on uniform data: time against n_train, then against d.
    Growth {
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 5000)]
        queries: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum System {
    /// The seed workflow with `Algorithm::Auto`.
    Auto,
    KdTree,
    Brute,
    /// linfa-nn's k-d tree, queried directly, rows in parallel.
    LinfaKdtree,
    /// linfa-nn's ball tree, queried directly, rows in parallel.
    LinfaBalltree,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Auto => "sparkbook_auto",
            System::KdTree => "sparkbook_kd_tree",
            System::Brute => "sparkbook_brute",
            System::LinfaKdtree => "linfa_nn_kdtree",
            System::LinfaBalltree => "linfa_nn_balltree",
        }
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Message(format!("{}: {e}", path.display()))
}

/// One case: row-major features and targets, train and test.
struct Case {
    train_x: Vec<f64>,
    train_y: Vec<f64>,
    test_x: Vec<f64>,
    test_y: Vec<f64>,
    dim: usize,
}

impl Case {
    fn write(&self, dir: &Path, description: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        for (name, values) in [
            ("train_x", &self.train_x),
            ("train_y", &self.train_y),
            ("test_x", &self.test_x),
            ("test_y", &self.test_y),
        ] {
            write_f64(&dir.join(format!("{name}.f64")), values)?;
        }
        let meta = format!(
            "{{\"n_train\": {}, \"n_test\": {}, \"dim\": {}, \"k\": {K}, \"description\": {:?}}}\n",
            self.train_y.len(),
            self.test_y.len(),
            self.dim,
            description
        );
        let path = dir.join("meta.json");
        std::fs::write(&path, meta).map_err(|e| io(&path, e))
    }

    fn read(dir: &Path) -> Result<Case> {
        let read = |name: &str| read_f64(&dir.join(format!("{name}.f64")));
        let (train_x, train_y) = (read("train_x")?, read("train_y")?);
        let (test_x, test_y) = (read("test_x")?, read("test_y")?);
        let dim = train_x.len() / train_y.len().max(1);
        Ok(Case {
            train_x,
            train_y,
            test_x,
            test_y,
            dim,
        })
    }

    /// Feature columns `x0..`, then `price`.
    fn frame(x: &[f64], y: &[f64], dim: usize) -> Result<DataFrame> {
        let mut columns: Vec<Column> = (0..dim)
            .map(|j| {
                let values: Vec<f64> = x.iter().skip(j).step_by(dim).copied().collect();
                Column::new(format!("x{j}").into(), values)
            })
            .collect();
        columns.push(Column::new("price".into(), y.to_vec()));
        Ok(DataFrame::new_infer_height(columns)?)
    }

    fn from_frames(train: &DataFrame, test: &DataFrame, target: &str) -> Result<Case> {
        let features: Vec<String> = train
            .get_column_names()
            .iter()
            .filter(|n| n.as_str() != target)
            .map(|n| n.to_string())
            .collect();
        let matrix = |df: &DataFrame| -> Result<Vec<f64>> {
            let columns: Vec<Vec<f64>> = features
                .iter()
                .map(|f| values(df, f))
                .collect::<Result<_>>()?;
            Ok((0..df.height())
                .flat_map(|i| columns.iter().map(move |c| c[i]))
                .collect())
        };
        Ok(Case {
            train_x: matrix(train)?,
            train_y: values(train, target)?,
            test_x: matrix(test)?,
            test_y: values(test, target)?,
            dim: features.len(),
        })
    }
}

fn values(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    Ok(df
        .column(name)?
        .cast(&DataType::Float64)?
        .f64()?
        .into_no_null_iter()
        .collect())
}

fn write_f64(path: &Path, values: &[f64]) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).map_err(|e| io(path, e))
}

fn read_f64(path: &Path) -> Result<Vec<f64>> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect())
}

/// A frame of feature columns `x0..` and `price`, read straight from a case's
/// files into its columns, so that loading never holds the data twice (the
/// peak memory measured is the fit's and the job's, not the harness's).
fn frame_from_files(x: &Path, y: &Path) -> Result<DataFrame> {
    let len = |p: &Path| -> Result<usize> {
        Ok(std::fs::metadata(p).map_err(|e| io(p, e))?.len() as usize / 8)
    };
    let rows = len(y)?;
    let dim = len(x)? / rows.max(1);
    let mut columns: Vec<Vec<f64>> = (0..=dim).map(|_| Vec::with_capacity(rows)).collect();
    let (features, target) = columns.split_at_mut(dim);
    read_rows(x, rows, features)?;
    read_rows(y, rows, target)?;
    let names = (0..dim)
        .map(|j| format!("x{j}"))
        .chain(["price".to_owned()]);
    let columns: Vec<Column> = columns
        .into_iter()
        .zip(names)
        .map(|(values, name)| Column::new(name.into(), values))
        .collect();
    Ok(DataFrame::new_infer_height(columns)?)
}

/// Reads `rows` rows of `columns.len()` little-endian `f64`s, pushing each
/// value onto its column.
fn read_rows(path: &Path, rows: usize, columns: &mut [Vec<f64>]) -> Result<()> {
    let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| io(path, e))?);
    let mut row = vec![0; columns.len() * 8];
    for _ in 0..rows {
        std::io::Read::read_exact(&mut reader, &mut row).map_err(|e| io(path, e))?;
        for (column, bytes) in columns.iter_mut().zip(row.chunks_exact(8)) {
            column.push(f64::from_le_bytes(bytes.try_into().expect("8 bytes")));
        }
    }
    Ok(())
}

/// An 80/20 split (sparkbook's `train_test_split`, seed 42) standardised with the
/// training rows' mean and deviation (sparkbook's `StandardScaler`, as sklearn's).
fn split_and_scale(df: &DataFrame, target: &str) -> Result<Case> {
    let (train, test) = train_test_split(df, 0.2, 42)?;
    let scaler = StandardScaler::fit(&train, target)?;
    Case::from_frames(
        &scaler.transform(&train)?,
        &scaler.transform(&test)?,
        target,
    )
}

/// cut, color and clarity as their ggplot2 level order, so all 9 features are numeric.
fn diamonds() -> Result<Case> {
    const LEVELS: [(&str, &[&str]); 3] = [
        ("cut", &["Fair", "Good", "Very Good", "Premium", "Ideal"]),
        ("color", &["J", "I", "H", "G", "F", "E", "D"]),
        (
            "clarity",
            &["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"],
        ),
    ];
    let mut df = sparkbook::datasets::diamonds()?;
    for (name, levels) in LEVELS {
        let codes: Vec<f64> = df
            .column(name)?
            .str()?
            .iter()
            .map(|v| {
                levels
                    .iter()
                    .position(|l| Some(*l) == v)
                    .map_or(f64::NAN, |p| p as f64)
            })
            .collect();
        df.with_column(Column::new(name.into(), codes))?;
    }
    split_and_scale(&df, "price")
}

/// The seed workflow's data: every numeric column but `id`, `date` and the target.
fn king_county() -> Result<Case> {
    let houses = sparkbook::datasets::house_prices()?.drop_many(["id", "date"]);
    split_and_scale(&houses, "price")
}

/// Uniform points in the unit cube (the hard case for trees); the target is the sum
/// of the coordinates plus uniform noise.
fn uniform(n_train: usize, n_test: usize, dim: usize, seed: u64) -> Case {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut draw = |rows: usize| {
        let x: Vec<f64> = (0..rows * dim).map(|_| rng.r#gen::<f64>()).collect();
        let y: Vec<f64> = x
            .chunks_exact(dim)
            .map(|r| r.iter().sum::<f64>() + rng.gen_range(-0.1..0.1))
            .collect();
        (x, y)
    };
    let (train_x, train_y) = draw(n_train);
    let (test_x, test_y) = draw(n_test);
    Case {
        train_x,
        train_y,
        test_x,
        test_y,
        dim,
    }
}

fn prepare(out: &Path, big: bool) -> Result<()> {
    let mut cases = vec![
        (
            "diamonds",
            "diamonds: 9 features (cut, color, clarity as level order), standardised",
            diamonds()?,
        ),
        (
            "king_county",
            "King County house sales: 18 numeric features, standardised",
            king_county()?,
        ),
        (
            "uniform_1m_20k_d8",
            "uniform [0,1)^8, seed 1",
            uniform(1_000_000, 20_000, 8, 1),
        ),
        (
            "uniform_1m_20k_d32",
            "uniform [0,1)^32, seed 2",
            uniform(1_000_000, 20_000, 32, 2),
        ),
    ];
    if big {
        cases.push((
            "uniform_1m_200k_d8",
            "uniform [0,1)^8, seed 3",
            uniform(1_000_000, 200_000, 8, 3),
        ));
    }
    for (name, description, case) in cases {
        case.write(&out.join(name), description)?;
        eprintln!(
            "prepared {name}: {} train x {} test x {}",
            case.train_y.len(),
            case.test_y.len(),
            case.dim
        );
    }
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The most runs `fill_s` adds.
const MAX_RUNS: usize = 15;

/// Times `predict` `repeats` times, fewer once the runs add up to more than
/// `long_run_s`, more (up to [`MAX_RUNS`]) while they add up to less than `fill_s`.
fn repeat(
    (repeats, long_run_s, fill_s): (usize, f64, f64),
    mut predict: impl FnMut() -> Result<Vec<f64>>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut times = Vec::new();
    loop {
        let started = Instant::now();
        let pred = predict()?;
        times.push(started.elapsed().as_secs_f64());
        let total: f64 = times.iter().sum();
        let more = times.len() < repeats.max(1) || (total < fill_s && times.len() < MAX_RUNS);
        if total > long_run_s || !more {
            return Ok((times, pred));
        }
    }
}

struct RunOptions {
    threads: usize,
    repeats: usize,
    long_run_s: f64,
    fill_s: f64,
    leaf_size: Option<usize>,
}

fn run(dir: &Path, system: System, o: RunOptions) -> Result<()> {
    let RunOptions {
        threads,
        repeats,
        long_run_s,
        fill_s,
        leaf_size,
    } = o;
    let started = Instant::now();
    let sc = Session::builder()
        .threads(threads)
        .progress(false)
        .build()?;
    let startup_s = started.elapsed().as_secs_f64();
    let mut fit_peak = 0;
    let (fit_s, (times, pred)) = match system {
        System::Auto | System::KdTree | System::Brute => {
            let algorithm = match system {
                System::Auto => Algorithm::Auto,
                System::KdTree => Algorithm::KdTree,
                _ => Algorithm::Brute,
            };
            // The process holds what a notebook user's would: the frames, then
            // the model.
            let mut train = frame_from_files(&dir.join("train_x.f64"), &dir.join("train_y.f64"))?;
            let test = frame_from_files(&dir.join("test_x.f64"), &dir.join("test_y.f64"))?;
            let started = Instant::now();
            let params = KnnRegressor::params(K).algorithm(algorithm);
            let params = match leaf_size {
                Some(leaf_size) => params.leaf_size(leaf_size),
                None => params,
            };
            let model = params.fit_frame_drain(&mut train, "price")?;
            let fit_s = started.elapsed().as_secs_f64();
            // The model owns a row-major copy of the training rows (it must outlive
            // the cell that made the frame): draining the frame into it frees each
            // column once copied, so the data is held about once, not twice.
            fit_peak = peak_rss_bytes();
            reset_peak_rss();
            let partitions = (4 * threads).max(10);
            let seed_workflow = || -> Result<Vec<f64>> {
                let b_model = sc.broadcast(model.clone());
                let preds = sc
                    .parallelize(&test, partitions)?
                    .zip_with_index()?
                    .map_partitions(|part| b_model.value()?.predict_frame(&part))?
                    .collect()?;
                values(&preds, "pred")
            };
            (fit_s, repeat((repeats, long_run_s, fill_s), seed_workflow)?)
        }
        System::LinfaKdtree | System::LinfaBalltree => {
            let case = Case::read(dir)?;
            let train = ArrayView2::from_shape((case.train_y.len(), case.dim), &case.train_x)
                .map_err(|e| Error::Message(e.to_string()))?;
            let test = ArrayView2::from_shape((case.test_y.len(), case.dim), &case.test_x)
                .map_err(|e| Error::Message(e.to_string()))?;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| Error::Message(e.to_string()))?;
            let started = Instant::now();
            let algorithm = match system {
                System::LinfaKdtree => CommonNearestNeighbour::KdTree,
                _ => CommonNearestNeighbour::BallTree,
            };
            let index = algorithm
                .from_batch(&train, L2Dist)
                .map_err(|e| Error::Message(e.to_string()))?;
            let fit_s = started.elapsed().as_secs_f64();
            let predict = || -> Result<Vec<f64>> {
                pool.install(|| {
                    (0..test.nrows())
                        .into_par_iter()
                        .map(|i| {
                            let q = test.row(i);
                            let found = index
                                .k_nearest(q, K)
                                .map_err(|e| Error::Message(e.to_string()))?;
                            Ok(found.iter().map(|(_, i)| case.train_y[*i]).sum::<f64>()
                                / found.len() as f64)
                        })
                        .collect()
                })
            };
            (fit_s, repeat((repeats, long_run_s, fill_s), predict)?)
        }
    };
    let predict_peak = peak_rss_bytes();
    write_f64(
        &dir.join(format!("pred_{}_t{threads}.f64", system.name())),
        &pred,
    )?;
    let runs: Vec<String> = times.iter().map(|t| format!("{t:.4}")).collect();
    println!(
        "{{\"system\": \"{}\", \"threads\": {threads}, \"startup_s\": {startup_s:.6}, \"fit_s\": {fit_s:.4}, \"predict_s\": {:.4}, \"runs\": [{}], \"peak_rss_bytes\": {}, \"predict_peak_rss_bytes\": {predict_peak}}}",
        system.name(),
        median(times),
        runs.join(", "),
        peak_rss_bytes().max(fit_peak)
    );
    Ok(())
}

/// Restarts the kernel's count of the peak resident set, so a later
/// [`peak_rss_bytes`] covers only what follows (Linux; elsewhere a no-op).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set (VmHWM), or 0 where /proc is absent.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn gemm(threads: usize) -> Result<()> {
    const N: usize = 1024;
    fn rate<T: ndarray::LinalgScalar + Send + Sync>(threads: usize, one: T) -> f64 {
        let a = ndarray::Array2::from_elem((N, N), one);
        let started = Instant::now();
        let reps = 4;
        (0..threads).into_par_iter().for_each(|_| {
            for _ in 0..reps {
                std::hint::black_box(a.dot(&a));
            }
        });
        (2 * N * N * N * reps * threads) as f64 / started.elapsed().as_secs_f64() / 1e9
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Message(e.to_string()))?;
    let (f32_rate, f64_rate) = pool.install(|| (rate(threads, 1.0f32), rate(threads, 1.0f64)));
    let bf16_rate = bf16_peak(threads);
    let bf16_rate = bf16_rate.map_or("null".to_string(), |r| format!("{r:.1}"));
    println!(
        "{{\"threads\": {threads}, \"sgemm_gflops\": {f32_rate:.1}, \"dgemm_gflops\": {f64_rate:.1}, \"bf16_dot_gflops\": {bf16_rate}}}"
    );
    Ok(())
}

/// The most `vdpbf16ps` can do on all threads at once, in GFLOP/s (a product and
/// its sum are two flops), where the CPU has AVX-512 BF16: the ceiling of
/// sparkbook's bf16 products, which no kernel that computes every product can
/// pass. Twelve independent accumulators hide the instruction's latency; they are
/// named variables, as the compiler kept an array of them partly on the stack,
/// which measured half the rate.
fn bf16_peak(threads: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        const ITERS: usize = 100_000_000;
        #[target_feature(enable = "avx512f,avx512bf16")]
        fn spin(seed: f32) -> f32 {
            let one = _mm512_set1_ps(1.0);
            let x = _mm512_cvtne2ps_pbh(one, one);
            let s = _mm512_set1_ps(seed);
            let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) = (s, s, s, s, s, s);
            let (mut b0, mut b1, mut b2, mut b3, mut b4, mut b5) = (s, s, s, s, s, s);
            for _ in 0..ITERS {
                a0 = _mm512_dpbf16_ps(a0, x, x);
                a1 = _mm512_dpbf16_ps(a1, x, x);
                a2 = _mm512_dpbf16_ps(a2, x, x);
                a3 = _mm512_dpbf16_ps(a3, x, x);
                a4 = _mm512_dpbf16_ps(a4, x, x);
                a5 = _mm512_dpbf16_ps(a5, x, x);
                b0 = _mm512_dpbf16_ps(b0, x, x);
                b1 = _mm512_dpbf16_ps(b1, x, x);
                b2 = _mm512_dpbf16_ps(b2, x, x);
                b3 = _mm512_dpbf16_ps(b3, x, x);
                b4 = _mm512_dpbf16_ps(b4, x, x);
                b5 = _mm512_dpbf16_ps(b5, x, x);
            }
            [a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5]
                .iter()
                .map(|&a| _mm512_reduce_add_ps(a))
                .sum()
        }
        if !(std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bf16"))
        {
            return None;
        }
        let started = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..threads {
                // SAFETY: both features were detected just above.
                scope.spawn(move || std::hint::black_box(unsafe { spin(t as f32) }));
            }
        });
        // 12 accumulators of 16 lanes, two products a lane, two flops each.
        let flops = (ITERS * 12 * 16 * 2 * 2 * threads) as f64;
        Some(flops / started.elapsed().as_secs_f64() / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = threads;
        None
    }
}

fn growth(threads: usize, queries: usize) -> Result<()> {
    let sc = Session::builder()
        .threads(threads)
        .progress(false)
        .build()?;
    let sizes = [(10_000, 8), (100_000, 8), (1_000_000, 8)];
    let dims = [(100_000, 2), (100_000, 32), (100_000, 128)];
    for (n_train, dim) in sizes.into_iter().chain(dims) {
        let case = uniform(n_train, queries, dim, 7);
        let train = Case::frame(&case.train_x, &case.train_y, dim)?;
        let test = Case::frame(&case.test_x, &case.test_y, dim)?;
        let model = KnnRegressor::params(K).fit_frame(&train, "price")?;
        let b_model = sc.broadcast(model);
        let (times, _) = repeat((3, 30.0, 0.0), || {
            let preds = sc
                .parallelize(&test, (4 * threads).max(10))?
                .map_partitions(|part| b_model.value()?.predict_frame(&part))?
                .collect()?;
            values(&preds, "pred")
        })?;
        println!(
            "{{\"n_train\": {n_train}, \"dim\": {dim}, \"n_test\": {queries}, \"algorithm\": \"{:?}\", \"predict_s\": {:.4}}}",
            b_model.value()?.algorithm(),
            median(times)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Prepare { out, big } => prepare(&out, big),
        Command::Run {
            case,
            system,
            threads,
            repeats,
            long_run_s,
            fill_s,
            leaf_size,
        } => run(
            &case,
            system,
            RunOptions {
                threads,
                repeats,
                long_run_s,
                fill_s,
                leaf_size,
            },
        ),
        Command::Gemm { threads } => gemm(threads),
        Command::Growth { threads, queries } => growth(threads, queries),
    }
}
