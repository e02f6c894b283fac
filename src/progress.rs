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
    Lines(Mutex<Box<dyn Write + Send>>),
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
            Mode::Lines(Mutex::new(Box::new(std::io::stderr())))
        };
        Progress::with_mode(mode, label, total)
    }

    fn with_mode(mode: Mode, label: String, total: usize) -> Progress {
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
            Mode::Lines(_) => {
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
            Mode::Lines(_) => {
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
        let Mode::Lines(out) = &self.mode else { return };
        let pct = (done * 100).checked_div(self.total).unwrap_or(100);
        let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
        // A failed write to stderr must not fail the job it reports on.
        let _ = writeln!(
            out,
            "[sparkbook] {}: {done}/{} partitions ({pct}%), {:.1} s",
            self.label,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(total: usize) -> (Progress, Shared) {
        let out = Shared::default();
        let mode = Mode::Lines(Mutex::new(Box::new(out.clone())));
        (Progress::with_mode(mode, "job 7 (map)".into(), total), out)
    }

    fn text(out: &Shared) -> String {
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn quick_jobs_print_nothing() {
        let (progress, out) = lines(4);
        (0..4).for_each(|_| progress.tick());
        progress.finish();
        assert_eq!(text(&out), "");
    }

    #[test]
    fn slow_jobs_print_periodic_lines_and_a_last_one() {
        let (progress, out) = lines(3);
        std::thread::sleep(LINE_EVERY + Duration::from_millis(50));
        progress.tick(); // due: first line
        progress.tick(); // within a second of the last line: silent
        progress.tick(); // the last partition: left to `finish`
        progress.finish();
        let text = text(&out);
        let printed: Vec<&str> = text.lines().collect();
        assert_eq!(printed.len(), 2, "{text}");
        assert!(
            printed[0].starts_with("[sparkbook] job 7 (map): 1/3 partitions (33%)"),
            "{text}"
        );
        assert!(
            printed[1].starts_with("[sparkbook] job 7 (map): 3/3 partitions (100%)"),
            "{text}"
        );
    }
}
