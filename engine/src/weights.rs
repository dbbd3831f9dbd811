//! Building modules from named weights, with a report of what was missing, unexpected or mis-shaped.
//!
//! One code path builds a module from a checkpoint or from random initialisation: the module asks for
//! each parameter by its internal name and shape; the source answers from the file, or draws it.

use std::collections::BTreeSet;

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::error::{EngineError, Result};
use crate::tensor_file::{RawTensor, TensorMap};

/// How a parameter is initialised when it is drawn rather than loaded.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    Zeros,
    Ones,
    Const(f32),
    /// U(-b, b) with b = 1/sqrt(fan_in) (PyTorch's default for Linear and Conv).
    FanIn(usize),
    Normal(f32),
}

/// What loading found. A model is only usable when `is_complete()`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    pub loaded: Vec<String>,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// key, expected shape, found shape
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    pub non_finite: Vec<String>,
    /// Keys of the source that are known to be unused at inference (training-only buffers).
    pub ignored: Vec<String>,
    /// True when parameters were drawn at random on purpose.
    pub random: bool,
    /// Keys initialised at random because the source lacked them (training initialisation only).
    pub drawn: Vec<String>,
}

impl LoadReport {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty() && self.non_finite.is_empty()
    }

    /// Human-readable summary (at most `max` names per list).
    pub fn summary(&self, max: usize) -> String {
        let mut s = format!(
            "loaded {} tensors; missing {}; unexpected {}; mismatched {}; non-finite {}; ignored {}{}",
            self.loaded.len(),
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len(),
            self.non_finite.len(),
            self.ignored.len(),
            if self.random { " (RANDOM weights)" } else { "" }
        );
        let mut list = |title: &str, items: Vec<String>| {
            if !items.is_empty() {
                s.push_str(&format!("\n  {title}:"));
                for it in items.iter().take(max) {
                    s.push_str(&format!("\n    {it}"));
                }
                if items.len() > max {
                    s.push_str(&format!("\n    ... and {} more", items.len() - max));
                }
            }
        };
        list("missing", self.missing.clone());
        list(
            "mismatched (key: expected vs found)",
            self.mismatched.iter().map(|(k, e, f)| format!("{k}: {e:?} vs {f:?}")).collect(),
        );
        list("non-finite", self.non_finite.clone());
        list("unexpected", self.unexpected.clone());
        s
    }

    /// Err unless complete (or random on purpose).
    pub fn check(&self) -> Result<()> {
        if self.random || self.is_complete() { Ok(()) } else { Err(EngineError::IncompleteWeights(self.summary(12))) }
    }
}

enum Mode {
    File(TensorMap),
    Random(StdRng),
    /// Serve from the map; draw what is missing (recorded in `LoadReport::drawn`), for initialising training.
    FileOrInit(TensorMap, StdRng),
}

/// Hands out parameters by name. See the module docs.
pub struct WeightSource {
    mode: Mode,
    device: Device,
    used: BTreeSet<String>,
    report: LoadReport,
    names: ParamNames,
}

/// Parameter id -> (internal key, stored transposed as burn [in, out]).
pub type ParamNames = HashMap<ParamId, (String, bool)>;

impl WeightSource {
    /// Serve parameters from a name -> tensor map (already in internal naming).
    pub fn from_map(map: TensorMap, device: &Device) -> Self {
        Self {
            mode: Mode::File(map),
            device: device.clone(),
            used: BTreeSet::new(),
            report: LoadReport::default(),
            names: ParamNames::new(),
        }
    }

    /// Serve what `map` holds and draw the rest (e.g. a new stem and decoder around pretrained blocks).
    pub fn from_map_or_init(map: TensorMap, seed: u64, device: &Device) -> Self {
        Self {
            mode: Mode::FileOrInit(map, StdRng::seed_from_u64(seed)),
            device: device.clone(),
            used: BTreeSet::new(),
            report: LoadReport::default(),
            names: ParamNames::new(),
        }
    }

    /// Draw every parameter at random (seeded). The report says so.
    pub fn random(seed: u64, device: &Device) -> Self {
        let report = LoadReport { random: true, ..Default::default() };
        Self {
            mode: Mode::Random(StdRng::seed_from_u64(seed)),
            device: device.clone(),
            used: BTreeSet::new(),
            report,
            names: ParamNames::new(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn is_random(&self) -> bool {
        matches!(self.mode, Mode::Random(_))
    }

    /// True if the source holds `key` (random sources hold everything).
    pub fn contains(&self, key: &str) -> bool {
        match &self.mode {
            Mode::File(m) | Mode::FileOrInit(m, _) => m.contains_key(key),
            Mode::Random(_) => true,
        }
    }

    /// Values the source holds, for a source that serves only from its map (None: random or drawing sources).
    pub fn source_numel(&self) -> Option<usize> {
        match &self.mode {
            Mode::File(m) => Some(m.values().map(RawTensor::numel).sum()),
            _ => None,
        }
    }

    /// Shape of `key` in the source, if present.
    pub fn shape_of(&self, key: &str) -> Option<Vec<usize>> {
        match &self.mode {
            Mode::File(m) | Mode::FileOrInit(m, _) => m.get(key).map(|t| t.shape.clone()),
            Mode::Random(_) => None,
        }
    }

    /// Fetch a host tensor of exactly `shape`; on absence or mismatch, record it and return the drawn/zero value.
    pub fn raw(&mut self, key: &str, shape: &[usize], init: Init) -> RawTensor {
        let n: usize = shape.iter().product();
        match &mut self.mode {
            Mode::Random(rng) => RawTensor { shape: shape.to_vec(), data: draw(rng, n, init) },
            Mode::FileOrInit(map, rng) => {
                self.used.insert(key.to_string());
                match map.get(key) {
                    Some(t) if t.shape == shape => {
                        self.report.loaded.push(key.to_string());
                        t.clone()
                    }
                    Some(t) => {
                        self.report.mismatched.push((key.to_string(), shape.to_vec(), t.shape.clone()));
                        RawTensor::zeros(shape.to_vec())
                    }
                    None => {
                        self.report.drawn.push(key.to_string());
                        RawTensor { shape: shape.to_vec(), data: draw(rng, n, init) }
                    }
                }
            }
            Mode::File(map) => {
                self.used.insert(key.to_string());
                match map.get(key) {
                    None => {
                        self.report.missing.push(key.to_string());
                        RawTensor::zeros(shape.to_vec())
                    }
                    Some(t) if t.shape != shape => {
                        // Accept a layout with the same values but extra unit dims (e.g. (1,C,1,1) vs (C)).
                        if t.numel() == n && squeeze(&t.shape) == squeeze(shape) {
                            self.report.loaded.push(key.to_string());
                            RawTensor { shape: shape.to_vec(), data: t.data.clone() }
                        } else {
                            self.report.mismatched.push((key.to_string(), shape.to_vec(), t.shape.clone()));
                            RawTensor::zeros(shape.to_vec())
                        }
                    }
                    Some(t) => {
                        if !t.is_finite() {
                            self.report.non_finite.push(key.to_string());
                        }
                        self.report.loaded.push(key.to_string());
                        t.clone()
                    }
                }
            }
        }
    }

    /// A parameter of rank `D`.
    pub fn param<const D: usize>(&mut self, key: &str, shape: [usize; D], init: Init) -> Param<Tensor<D>> {
        let raw = self.raw(key, &shape, init);
        let p = Param::from_tensor(Tensor::from_data(TensorData::new(raw.data, raw.shape), &self.device));
        self.names.insert(p.id, (key.to_string(), false));
        p
    }

    /// A torch-layout Linear weight [out, in], returned as burn layout [in, out].
    pub fn linear_weight(&mut self, key: &str, d_in: usize, d_out: usize) -> Param<Tensor<2>> {
        let raw = self.raw(key, &[d_out, d_in], Init::FanIn(d_in));
        let t = raw.transposed2().expect("rank 2 by construction");
        let p = Param::from_tensor(Tensor::from_data(TensorData::new(t.data, t.shape), &self.device));
        self.names.insert(p.id, (key.to_string(), true));
        p
    }

    /// The names handed out so far (to save the module back under the same keys).
    pub fn names(&self) -> ParamNames {
        self.names.clone()
    }

    /// Finish: unused source keys become `unexpected`.
    pub fn finish(mut self) -> LoadReport {
        if let Mode::File(map) | Mode::FileOrInit(map, _) = &self.mode {
            self.report.unexpected = map.keys().filter(|k| !self.used.contains(*k)).cloned().collect();
        }
        self.report
    }
}

fn squeeze(s: &[usize]) -> Vec<usize> {
    s.iter().copied().filter(|&d| d != 1).collect()
}

fn draw(rng: &mut StdRng, n: usize, init: Init) -> Vec<f32> {
    match init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Const(c) => vec![c; n],
        Init::FanIn(fan_in) => {
            let b = 1.0 / (fan_in.max(1) as f32).sqrt();
            (0..n).map(|_| rng.random_range(-b..b)).collect()
        }
        Init::Normal(std) => (0..n)
            .map(|_| {
                // Box-Muller
                let u1: f32 = rng.random_range(f32::EPSILON..1.0);
                let u2: f32 = rng.random();
                std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
            })
            .collect(),
    }
}

struct Exporter<'a> {
    names: &'a ParamNames,
    out: TensorMap,
    error: Option<EngineError>,
}

impl ModuleVisitor for Exporter<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some((key, transposed)) = self.names.get(&param.id) else { return };
        let raw = RawTensor::from_tensor(param.val()).and_then(|r| if *transposed { r.transposed2() } else { Ok(r) });
        match raw {
            Ok(r) => {
                self.out.insert(key.clone(), r);
            }
            Err(e) => self.error = Some(e),
        }
    }
}

/// Export a module's parameters under the internal names they were loaded with.
pub fn export<M: Module>(module: &M, names: &ParamNames) -> Result<TensorMap> {
    let mut ex = Exporter { names, out: TensorMap::new(), error: None };
    module.visit(&mut ex);
    match ex.error {
        Some(e) => Err(e),
        None => Ok(ex.out),
    }
}
