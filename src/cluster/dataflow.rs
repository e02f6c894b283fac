//! The one timely dataflow every process of a cluster builds.
//!
//! The driver (process 0) feeds commands into an input; each command carries the
//! process it is for, and an exchange routes it there. One epoch is one job: the
//! driver sends the job's broadcasts and tasks at epoch `t`, advances the input, and
//! the job is done when the probe on the results passes `t`, which is timely's
//! progress tracking telling the driver that every worker has finished and every
//! result has arrived. A worker runs an epoch's commands once its input frontier has
//! passed the epoch: broadcasts first, then the tasks, in parallel on its own pool.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Probe;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Input;
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::worker::Worker;

use super::registry::{Registry, State};
use crate::session::{Session, panic_message};

/// A command and the process it is for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Routed {
    pub to: u32,
    pub command: Command,
}

/// What the driver asks of a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Decode `payload` and build `function`'s state for broadcast `id`.
    Broadcast {
        id: u64,
        function: String,
        payload: Vec<u8>,
    },
    /// Free every state built from broadcast `id`.
    Destroy { id: u64 },
    /// Run `function` on one partition (Arrow IPC stream bytes).
    Task {
        partition: u32,
        function: String,
        broadcast: u64,
        frame: Vec<u8>,
    },
}

/// One partition's result, sent back to the driver.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Outcome {
    pub partition: u32,
    pub process: u32,
    pub seconds: f64,
    pub result: Result<Vec<u8>, Failure>,
}

/// Why a partition has no result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Failure {
    Panic(String),
    Error(String),
}

/// The driver's end of the dataflow.
pub(crate) struct DriverPorts {
    pub input: InputHandleVec<u64, Routed>,
    pub probe: ProbeHandle<u64>,
    pub results: Rc<RefCell<Vec<Outcome>>>,
    pub dataflow: usize,
}

/// Builds the dataflow on this process. Workers run tasks with `registry` on
/// `session`'s threads; process 0 collects the outcomes.
pub(crate) fn build(
    worker: &mut Worker,
    registry: Arc<Registry>,
    session: Option<Session>,
) -> DriverPorts {
    let mut input = InputHandleVec::new();
    let probe = ProbeHandle::new();
    let results = Rc::new(RefCell::new(Vec::new()));
    let collected = Rc::clone(&results);
    let dataflow = worker.next_dataflow_index();
    let process = worker.index() as u32;
    worker.dataflow::<u64, _, _>(|scope| {
        let mut states: HashMap<(u64, String), Result<State, String>> = HashMap::new();
        let mut pending: Vec<(timely::dataflow::operators::Capability<u64>, Vec<Routed>)> =
            Vec::new();
        scope
            .input_from(&mut input)
            .unary_frontier(
                Exchange::new(|routed: &Routed| u64::from(routed.to)),
                "RunTasks",
                move |_capability, _info| {
                    move |(commands, frontier), output| {
                        commands.for_each_stamp(|cap, batches| {
                            let Some(cap) = cap.retain_least(output.output_index()) else {
                                return;
                            };
                            let mut all = Vec::new();
                            for batch in batches {
                                all.append(batch);
                            }
                            pending.push((cap, all));
                        });
                        let (ready, waiting): (Vec<_>, Vec<_>) = pending
                            .drain(..)
                            .partition(|(cap, _)| !frontier.less_equal(cap.time()));
                        pending = waiting;
                        for (cap, commands) in ready {
                            let outcomes = run_epoch(
                                process,
                                commands,
                                &mut states,
                                &registry,
                                session.as_ref(),
                            );
                            output.session(&cap).give_iterator(outcomes.into_iter());
                        }
                    }
                },
            )
            .container::<Vec<Outcome>>()
            .unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                Exchange::new(|_: &Outcome| 0),
                "Collect",
                move |_, _| {
                    move |outcomes, _output| {
                        outcomes.for_each(|_, batch| collected.borrow_mut().append(batch));
                    }
                },
            )
            .probe_with(&probe);
    });
    DriverPorts {
        input,
        probe,
        results,
        dataflow,
    }
}

/// Applies one epoch's commands on this worker and runs its tasks.
fn run_epoch(
    process: u32,
    commands: Vec<Routed>,
    states: &mut HashMap<(u64, String), Result<State, String>>,
    registry: &Registry,
    session: Option<&Session>,
) -> Vec<Outcome> {
    let mut tasks = Vec::new();
    for routed in commands {
        match routed.command {
            Command::Broadcast {
                id,
                function,
                payload,
            } => {
                let state = registry.init(&function, &payload);
                states.insert((id, function), state);
            }
            Command::Destroy { id } => states.retain(|(held, _), _| *held != id),
            Command::Task {
                partition,
                function,
                broadcast,
                frame,
            } => tasks.push((partition, function, broadcast, frame)),
        }
    }
    let Some(session) = session else {
        return Vec::new();
    };
    // States are looked up after the whole epoch's broadcasts are applied.
    let inputs: Vec<_> = tasks
        .into_iter()
        .map(|(partition, function, broadcast, frame)| {
            let state = states.get(&(broadcast, function.clone())).cloned();
            (partition, function, state, frame)
        })
        .collect();
    let rows = vec![0; inputs.len()];
    let outcomes = session.run_job(
        "cluster tasks",
        inputs,
        &rows,
        |_, (partition, function, state, frame)| {
            let started = Instant::now();
            let result = match state {
                None => Err(Failure::Error(format!(
                    "process {process} holds no broadcast for `{function}`"
                ))),
                Some(Err(reason)) => Err(Failure::Error(reason)),
                Some(Ok(state)) => catch_unwind(AssertUnwindSafe(|| {
                    registry.call(
                        &function,
                        state.as_ref() as &(dyn Any + Send + Sync),
                        &frame,
                    )
                }))
                .unwrap_or_else(|payload| Err(Failure::Panic(panic_message(payload.as_ref())))),
            };
            Ok(Outcome {
                partition,
                process,
                seconds: started.elapsed().as_secs_f64(),
                result,
            })
        },
    );
    outcomes.unwrap_or_else(|e| {
        vec![Outcome {
            partition: u32::MAX,
            process,
            seconds: 0.0,
            result: Err(Failure::Error(e.to_string())),
        }]
    })
}
