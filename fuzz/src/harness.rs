//! The harness: a target (seeds, mutator, runner, memory cap), one case under `catch_unwind` and the memory
//! check, a bounded or timed campaign, corpus replay and crash files.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::panic::catch_unwind;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use crate::counting::{counting, peak, reset_peak};
use crate::mutate::Rng;
use engine::error::Result;

pub(super) type Mutator = Box<dyn Fn(&mut Rng, &[u8], &[Vec<u8>]) -> Vec<u8> + Send + Sync>;
pub(super) type Runner = Box<dyn Fn(&[u8]) -> Result<()> + Send + Sync>;

/// One parser under test.
pub struct Target {
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    pub(super) mutate: Mutator,
    pub(super) run: Runner,
    /// Memory cap of one case: bytes allocated at its peak, given the input length.
    pub(super) cap: fn(usize) -> usize,
}

impl Target {
    /// A target from its parts (the harness's own tests build failing ones).
    pub fn new(
        name: &'static str,
        seeds: Vec<Vec<u8>>,
        mutate: impl Fn(&mut Rng, &[u8], &[Vec<u8>]) -> Vec<u8> + Send + Sync + 'static,
        run: impl Fn(&[u8]) -> Result<()> + Send + Sync + 'static,
        cap: fn(usize) -> usize,
    ) -> Self {
        Self { name, seeds, mutate: Box::new(mutate), run: Box::new(run), cap }
    }
    pub fn mutate(&self, r: &mut Rng, data: &[u8]) -> Vec<u8> {
        (self.mutate)(r, data, &self.seeds)
    }
    /// Run one input (panics propagate; see [`run_case`]).
    pub fn run(&self, data: &[u8]) -> Result<()> {
        (self.run)(data)
    }
    pub fn cap(&self, len: usize) -> usize {
        (self.cap)(len)
    }
}

/// What one case did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Accepted,
    Refused(String),
    /// A panic (message and where).
    Panic(String),
    /// The case's allocation peak went over the cap (bytes, cap).
    Memory(usize, usize),
}

impl Outcome {
    pub fn is_crash(&self) -> bool {
        matches!(self, Outcome::Panic(_) | Outcome::Memory(..))
    }
}

thread_local! {
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(super) static HOOKED: std::sync::Once = std::sync::Once::new();

/// Install (once per process) a panic hook that, inside a fuzz case, records where the panic happened instead
/// of printing it; other panics (a failing test) go to the previous hook.
pub fn quiet_panics() {
    HOOKED.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(|c| c.get()) {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                PANIC_AT.with(|p| *p.borrow_mut() = Some(at));
            } else {
                prev(info);
            }
        }));
    });
}

/// Run one input of `t` under `catch_unwind` and the memory check.
pub fn run_case(t: &Target, data: &[u8]) -> Outcome {
    let base = reset_peak();
    PANIC_AT.with(|p| *p.borrow_mut() = None);
    IN_CASE.with(|c| c.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| t.run(data)));
    IN_CASE.with(|c| c.set(false));
    let used = peak().saturating_sub(base);
    match r {
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            let at = PANIC_AT.with(|p| p.borrow_mut().take()).unwrap_or_default();
            Outcome::Panic(format!("{msg} at {at}"))
        }
        Ok(_) if counting() && used > t.cap(data.len()) => Outcome::Memory(used, t.cap(data.len())),
        Ok(Ok(())) => Outcome::Accepted,
        Ok(Err(e)) => Outcome::Refused(e.to_string()),
    }
}

/// Counts of a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub cases: usize,
    pub accepted: usize,
    pub refused: usize,
    pub crashes: Vec<(Outcome, Vec<u8>)>,
    pub slowest: Duration,
    pub peak_bytes: usize,
}

/// Fuzz `t` for `cases` cases or until `until`, whichever comes first, from `seed`: each case mutates a seed
/// or an earlier accepted/refused input (a small pool of recent inputs) 1-3 times. Crashes are kept (at most
/// 20, with their input).
pub fn fuzz(t: &Target, seed: u64, cases: usize, until: Option<Instant>, mut on_case: impl FnMut(&[u8])) -> Stats {
    let mut r = Rng::new(seed);
    let mut st = Stats::default();
    let mut pool: Vec<Vec<u8>> = t.seeds.clone();
    for i in 0..cases {
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        let base = if r.chance(0.6) || pool.len() <= t.seeds.len() {
            r.pick(&t.seeds).clone()
        } else {
            r.pick(&pool[t.seeds.len()..]).clone()
        };
        let mut input = t.mutate(&mut r, &base);
        if r.chance(0.3) {
            input = t.mutate(&mut r, &input);
        }
        if input.len() > 64 << 20 {
            input.truncate(64 << 20);
        }
        on_case(&input);
        let t0 = Instant::now();
        let before = reset_peak();
        let out = run_case(t, &input);
        st.peak_bytes = st.peak_bytes.max(peak().saturating_sub(before));
        st.slowest = st.slowest.max(t0.elapsed());
        st.cases += 1;
        match &out {
            Outcome::Accepted => st.accepted += 1,
            Outcome::Refused(_) => st.refused += 1,
            _ => {
                if st.crashes.len() < 20 {
                    st.crashes.push((out.clone(), input.clone()));
                }
            }
        }
        if !out.is_crash() && input.len() < (4 << 20) {
            if pool.len() < t.seeds.len() + 64 {
                pool.push(input);
            } else {
                let k = t.seeds.len() + i % 64;
                pool[k] = input;
            }
        }
    }
    st
}

/// Replay every file of `dir` (a corpus of former crashes) through `t`: (file, outcome).
pub fn replay_dir(t: &Target, dir: &Path) -> Vec<(PathBuf, Outcome)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.') && !n.ends_with(".md")))
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_default();
            let o = run_case(t, &b);
            (p, o)
        })
        .collect()
}

/// Save a crash input to `dir/<name>` (name from a hash of the bytes); returns the path.
pub fn save_crash(dir: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let p = dir.join(format!("crash-{h:016x}.bin"));
    std::fs::write(&p, data)?;
    Ok(p)
}
