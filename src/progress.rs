//! Progress of one job, shown where the user is looking.
//!
//! On a terminal an indicatif bar redraws in place. In a notebook stderr is not a
//! terminal (evcxr forwards it to the cell's output), so an updating bar would print
//! a new line per redraw; there we print a plain line at most once a second, and
//! nothing at all for jobs that finish within the first second.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const LINE_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Progress {
    mode: Mode,
    label: String,
    total: usize,
    done: AtomicUsize,
    start: Instant,
    last_line: Mutex<Option<Instant>>,
}

enum Mode {
    Off,
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    pub(crate) fn start(enabled: bool, label: String, total: usize) -> Progress {
        let mode = if !enabled {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} partitions ({elapsed})")
                    .map(|style| style.progress_chars("=> "))
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(label.clone());
            Mode::Bar(bar)
        } else {
            Mode::Lines
        };
        Progress {
            mode,
            label,
            total,
            done: AtomicUsize::new(0),
            start: Instant::now(),
            last_line: Mutex::new(None),
        }
    }

    /// One partition finished (successfully or not).
    pub(crate) fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.mode {
            Mode::Off => {}
            Mode::Bar(bar) => bar.inc(1),
            Mode::Lines => {
                let now = Instant::now();
                let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
                let due = match *last {
                    None => now.duration_since(self.start) >= LINE_EVERY,
                    Some(at) => now.duration_since(at) >= LINE_EVERY,
                };
                if due && done < self.total {
                    *last = Some(now);
                    self.line(done);
                }
            }
        }
    }

    /// The job ended; closes the bar, or prints a last line if earlier lines were shown.
    pub(crate) fn finish(&self) {
        match &self.mode {
            Mode::Off => {}
            Mode::Bar(bar) => bar.finish_and_clear(),
            Mode::Lines => {
                let printed = self
                    .last_line
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some();
                if printed {
                    self.line(self.done.load(Ordering::Relaxed));
                }
            }
        }
    }

    fn line(&self, done: usize) {
        let pct = (done * 100).checked_div(self.total).unwrap_or(100);
        let mut err = std::io::stderr().lock();
        // A failed write to stderr must not fail the job it reports on.
        let _ = writeln!(
            err,
            "[sparkbook] {}: {done}/{} partitions ({pct}%), {:.1} s",
            self.label,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
    }
}
