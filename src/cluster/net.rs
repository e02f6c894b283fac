//! Connecting the processes of a cluster, with deadlines, before timely takes over.
//!
//! timely's own `create_sockets` retries and waits forever, which would hang a
//! notebook cell on a typo in an address. So sparkbook opens the same all-to-all
//! TCP mesh itself (process `i` connects to every lower process and accepts the
//! higher ones), with a deadline, and prefixes each connection with a hello: the
//! sparkbook version, the wire version and the functions the process can run. A
//! worker from another build is refused here, with its name, before any message
//! that it might decode differently. The sockets then go to timely unchanged
//! (`initialize_networking_from_sockets`), wrapped in [`Link`] so that a dropped
//! connection is recorded with the process it led to.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::communication::allocator::zero_copy::stream::Stream;

use crate::error::{Error, Result};

/// Bumped whenever the messages between driver and workers change.
pub(crate) const WIRE_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"SPARKBK\0";
/// A hello larger than this is not from a sparkbook process.
const MAX_HELLO: u32 = 1 << 20;

/// What each process says about itself when it connects.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Hello {
    pub process: usize,
    pub sparkbook: String,
    pub wire: u32,
    pub functions: Vec<String>,
}

impl Hello {
    pub fn new(process: usize, functions: Vec<String>) -> Hello {
        Hello {
            process,
            sparkbook: env!("CARGO_PKG_VERSION").to_owned(),
            wire: WIRE_VERSION,
            functions,
        }
    }
}

/// The state of a cluster's connections, shared by its links and its driver.
#[derive(Default)]
pub(crate) struct Health {
    failure: Mutex<Option<String>>,
    closing: AtomicBool,
}

impl Health {
    /// The first failure seen, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records a failure unless one is already recorded or the cluster is closing.
    pub fn fail(&self, reason: String) {
        if self.closing.load(Ordering::SeqCst) {
            return;
        }
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(reason);
    }

    /// From now on, connections closing are expected.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }
}

/// A connection to one peer process, as timely's send and receive threads use it.
///
/// A read or write that fails, or an end of stream, is recorded in [`Health`]
/// (unless the cluster is closing), so the driver can name the process it lost
/// instead of waiting for a job that can no longer finish.
pub(crate) struct Link {
    stream: TcpStream,
    peer: usize,
    address: String,
    health: Arc<Health>,
}

impl Link {
    fn lost(&self, what: &str) {
        self.health.fail(format!(
            "lost the connection to process {} ({}): {what}",
            self.peer, self.address
        ));
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.stream.read(buf);
        match &read {
            Ok(0) if !buf.is_empty() => self.lost("the process closed it"),
            Err(e) if e.kind() != io::ErrorKind::Interrupted => self.lost(&e.to_string()),
            _ => {}
        }
        read
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.stream.write(buf);
        if let Err(e) = &written {
            self.lost(&e.to_string());
        }
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl Stream for Link {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(Link {
            stream: self.stream.try_clone()?,
            peer: self.peer,
            address: self.address.clone(),
            health: Arc::clone(&self.health),
        })
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.stream.set_nonblocking(nonblocking)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }
}

/// The mesh of one process: a link to every other process (`None` at its own
/// index) and every peer's hello.
pub(crate) struct Mesh {
    pub links: Vec<Option<Link>>,
    pub hellos: Vec<Option<Hello>>,
}

/// Binds this process's address; fails with the address in the message.
pub(crate) fn bind(address: &str) -> Result<TcpListener> {
    TcpListener::bind(address).map_err(|e| Error::Cluster {
        process: None,
        reason: format!("cannot listen on {address}: {e}"),
    })
}

/// Connects process `me` to every other process within `timeout`, listening on
/// `listener`. While it waits for the higher processes, `watch` may end the
/// wait early with an error (the driver's: a worker it started has exited).
pub(crate) fn connect(
    (addresses, me, listener): (&[String], usize, TcpListener),
    hello: &Hello,
    timeout: Duration,
    health: &Arc<Health>,
    watch: &mut dyn FnMut() -> Option<Error>,
) -> Result<Mesh> {
    let deadline = Instant::now() + timeout;
    let mut links: Vec<Option<Link>> = (0..addresses.len()).map(|_| None).collect();
    let mut hellos: Vec<Option<Hello>> = (0..addresses.len()).map(|_| None).collect();
    let link = |stream: TcpStream, peer: usize| Link {
        stream,
        peer,
        address: addresses[peer].clone(),
        health: Arc::clone(health),
    };

    for (peer, address) in addresses.iter().enumerate().take(me) {
        let mut stream = connect_until(address, deadline).map_err(|reason| Error::Cluster {
            process: Some(peer),
            reason,
        })?;
        let theirs = handshake(&mut stream, hello, deadline)
            .and_then(|()| read_hello(&mut stream, deadline))
            .map_err(|reason| Error::Cluster {
                process: Some(peer),
                reason: format!("{address}: {reason}"),
            })?;
        check(&theirs, peer)?;
        hellos[peer] = Some(theirs);
        links[peer] = Some(link(stream, peer));
    }

    listener.set_nonblocking(true).map_err(io_error)?;
    while links.iter().skip(me + 1).any(Option::is_none) {
        match listener.accept() {
            Ok((mut stream, from)) => {
                stream.set_nonblocking(false).map_err(io_error)?;
                // Without it, Nagle's algorithm and delayed acks hold small messages
                // (a job's last progress update) for ~40 ms.
                stream.set_nodelay(true).map_err(io_error)?;
                let theirs =
                    read_hello(&mut stream, deadline).map_err(|reason| Error::Cluster {
                        process: None,
                        reason: format!("connection from {from}: {reason}"),
                    })?;
                let peer = theirs.process;
                if peer <= me || peer >= addresses.len() || links[peer].is_some() {
                    return Err(Error::Cluster {
                        process: Some(peer),
                        reason: format!(
                            "{from} says it is process {peer}; expected one of {}..{} not yet connected",
                            me + 1,
                            addresses.len()
                        ),
                    });
                }
                check(&theirs, peer)?;
                handshake(&mut stream, hello, deadline).map_err(|reason| Error::Cluster {
                    process: Some(peer),
                    reason,
                })?;
                hellos[peer] = Some(theirs);
                links[peer] = Some(link(stream, peer));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(err) = watch() {
                    return Err(err);
                }
                if Instant::now() >= deadline {
                    let missing: Vec<String> = (me + 1..addresses.len())
                        .filter(|&p| links[p].is_none())
                        .map(|p| format!("process {p} ({})", addresses[p]))
                        .collect();
                    return Err(Error::Cluster {
                        process: (me + 1..addresses.len()).find(|&p| links[p].is_none()),
                        reason: format!(
                            "no connection from {} within {:.0?}; is the worker running?",
                            missing.join(", "),
                            timeout
                        ),
                    });
                }
                sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(io_error(e)),
        }
    }
    Ok(Mesh { links, hellos })
}

fn io_error(e: io::Error) -> Error {
    Error::Cluster {
        process: None,
        reason: e.to_string(),
    }
}

/// Connects, retrying while the peer is not listening yet, until the deadline.
fn connect_until(address: &str, deadline: Instant) -> std::result::Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .collect();
    let mut last = String::from("no address");
    loop {
        for addr in &addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("cannot reach {address} ({last})"));
            }
            match TcpStream::connect_timeout(addr, left) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(|e| e.to_string())?;
                    return Ok(stream);
                }
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("cannot reach {address} ({last})"));
        }
        sleep(Duration::from_millis(20));
    }
}

/// Writes our hello.
fn handshake(
    stream: &mut TcpStream,
    hello: &Hello,
    deadline: Instant,
) -> std::result::Result<(), String> {
    let body = serde_json::to_vec(hello).map_err(|e| e.to_string())?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let mut message = Vec::with_capacity(12 + body.len());
    message.extend_from_slice(MAGIC);
    message.extend_from_slice(&(body.len() as u32).to_le_bytes());
    message.extend_from_slice(&body);
    stream
        .write_all(&message)
        .map_err(|e| format!("cannot send hello: {e}"))?;
    stream.set_write_timeout(None).map_err(|e| e.to_string())
}

/// Reads a peer's hello, refusing anything that is not one.
fn read_hello(stream: &mut TcpStream, deadline: Instant) -> std::result::Result<Hello, String> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("no hello received: {e}"))?;
    if &head[..8] != MAGIC {
        return Err("not a sparkbook process (bad hello)".to_owned());
    }
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if len > MAX_HELLO {
        return Err(format!("hello of {len} bytes is too large"));
    }
    let mut body = vec![0u8; len as usize];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("hello cut short: {e}"))?;
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("unreadable hello: {e}"))
}

/// Refuses a peer from another build or at the wrong index.
fn check(theirs: &Hello, peer: usize) -> Result<()> {
    let ours = Hello::new(peer, Vec::new());
    if theirs.process != peer {
        return Err(Error::Cluster {
            process: Some(peer),
            reason: format!(
                "the process at this address says it is process {}",
                theirs.process
            ),
        });
    }
    if theirs.sparkbook != ours.sparkbook || theirs.wire != ours.wire {
        return Err(Error::Cluster {
            process: Some(peer),
            reason: format!(
                "runs sparkbook {} (wire version {}), this process sparkbook {} (wire version {}); \
                 rebuild the worker from the same sparkbook",
                theirs.sparkbook, theirs.wire, ours.sparkbook, ours.wire
            ),
        });
    }
    Ok(())
}
