//! How much memory a job may use (`$DINO_SAE_MEMORY_BUDGET`, else a share of the available memory) and which
//! attention path the device runs, which decides what the encoder holds at once. Layer 0: the model, the checkpoint
//! parsers and the preflight estimates all take a [`Budget`]; only the front ends read it from the environment.

use std::sync::OnceLock;

use burn::tensor::Device;

use crate::error::{EngineError, Result};

/// Whether the engine's CPU fast paths are used: the host paths of `model::host` and the algebraically equivalent
/// forms in `model::nn` (1x1 convolution as a matrix product, folded upsample-convolution). `DINO_SAE_PLAIN_OPS=1`
/// turns them all off, for A/B benchmarks and parity checks.
pub fn fast_paths() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("DINO_SAE_PLAIN_OPS").as_deref() != Ok("1"))
}

/// Whether f32 tensors on `device` take the host paths (and attention the fused op): the CPU device without
/// autodiff, with the fast paths on.
pub fn fused_on(device: &Device) -> bool {
    static FLEX: OnceLock<Device> = OnceLock::new();
    fast_paths() && !device.is_autodiff() && device == FLEX.get_or_init(Device::flex)
}

/// How the encoder's attention holds its scores: at camera-photo token counts this decides its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attention {
    /// burn's fused attention (the CPU inference path, `model::host::attention`): a bounded score block per thread.
    Fused,
    /// matmul, softmax, matmul (wgpu, autodiff, `DINO_SAE_PLAIN_OPS=1`): every score matrix alive at once.
    Materialised,
}

impl Attention {
    /// The path `model::host::attention` takes for tensors on `device` (the fused op where [`fused_on`]).
    pub fn on(device: &burn::tensor::Device) -> Self {
        if fused_on(device) { Self::Fused } else { Self::Materialised }
    }

    /// The CPU device's path (what a budget assumes until it is told the device).
    pub fn cpu() -> Self {
        Self::on(&crate::cpu())
    }
}

/// How much memory jobs may use, and on which attention path they run.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub bytes: u64,
    /// Where the number came from (for messages).
    pub source: String,
    /// The attention path of the device the jobs run on (the CPU's unless [`Budget::on`] says otherwise).
    pub attention: Attention,
}

impl Budget {
    pub fn bytes(bytes: u64) -> Self {
        Self { bytes, source: "set".into(), attention: Attention::cpu() }
    }

    /// The same budget for jobs on `device` (its attention path: a GPU materialises the scores).
    pub fn on(mut self, device: &burn::tensor::Device) -> Self {
        self.attention = Attention::on(device);
        self
    }

    /// `$DINO_SAE_MEMORY_BUDGET` (`8GiB`, `512MiB`, `2000000000`, or a fraction of the available memory such as
    /// `0.5`), else 60 % of the memory available now (`MemAvailable`), else 4 GiB where that is unknown.
    pub fn from_env() -> Self {
        match std::env::var("DINO_SAE_MEMORY_BUDGET") {
            Ok(s) if !s.trim().is_empty() => match Self::parse(&s) {
                Ok(b) => b,
                Err(_) => Self::default_budget(),
            },
            _ => Self::default_budget(),
        }
    }

    fn default_budget() -> Self {
        match available_bytes() {
            Some(a) => Self { source: "60 % of the available memory".into(), ..Self::bytes((a as f64 * 0.6) as u64) },
            None => Self { source: "4 GiB (available memory unknown)".into(), ..Self::bytes(4 << 30) },
        }
    }

    /// Parse a budget: a byte count with an optional unit (`KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`, `K`, `M`, `G`),
    /// or a fraction in (0, 1] of the memory available now.
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim();
        let bad =
            || EngineError::Config(format!("memory budget {t:?}: expected e.g. 8GiB, 512MiB or a fraction like 0.5"));
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let v: f64 = num.parse().map_err(|_| bad())?;
        if !v.is_finite() || v <= 0.0 {
            return Err(bad());
        }
        let mul = match unit.trim().to_ascii_lowercase().as_str() {
            "" if v <= 1.0 => {
                let a = available_bytes().ok_or_else(|| {
                    EngineError::Config("memory budget as a fraction: available memory unknown".into())
                })?;
                return Ok(Self {
                    source: format!("{:.0} % of the available memory", v * 100.0),
                    ..Self::bytes((a as f64 * v) as u64)
                });
            }
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "kib" => 1024.0,
            "m" | "mb" => 1e6,
            "mib" => 1024.0 * 1024.0,
            "g" | "gb" => 1e9,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(bad()),
        };
        Ok(Self { source: format!("DINO_SAE_MEMORY_BUDGET={t}"), ..Self::bytes((v * mul) as u64) })
    }
}

/// `MemAvailable` of /proc/meminfo, bytes.
pub fn available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
