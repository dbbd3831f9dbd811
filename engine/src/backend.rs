//! Which device the engine computes on: burn's Flex CPU backend, or burn's wgpu backend on a GPU.
//!
//! `Auto` takes wgpu only when a real GPU adapter (discrete or integrated) exists: a software adapter such as
//! Mesa's lavapipe is correct but about 30x slower than Flex, so it is used only when asked for (`Wgpu`).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::{EngineError, Result};

/// What the user asked for (`--backend auto|cpu|wgpu`, `DINO_SAE_BACKEND`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    #[default]
    Auto,
    Cpu,
    Wgpu,
}

impl FromStr for BackendChoice {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "cpu" | "flex" => Ok(Self::Cpu),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            other => Err(EngineError::Config(format!("unknown backend {other:?} (auto, cpu, wgpu)"))),
        }
    }
}

impl BackendChoice {
    /// `DINO_SAE_BACKEND` if set and valid, else `Auto`.
    pub fn from_env() -> Self {
        std::env::var("DINO_SAE_BACKEND").ok().and_then(|s| s.parse().ok()).unwrap_or_default()
    }
}

/// A wgpu adapter as the engine sees it.
#[derive(Clone, Debug)]
pub struct Adapter {
    pub name: String,
    pub api: String,
    /// "DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Cpu" or "Other".
    pub kind: String,
}

impl Adapter {
    pub fn is_hardware(&self) -> bool {
        self.kind == "DiscreteGpu" || self.kind == "IntegratedGpu"
    }
}

/// Every wgpu adapter this machine offers (empty when none, or when wgpu cannot start).
pub fn adapters() -> Vec<Adapter> {
    use burn::tensor::wgpu::wgpu;
    // Enumerating must never take the app down: a broken driver is "no adapter".
    std::panic::catch_unwind(|| {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let list = pollster_block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        list.iter()
            .map(|a| {
                let i = a.get_info();
                Adapter { name: i.name.clone(), api: format!("{:?}", i.backend), kind: format!("{:?}", i.device_type) }
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The device a choice resolves to, and how to describe it to a user.
#[derive(Clone, Debug)]
pub struct Backend {
    pub device: Device,
    /// e.g. "CPU (burn Flex, 2 threads)" or "wgpu: NVIDIA ... (Vulkan, DiscreteGpu)".
    pub name: String,
    pub is_wgpu: bool,
}

impl Backend {
    pub fn cpu() -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self { device: crate::cpu(), name: format!("CPU (burn Flex, {threads} threads)"), is_wgpu: false }
    }

    /// Resolve a choice. `Wgpu` fails with a clear error when no adapter exists; `Auto` never fails.
    pub fn select(choice: BackendChoice) -> Result<Self> {
        use burn::tensor::DeviceKind;
        match choice {
            BackendChoice::Cpu => Ok(Self::cpu()),
            BackendChoice::Auto => {
                let all = adapters();
                let pick = |kind: &str| all.iter().find(|a| a.kind == kind);
                if let Some(a) = pick("DiscreteGpu") {
                    Ok(Self::wgpu(DeviceKind::DiscreteGpu(0), a))
                } else if let Some(a) = pick("IntegratedGpu") {
                    Ok(Self::wgpu(DeviceKind::IntegratedGpu(0), a))
                } else {
                    let mut b = Self::cpu();
                    if let Some(a) = all.first() {
                        b.name.push_str(&format!(
                            "; software adapter {} not used (choosing wgpu explicitly forces it)",
                            a.name
                        ));
                    }
                    Ok(b)
                }
            }
            BackendChoice::Wgpu => {
                let all = adapters();
                let a = all.iter().find(|a| a.is_hardware()).or_else(|| all.first()).ok_or_else(|| {
                    EngineError::Config("backend wgpu asked for, but no wgpu adapter exists on this machine".into())
                })?;
                let kind = match a.kind.as_str() {
                    "DiscreteGpu" => DeviceKind::DiscreteGpu(0),
                    "IntegratedGpu" => DeviceKind::IntegratedGpu(0),
                    "VirtualGpu" => DeviceKind::VirtualGpu(0),
                    "Cpu" => DeviceKind::Cpu,
                    _ => DeviceKind::DefaultDevice,
                };
                Ok(Self::wgpu(kind, a))
            }
        }
    }

    fn wgpu(kind: burn::tensor::DeviceKind, a: &Adapter) -> Self {
        Self { device: Device::wgpu(kind), name: format!("wgpu: {} ({}, {})", a.name, a.api, a.kind), is_wgpu: true }
    }

    /// The name without what depends on the machine (thread count, adapter, software fallbacks):
    /// "CPU (burn Flex)" or "wgpu". For pictures that must be the same on every machine (UI snapshots).
    pub fn generic_name(&self) -> &'static str {
        if self.is_wgpu { "wgpu" } else { "CPU (burn Flex)" }
    }

    /// Short label for logs and JSON (`flex-cpu`, `wgpu`).
    pub fn tag(&self) -> &'static str {
        if self.is_wgpu { "wgpu" } else { "flex-cpu" }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Drives the one future above to completion (wgpu's enumeration resolves at once on native targets).
fn pollster_block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}
