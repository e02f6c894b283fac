//! The driver's handle on a running cluster, and the worker processes' main loop.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polars::prelude::DataFrame;
use timely::WorkerConfig;
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::{Hooks, WorkerGuards};
use timely::execute::execute_from;

use super::dataflow::{self, Command as Cmd, DriverPorts, Failure, Outcome, Routed};
use super::net::{self, Health, Hello, Link};
use super::registry::{Registry, decode_frame, encode_frame, encode_payload};
use super::{ClusterConfig, Launch};
use crate::broadcast::Broadcast;
use crate::error::{Error, Result};
use crate::function::PartitionFn;
use crate::partition::fresh;
use crate::session::{JobReport, PartitionTiming, Session};

/// How often a waiting driver looks at its workers' health.
const POLL: Duration = Duration::from_millis(20);
/// Starts of a local cluster's workers before giving up (see [`spawn`]).
const SPAWN_TRIES: usize = 3;

/// One worker process as the driver knows it.
#[derive(Debug)]
struct WorkerInfo {
    process: usize,
    address: String,
    functions: Vec<String>,
}

enum Request {
    Job {
        commands: Vec<Routed>,
        reply: mpsc::Sender<Vec<Outcome>>,
    },
    Shutdown,
}

/// A connected cluster, owned by a session (and its clones).
pub(crate) struct Cluster {
    requests: Mutex<mpsc::Sender<Request>>,
    health: Arc<Health>,
    workers: Vec<WorkerInfo>,
    children: Mutex<Vec<Child>>,
    guards: Mutex<Option<WorkerGuards<()>>>,
    /// Broadcasts already on the workers, with the function that holds them.
    shipped: Mutex<HashSet<(u64, &'static str)>>,
    /// One job at a time goes through the dataflow.
    job: Mutex<()>,
    bytes_out: AtomicU64,
}

impl Cluster {
    /// Starts (or joins) the processes and connects them, within the deadline.
    pub(crate) fn start(config: &ClusterConfig) -> Result<Cluster> {
        config.validate()?;
        let health = Arc::new(Health::default());
        let hello = Hello::new(0, Vec::new());
        let (addresses, mesh, mut children) = match &config.launch {
            Launch::Join { addresses } => {
                let listener = net::bind(&addresses[0])?;
                let mesh = net::connect(
                    (addresses, 0, listener),
                    &hello,
                    config.connect_timeout,
                    &health,
                    &mut || None,
                )?;
                (addresses.clone(), mesh, Vec::new())
            }
            Launch::Spawn { workers, binary } => {
                if !binary.is_file() {
                    return Err(Error::param(
                        "worker_binary",
                        format!(
                            "{} is not a file; build it with `cargo build --features cluster --bin sparkbook`",
                            binary.display()
                        ),
                    ));
                }
                spawn(config, (*workers, binary), &hello, &health)?
            }
        };
        let workers = mesh
            .hellos
            .iter()
            .enumerate()
            .skip(1)
            .map(|(process, hello)| WorkerInfo {
                process,
                address: addresses[process].clone(),
                functions: hello
                    .as_ref()
                    .map(|h| h.functions.clone())
                    .unwrap_or_default(),
            })
            .collect();

        let (requests, inbox) = mpsc::channel();
        let inbox = Mutex::new(Some(inbox));
        let loop_health = Arc::clone(&health);
        let guards = launch(mesh.links, 0, move |worker| {
            let Some(inbox) = inbox.lock().unwrap_or_else(|p| p.into_inner()).take() else {
                return;
            };
            let ports = dataflow::build(worker, Arc::new(Registry::empty()), None);
            drive(worker, ports, &inbox, &loop_health);
        });
        let guards = match guards {
            Ok(guards) => guards,
            Err(err) => {
                kill_all(&mut children);
                return Err(err);
            }
        };
        Ok(Cluster {
            requests: Mutex::new(requests),
            health,
            workers,
            children: Mutex::new(children),
            guards: Mutex::new(Some(guards)),
            shipped: Mutex::new(HashSet::new()),
            job: Mutex::new(()),
            bytes_out: AtomicU64::new(0),
        })
    }

    /// Worker processes in the cluster.
    pub(crate) fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Runs `F` on every partition on the workers; results in partition order.
    pub(crate) fn run<F: PartitionFn>(
        &self,
        session: &Session,
        broadcast: &Broadcast<F::Payload>,
        parts: &[DataFrame],
    ) -> Result<Vec<DataFrame>> {
        let _one_job = self.job.lock().unwrap_or_else(|p| p.into_inner());
        self.check()?;
        if let Some(worker) = self
            .workers
            .iter()
            .find(|w| !w.functions.iter().any(|f| f == F::NAME))
        {
            return Err(Error::Cluster {
                process: Some(worker.process),
                reason: format!(
                    "worker {} has no function `{}` (it has: {}); start workers built with it",
                    worker.address,
                    F::NAME,
                    worker.functions.join(", ")
                ),
            });
        }
        let value = broadcast.value()?;
        let started = Instant::now();
        let mut commands = Vec::new();
        let mut bytes_out = 0u64;
        let key = (broadcast.id(), F::NAME);
        let first_use = !self
            .shipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key);
        if first_use {
            let payload = encode_payload(&*value).map_err(Error::Message)?;
            for worker in &self.workers {
                bytes_out += payload.len() as u64;
                commands.push(Routed {
                    to: worker.process as u32,
                    command: Cmd::Broadcast {
                        id: broadcast.id(),
                        function: F::NAME.to_owned(),
                        payload: payload.clone(),
                    },
                });
            }
        }
        let rows: Vec<usize> = parts.iter().map(DataFrame::height).collect();
        for (index, part) in parts.iter().enumerate() {
            let frame = encode_frame(fresh(part)).map_err(Error::Message)?;
            bytes_out += frame.len() as u64;
            commands.push(Routed {
                to: self.workers[index % self.workers.len()].process as u32,
                command: Cmd::Task {
                    partition: index as u32,
                    function: F::NAME.to_owned(),
                    broadcast: broadcast.id(),
                    frame,
                },
            });
        }
        let outcomes = self.submit(commands)?;
        if first_use {
            self.shipped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key);
        }
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        let bytes_in: u64 = outcomes
            .iter()
            .map(|o| o.result.as_ref().map_or(0, |b| b.len() as u64))
            .sum();
        assemble(
            session,
            F::NAME,
            outcomes,
            &rows,
            started,
            (bytes_out, bytes_in),
        )
    }

    /// Frees broadcast `id` on the workers, if they hold it.
    pub(crate) fn forget(&self, id: u64) {
        let held = {
            let mut shipped = self.shipped.lock().unwrap_or_else(|p| p.into_inner());
            let before = shipped.len();
            shipped.retain(|(held, _)| *held != id);
            before != shipped.len()
        };
        if !held || self.health.failure().is_some() {
            return;
        }
        let commands = self
            .workers
            .iter()
            .map(|w| Routed {
                to: w.process as u32,
                command: Cmd::Destroy { id },
            })
            .collect();
        let (reply, _ignored) = mpsc::channel();
        let _ = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Request::Job { commands, reply });
    }

    /// Sends one epoch of commands and waits for its outcomes, watching the workers.
    fn submit(&self, commands: Vec<Routed>) -> Result<Vec<Outcome>> {
        let (reply, outcomes) = mpsc::channel();
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Request::Job { commands, reply })
            .map_err(|_| self.lost("the driver's dataflow thread has stopped"))?;
        loop {
            match outcomes.recv_timeout(POLL) {
                Ok(outcomes) => return Ok(outcomes),
                Err(RecvTimeoutError::Timeout) => self.check()?,
                Err(RecvTimeoutError::Disconnected) => {
                    self.check()?;
                    return Err(self.lost("the driver's dataflow thread has stopped"));
                }
            }
        }
    }

    /// Fails if a worker process exited or a connection broke (now or before).
    fn check(&self) -> Result<()> {
        if let Some((_, reason)) =
            exited_child(&mut self.children.lock().unwrap_or_else(|p| p.into_inner()))
        {
            self.health.fail(reason);
        }
        match self.health.failure() {
            None => Ok(()),
            Some(reason) => {
                kill_all(&mut self.children.lock().unwrap_or_else(|p| p.into_inner()));
                Err(self.lost(&reason))
            }
        }
    }

    fn lost(&self, reason: &str) -> Error {
        self.health.fail(reason.to_owned());
        let reason = self.health.failure().unwrap_or_else(|| reason.to_owned());
        Error::Cluster {
            process: process_named(&reason),
            reason: format!("{reason}; the cluster cannot run jobs any more: build a new session"),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let healthy = self.health.failure().is_none();
        self.health.close();
        let _ = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Request::Shutdown);
        let guards = self.guards.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|p| p.into_inner()));
        if healthy {
            // Joining timely's threads waits for the workers to finish the
            // dataflow; it happens on a thread of its own, waited for briefly, so a
            // stuck peer can never hang the notebook.
            let (done, joined) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = catch_unwind(AssertUnwindSafe(|| guards.map(WorkerGuards::join)));
                let _ = done.send(());
            });
            let _ = joined.recv_timeout(Duration::from_secs(5));
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline
                && children
                    .iter_mut()
                    .any(|c| matches!(c.try_wait(), Ok(None)))
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        } else {
            // After a failure timely's guards panic while dropping, and a second
            // panic during that unwinding would abort the whole process (the
            // notebook kernel): they are leaked instead; their threads have ended
            // or are about to.
            std::mem::forget(guards);
        }
        kill_all(&mut children);
    }
}

/// The driver's dataflow thread: one epoch per request.
fn drive(
    worker: &mut timely::worker::Worker,
    ports: DriverPorts,
    inbox: &mpsc::Receiver<Request>,
    health: &Health,
) {
    let DriverPorts {
        mut input,
        probe,
        results,
        dataflow,
    } = ports;
    loop {
        match inbox.recv_timeout(POLL) {
            Ok(Request::Job { commands, reply }) => {
                for command in commands {
                    input.send(command);
                }
                let next = *input.time() + 1;
                input.advance_to(next);
                while probe.less_than(input.time()) && health.failure().is_none() {
                    worker.step_or_park(Some(POLL));
                }
                if health.failure().is_some() {
                    worker.drop_dataflow(dataflow);
                    return;
                }
                let _ = reply.send(results.borrow_mut().drain(..).collect());
            }
            Ok(Request::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                worker.step_or_park(Some(Duration::ZERO));
            }
        }
    }
    drop(input);
    while worker.has_dataflows() && health.failure().is_none() {
        worker.step_or_park(Some(POLL));
    }
    if worker.has_dataflows() {
        worker.drop_dataflow(dataflow);
    }
}

/// Hands the connected sockets to timely and starts this process's worker thread.
fn launch<F>(links: Vec<Option<Link>>, me: usize, work: F) -> Result<WorkerGuards<()>>
where
    F: Fn(&mut timely::worker::Worker) + Send + Sync + 'static,
{
    let hooks = Hooks::default();
    let local = ProcessBuilder::new_typed_vector(1, hooks.refill.clone(), hooks.spill.clone());
    let (builders, comms) = initialize_networking_from_sockets(local, links, me, 1, hooks)
        .map_err(|e| Error::Cluster {
            process: Some(me),
            reason: format!("cannot start timely's network threads: {e}"),
        })?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    execute_from(builders, Box::new(comms), WorkerConfig::default(), work).map_err(|reason| {
        Error::Cluster {
            process: Some(me),
            reason,
        }
    })
}

/// Turns the workers' outcomes into partitions, or the lowest partition's error.
fn assemble(
    session: &Session,
    verb: &'static str,
    mut outcomes: Vec<Outcome>,
    rows: &[usize],
    started: Instant,
    bytes: (u64, u64),
) -> Result<Vec<DataFrame>> {
    outcomes.sort_by_key(|o| o.partition);
    let complete = outcomes.len() == rows.len()
        && outcomes
            .iter()
            .enumerate()
            .all(|(i, o)| o.partition as usize == i);
    let mut failure = None;
    let mut parts = Vec::with_capacity(rows.len());
    let mut timings = Vec::with_capacity(rows.len());
    if !complete {
        let reason = outcomes
            .iter()
            .find_map(|o| match &o.result {
                Err(Failure::Error(reason) | Failure::Panic(reason)) if o.partition == u32::MAX => {
                    Some(format!("worker process {}: {reason}", o.process))
                }
                _ => None,
            })
            .unwrap_or_else(|| {
                format!("{} of {} partitions came back", outcomes.len(), rows.len())
            });
        failure = Some(Error::Cluster {
            process: None,
            reason,
        });
    }
    for outcome in outcomes
        .into_iter()
        .filter(|o| (o.partition as usize) < rows.len())
    {
        let index = outcome.partition as usize;
        timings.push(PartitionTiming {
            index,
            rows: rows[index],
            seconds: outcome.seconds,
        });
        let process = outcome.process as usize;
        let result = match outcome.result {
            Ok(bytes) => decode_frame(&bytes).map_err(|reason| Error::Cluster {
                process: Some(process),
                reason,
            }),
            Err(Failure::Panic(message)) => Err(Error::Partition {
                index,
                rows: rows[index],
                message: format!("{message} (on worker process {process})"),
            }),
            Err(Failure::Error(reason)) => Err(Error::PartitionFailed {
                index,
                rows: rows[index],
                source: Box::new(Error::Cluster {
                    process: Some(process),
                    reason,
                }),
            }),
        };
        match result {
            Ok(part) => parts.push(part),
            Err(err) => {
                failure.get_or_insert(err);
            }
        }
    }
    session.record_job(JobReport {
        job: session.next_job_id(),
        verb,
        seconds: started.elapsed().as_secs_f64(),
        threads: session.threads(),
        partitions: timings,
        failed: failure.is_some(),
        bytes_out: bytes.0,
        bytes_in: bytes.1,
    });
    match failure {
        Some(err) => Err(err),
        None => Ok(parts),
    }
}

/// Starts `workers` processes of `binary` on loopback ports and connects to
/// them. Each port is picked by binding port 0 and letting it go, so another
/// socket on the machine may take it before the worker binds it; a worker
/// that exits before it connects is therefore started again on fresh ports,
/// up to [`SPAWN_TRIES`] times in all, and the last failure is the error.
fn spawn(
    config: &ClusterConfig,
    (workers, binary): (usize, &std::path::Path),
    hello: &Hello,
    health: &Arc<Health>,
) -> Result<(Vec<String>, net::Mesh, Vec<Child>)> {
    let mut tries = 1;
    loop {
        let listener = net::bind("127.0.0.1:0")?;
        let mut addresses = vec![local_address(&listener)?];
        for _ in 0..workers {
            addresses.push(local_address(&net::bind("127.0.0.1:0")?)?);
        }
        let mut children = Vec::new();
        for process in 1..=workers {
            let mut command = Command::new(binary);
            command
                .arg("worker")
                .arg("--process")
                .arg(process.to_string())
                .arg("--addresses")
                .arg(addresses.join(","))
                .arg("--connect-timeout-ms")
                .arg(config.connect_timeout.as_millis().to_string())
                .stdin(Stdio::null());
            if let Some(threads) = config.worker_threads {
                command.arg("--threads").arg(threads.to_string());
            }
            match command.spawn() {
                Ok(child) => children.push(child),
                Err(e) => {
                    kill_all(&mut children);
                    return Err(Error::Cluster {
                        process: Some(process),
                        reason: format!("cannot start {}: {e}", binary.display()),
                    });
                }
            }
        }
        let mut exited = false;
        let mut watch = || {
            let (process, reason) = exited_child(&mut children)?;
            exited = true;
            Some(Error::Cluster {
                process: Some(process),
                reason: format!("{reason} before connecting"),
            })
        };
        let connected = net::connect(
            (&addresses, 0, listener),
            hello,
            config.connect_timeout,
            health,
            &mut watch,
        );
        match connected {
            Ok(mesh) => return Ok((addresses, mesh, children)),
            Err(err) => {
                let late = if exited {
                    None
                } else {
                    exited_child(&mut children)
                };
                kill_all(&mut children);
                if (exited || late.is_some()) && tries < SPAWN_TRIES {
                    tries += 1;
                    continue;
                }
                return Err(match late {
                    Some((_, reason)) => Error::Cluster {
                        process: None,
                        reason: format!("{err}; {reason}"),
                    },
                    None => err,
                });
            }
        }
    }
}

fn local_address(listener: &std::net::TcpListener) -> Result<String> {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .map_err(|e| Error::Cluster {
            process: None,
            reason: e.to_string(),
        })
}

/// The first started worker that has exited, if any: its process number, and
/// what happened to it.
fn exited_child(children: &mut [Child]) -> Option<(usize, String)> {
    children
        .iter_mut()
        .enumerate()
        .find_map(|(i, child)| match child.try_wait() {
            Ok(Some(status)) => Some((
                i + 1,
                format!(
                    "worker process {} (pid {}) exited ({status})",
                    i + 1,
                    child.id()
                ),
            )),
            _ => None,
        })
}

fn kill_all(children: &mut [Child]) {
    for child in children.iter_mut() {
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// The process a failure message names ("process 2" / "worker process 2").
fn process_named(reason: &str) -> Option<usize> {
    let at = reason.find("process ")? + "process ".len();
    let digits: String = reason[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// How a worker process is started: `sparkbook worker ...` or your own binary's
/// [`worker_main`].
#[derive(clap::Parser, Debug, Clone)]
#[command(about = "Run a sparkbook cluster worker process")]
pub struct WorkerArgs {
    /// This process's index in the address list (the driver is 0).
    #[arg(long)]
    pub process: usize,
    /// Every process's host:port, comma-separated, the driver's first.
    #[arg(long, value_delimiter = ',', required_unless_present = "hostfile")]
    pub addresses: Vec<String>,
    /// A timely hostfile (one host:port per line) instead of --addresses.
    #[arg(long, conflicts_with = "addresses")]
    pub hostfile: Option<std::path::PathBuf>,
    /// Threads that run this worker's partitions (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// How long to wait for the other processes, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub connect_timeout_ms: u64,
}

/// Runs a worker process until the driver closes the cluster.
///
/// The worker listens on its own address from `args`, connects to the others
/// within the timeout, and runs every partition routed to it with `registry`'s
/// functions on `args.threads` threads.
pub fn run_worker(registry: Registry, args: &WorkerArgs) -> Result<()> {
    let addresses = match &args.hostfile {
        Some(path) => super::read_hostfile(path)?,
        None => args.addresses.clone(),
    };
    if args.process == 0 || args.process >= addresses.len() {
        return Err(Error::param(
            "process",
            format!(
                "must be 1..{} for {} addresses (0 is the driver), got {}",
                addresses.len().saturating_sub(1),
                addresses.len(),
                args.process
            ),
        ));
    }
    let mut builder = Session::builder().progress(false).app_name("worker");
    if let Some(threads) = args.threads {
        builder = builder.threads(threads);
    }
    let session = builder.build()?;
    let health = Arc::new(Health::default());
    let listener = net::bind(&addresses[args.process])?;
    let hello = Hello::new(args.process, registry.names());
    let mesh = net::connect(
        (&addresses, args.process, listener),
        &hello,
        Duration::from_millis(args.connect_timeout_ms),
        &health,
        &mut || None,
    )?;
    let registry = Arc::new(registry);
    let guards = launch(mesh.links, args.process, move |worker| {
        let ports = dataflow::build(worker, Arc::clone(&registry), Some(session.clone()));
        // Only the driver feeds the dataflow.
        drop(ports.input);
        while worker.has_dataflows() {
            worker.step_or_park(Some(Duration::from_millis(100)));
        }
    })?;
    let joined = catch_unwind(AssertUnwindSafe(|| guards.join()));
    match joined {
        Ok(results) if results.iter().all(Result::is_ok) => Ok(()),
        _ => Err(Error::Cluster {
            process: Some(args.process),
            reason: health
                .failure()
                .unwrap_or_else(|| "the worker's dataflow stopped".to_owned()),
        }),
    }
}

/// `main` for a worker binary: parses [`WorkerArgs`] from the command line, runs
/// [`run_worker`], and exits 1 with one `error:` line if it fails.
pub fn worker_main(registry: Registry) {
    use clap::Parser;
    let args = WorkerArgs::parse();
    if let Err(err) = run_worker(registry, &args) {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
