//! The `sparkbook` command: the notebook workflow on CSV files, from a shell.
//!
//! `sparkbook knn --train a.csv --test b.csv --target price -k 100 -o pred.csv`
//! fits a k-NN model on the training file, broadcasts it, predicts the test file's
//! rows in partitions and writes a `row`, `true`, `pred` CSV in the test file's
//! order. Any failure prints one line naming the fault and exits with status 1,
//! leaving no partial output file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use polars::prelude::*;
use sparkbook::datasets::read_csv;
use sparkbook::knn::{Algorithm, KnnClassifier, KnnRegressor, Metric, Weights};
use sparkbook::metrics::TruePred;
use sparkbook::preprocessing::StandardScaler;
use sparkbook::{Error, PartitionedFrame, Result, Session};

/// Spark's broadcast / parallelize / mapPartitions / collect workflow, on one machine.
#[derive(Parser, Debug)]
#[command(name = "sparkbook", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fit k-NN on a training CSV and predict a test CSV in parallel partitions.
    Knn(KnnArgs),
    /// Run a cluster worker process with sparkbook's built-in functions (feature `cluster`).
    #[cfg(feature = "cluster")]
    Worker(sparkbook::cluster::WorkerArgs),
    /// Show the session a job would get on this machine (threads, partitions).
    Info {
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

#[derive(clap::Args, Debug)]
struct KnnArgs {
    /// Training data (CSV with a header row).
    #[arg(long)]
    train: PathBuf,
    /// Data to predict (CSV with the same feature columns; the target is optional).
    #[arg(long)]
    test: PathBuf,
    /// The column to predict. Every other numeric column is a feature.
    #[arg(long)]
    target: String,
    /// Neighbours per prediction.
    #[arg(short = 'k', long, default_value_t = 5)]
    k: usize,
    /// Partitions of the test set.
    #[arg(long)]
    partitions: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// How neighbours are weighted.
    #[arg(long, value_enum, default_value_t = WeightsArg::Uniform)]
    weights: WeightsArg,
    /// The distance.
    #[arg(long, value_enum, default_value_t = MetricArg::Euclidean)]
    metric: MetricArg,
    /// Power for `--metric minkowski`.
    #[arg(long, default_value_t = 2.0)]
    p: f64,
    /// Neighbour search method.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Auto)]
    algorithm: AlgorithmArg,
    /// Classify (majority label) instead of regress (mean target).
    #[arg(long)]
    classify: bool,
    /// Scale features to zero mean and unit variance, with the training set's figures.
    #[arg(long)]
    standardize: bool,
    /// Where to write the predictions (CSV).
    #[arg(short = 'o', long)]
    output: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum WeightsArg {
    Uniform,
    Distance,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MetricArg {
    Euclidean,
    Manhattan,
    Chebyshev,
    Minkowski,
    Cosine,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AlgorithmArg {
    Auto,
    Brute,
    KdTree,
    BallTree,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Knn(args) => knn(&args),
        #[cfg(feature = "cluster")]
        Command::Worker(args) => {
            sparkbook::cluster::run_worker(sparkbook::cluster::Registry::builtin(), &args)
        }
        Command::Info { threads } => {
            let sc = session(threads)?;
            println!("sparkbook {}", env!("CARGO_PKG_VERSION"));
            println!("threads: {}", sc.threads());
            println!("default partitions: {}", sc.default_parallelism());
            println!(
                "POLARS_MAX_THREADS: {}",
                std::env::var("POLARS_MAX_THREADS").unwrap_or_else(|_| "unset (all cores)".into())
            );
            Ok(())
        }
    }
}

fn session(threads: Option<usize>) -> Result<Session> {
    let mut builder = Session::builder().app_name("sparkbook knn");
    if let Some(threads) = threads {
        builder = builder.threads(threads);
    }
    builder.build()
}

/// A temporary file beside the output, renamed into place only when complete.
struct PendingOutput {
    tmp: PathBuf,
    target: PathBuf,
}

impl PendingOutput {
    /// Creates the temporary file now, so an unwritable output fails before any work.
    fn create(target: &Path) -> Result<(PendingOutput, fs::File)> {
        let name = target
            .file_name()
            .ok_or_else(|| Error::io(target, std::io::Error::other("not a file name")))?;
        let tmp = target.with_file_name(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = fs::File::create(&tmp).map_err(|e| Error::io(target, e))?;
        Ok((
            PendingOutput {
                tmp,
                target: target.to_owned(),
            },
            file,
        ))
    }

    fn commit(self) -> Result<()> {
        fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.target, e))
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        // After a successful rename the temporary path no longer exists.
        let _ = fs::remove_file(&self.tmp);
    }
}

fn knn(args: &KnnArgs) -> Result<()> {
    let started = Instant::now();
    if args.output.is_dir() {
        return Err(Error::io(
            &args.output,
            std::io::Error::other("is a directory"),
        ));
    }
    let mut train = read_csv(&args.train)?;
    let mut test = read_csv(&args.test)?;
    // Inside the job an empty partition is normal; an empty test file is a mistake.
    if test.height() == 0 {
        return Err(Error::EmptyData { what: "test set" });
    }
    if args.standardize {
        let scaler = StandardScaler::fit(&train, &args.target)?;
        train = scaler.transform(&train)?;
        test = scaler.transform(&test)?;
    }
    let (pending, mut file) = PendingOutput::create(&args.output)?;

    let sc = session(args.threads)?;
    let partitions = args.partitions.unwrap_or(sc.default_parallelism());
    let weights = match args.weights {
        WeightsArg::Uniform => Weights::Uniform,
        WeightsArg::Distance => Weights::Distance,
    };
    let metric = match args.metric {
        MetricArg::Euclidean => Metric::Euclidean,
        MetricArg::Manhattan => Metric::Manhattan,
        MetricArg::Chebyshev => Metric::Chebyshev,
        MetricArg::Minkowski => Metric::Minkowski(args.p),
        MetricArg::Cosine => Metric::Cosine,
    };
    let algorithm = match args.algorithm {
        AlgorithmArg::Auto => Algorithm::Auto,
        AlgorithmArg::Brute => Algorithm::Brute,
        AlgorithmArg::KdTree => Algorithm::KdTree,
        AlgorithmArg::BallTree => Algorithm::BallTree,
    };

    let parts = sc.parallelize(&test, partitions)?.zip_with_index()?;
    let fit_started = Instant::now();
    // The training frame is not needed after the fit: draining it into the model
    // holds the training data once instead of twice.
    let mut preds = if args.classify {
        let model: KnnClassifier<String> = KnnClassifier::params(args.k)
            .weights(weights)
            .metric(metric)
            .algorithm(algorithm)
            .fit_frame_drain(&mut train, &args.target)?;
        predict_all(
            &sc,
            &parts,
            model,
            fit_started,
            KnnClassifier::predict_frame,
        )?
    } else {
        let model = KnnRegressor::params(args.k)
            .weights(weights)
            .metric(metric)
            .algorithm(algorithm)
            .fit_frame_drain(&mut train, &args.target)?;
        predict_all(&sc, &parts, model, fit_started, KnnRegressor::predict_frame)?
    };
    if let Some(job) = sc.last_job() {
        eprintln!(
            "predicted {} rows in {} partitions on {} threads in {:.2} s",
            preds.height(),
            job.partitions.len(),
            job.threads,
            job.seconds
        );
    }

    CsvWriter::new(&mut file)
        .finish(&mut preds)
        .map_err(|e| Error::io(&args.output, std::io::Error::other(e.to_string())))?;
    file.sync_all().map_err(|e| Error::io(&args.output, e))?;
    drop(file);
    pending.commit()?;

    if preds.column("true").is_ok() {
        println!("{}", preds.scores()?);
    }
    println!(
        "wrote {} ({} rows) in {:.2} s",
        args.output.display(),
        preds.height(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Broadcasts a fitted model and predicts every partition with it.
fn predict_all<M: Send + Sync + std::fmt::Debug>(
    sc: &Session,
    parts: &PartitionedFrame,
    model: M,
    fit_started: Instant,
    predict: impl Fn(&M, &DataFrame) -> Result<DataFrame> + Sync + Send,
) -> Result<DataFrame> {
    eprintln!(
        "fitted {model:?} in {:.2} s",
        fit_started.elapsed().as_secs_f64()
    );
    let b = sc.broadcast(model);
    parts
        .map_partitions(|part| predict(b.value()?.as_ref(), &part))?
        .collect()
}
