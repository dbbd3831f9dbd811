//! Progress of long commands: a bar (indicatif) when stderr is a terminal, plain lines otherwise (logs, pipes,
//! tests). The engine reports progress through callbacks; this only draws it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// One task of `total` units (steps, tiles, photos, timing passes).
pub struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    total: u64,
    /// Plain mode: at most one line per `every` (the last unit always prints).
    every: Duration,
    last_line: Option<Instant>,
}

impl Progress {
    /// A bar on a terminal; else a plain line per update.
    pub fn new(what: impl Into<String>, total: usize) -> Self {
        Self::with_rate(what, total, Duration::ZERO)
    }

    /// As [`Progress::new`], with plain lines at most once per `every`.
    pub fn with_rate(what: impl Into<String>, total: usize, every: Duration) -> Self {
        let what = what.into();
        let total = total as u64;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            let style = ProgressStyle::with_template("{prefix} [{bar:32}] {pos}/{len} {msg} [{elapsed}]")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b.set_prefix(what.clone());
            b
        });
        Self { bar, what, total, every, last_line: None }
    }

    /// A bar on a terminal and nothing otherwise (for work whose result line follows at once).
    pub fn terminal_only(what: impl Into<String>, total: usize) -> Self {
        Self::with_rate(what, total, Duration::MAX)
    }

    /// `done` of the total units are finished; `msg` says more (shown beside the bar, or on the plain line).
    pub fn set(&mut self, done: usize, msg: &str) {
        let done = done as u64;
        match &self.bar {
            Some(b) => {
                b.set_position(done);
                b.set_message(msg.to_string());
            }
            None => {
                let due = self.every != Duration::MAX
                    && (self.last_line.is_none_or(|t| t.elapsed() >= self.every) || done >= self.total);
                if due {
                    self.last_line = Some(Instant::now());
                    let pct = 100.0 * done as f64 / self.total.max(1) as f64;
                    let sep = if msg.is_empty() { "" } else { ", " };
                    eprintln!("{} {done}/{} ({pct:.0} %){sep}{msg}", self.what, self.total);
                }
            }
        }
    }

    /// A line of log above the bar (or just the line).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Leave the bar where it is (done); what is printed next starts on the next line.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish();
            eprintln!();
        }
    }

    /// Remove the bar (its result is printed next).
    pub fn clear(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
