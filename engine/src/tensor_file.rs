//! Host-side tensors: what checkpoints, fixtures and latents files hold before they reach a device.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::error::{EngineError, Result};

/// A dense row-major f32 tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Named host tensors, sorted by name.
pub type TensorMap = BTreeMap<String, RawTensor>;

impl RawTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(data.len()) {
            let n = n.map(|n| n.to_string()).unwrap_or_else(|| "more than usize::MAX".into());
            return Err(EngineError::Shape(format!("shape {shape:?} needs {n} values, got {}", data.len())));
        }
        Ok(Self { shape, data })
    }

    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Self { shape, data: vec![0.0; n] }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    /// Upload to `device` as a rank-`D` tensor. Fails if the rank differs.
    pub fn to_tensor<const D: usize>(&self, device: &Device) -> Result<Tensor<D>> {
        if self.shape.len() != D {
            return Err(EngineError::Shape(format!("expected rank {D}, got shape {:?}", self.shape)));
        }
        Ok(Tensor::from_data(TensorData::new(self.data.clone(), self.shape.clone()), device))
    }

    /// Download a device tensor.
    pub fn from_tensor<const D: usize>(t: Tensor<D>) -> Result<Self> {
        let shape = t.dims().to_vec();
        Self::new(shape, host_vec(t)?)
    }

    /// Same values with a new shape of equal size.
    pub fn reshaped(mut self, shape: Vec<usize>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.data.len() {
            return Err(EngineError::Shape(format!("cannot reshape {:?} to {shape:?}", self.shape)));
        }
        self.shape = shape;
        Ok(self)
    }

    /// Transpose of a rank-2 tensor (torch Linear [out,in] -> burn [in,out]).
    pub fn transposed2(&self) -> Result<Self> {
        if self.shape.len() != 2 {
            return Err(EngineError::Shape(format!("transpose needs rank 2, got {:?}", self.shape)));
        }
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        Ok(Self { shape: vec![c, r], data: out })
    }

    /// Rows `[start, end)` along dim 0.
    pub fn rows(&self, start: usize, end: usize) -> Result<Self> {
        let d0 = *self.shape.first().ok_or_else(|| EngineError::Shape("scalar has no rows".into()))?;
        if start > end || end > d0 {
            return Err(EngineError::Shape(format!("rows {start}..{end} out of 0..{d0}")));
        }
        let inner: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Ok(Self { shape, data: self.data[start * inner..end * inner].to_vec() })
    }

    /// Concatenate along dim 0.
    pub fn cat_rows(parts: &[&RawTensor]) -> Result<Self> {
        let first = parts.first().ok_or_else(|| EngineError::Shape("nothing to concatenate".into()))?;
        let mut shape = first.shape.clone();
        let mut data = Vec::new();
        shape[0] = 0;
        for p in parts {
            if p.shape[1..] != first.shape[1..] {
                return Err(EngineError::Shape(format!("cannot concatenate {:?} and {:?}", first.shape, p.shape)));
            }
            shape[0] += p.shape[0];
            data.extend_from_slice(&p.data);
        }
        Ok(Self { shape, data })
    }

    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}")
}

/// Convert one safetensors view to f32 (F32, F16, BF16, F64, integer and bool types).
fn view_to_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    macro_rules! conv {
        ($t:ty, $n:expr, $f:expr) => {
            bytes.chunks_exact($n).map(|c| $f(<$t>::from_le_bytes(c.try_into().expect("chunk size"))) as f32).collect()
        };
    }
    Ok(match dtype {
        Dtype::F32 => conv!(f32, 4, |v| v),
        Dtype::F64 => conv!(f64, 8, |v| v),
        Dtype::F16 => conv!(u16, 2, |v| half::f16::from_bits(v).to_f32()),
        Dtype::BF16 => conv!(u16, 2, |v| half::bf16::from_bits(v).to_f32()),
        Dtype::I64 => conv!(i64, 8, |v| v),
        Dtype::I32 => conv!(i32, 4, |v| v),
        Dtype::I16 => conv!(i16, 2, |v| v),
        Dtype::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
        Dtype::U8 | Dtype::BOOL => bytes.iter().map(|&b| b as f32).collect(),
        other => {
            return Err(EngineError::Checkpoint(format!("tensor {name}: unsupported dtype {}", dtype_name(other))));
        }
    })
}

/// Parse safetensors bytes into f32 host tensors.
pub fn safetensors_from_bytes(bytes: &[u8]) -> Result<TensorMap> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| EngineError::Checkpoint(format!("not a valid safetensors file ({e})")))?;
    let mut out = TensorMap::new();
    for (name, view) in st.tensors() {
        let data = view_to_f32(&name, view.dtype(), view.data())?;
        out.insert(name.clone(), RawTensor::new(view.shape().to_vec(), data)?);
    }
    Ok(out)
}

/// Read a safetensors file into f32 host tensors.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<TensorMap> {
    let bytes = std::fs::read(path.as_ref()).map_err(|e| EngineError::io(&path, e))?;
    safetensors_from_bytes(&bytes)
}

/// A latent file's `latent` tensor as `[B, C, h, w]` (a `[C, h, w]` tensor gets a batch of 1), checked: present,
/// rank 3 or 4, no empty side, `channels` channels (when given), finite. Only that tensor is converted.
pub fn latent_from_bytes(bytes: &[u8], channels: Option<usize>) -> Result<RawTensor> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| EngineError::Data(format!("not a latent file: not valid safetensors ({e})")))?;
    let v = st.tensor("latent").map_err(|_| EngineError::Data("latent file has no `latent` tensor".into()))?;
    let mut shape = v.shape().to_vec();
    if shape.len() == 3 {
        shape.insert(0, 1);
    }
    if shape.len() != 4 || shape.contains(&0) {
        return Err(EngineError::Shape(format!(
            "latent must be [B, C, h, w] (or [C, h, w]) with no empty side, got {:?}",
            v.shape()
        )));
    }
    if let Some(c) = channels
        && shape[1] != c
    {
        return Err(EngineError::Shape(format!("latent has {} channels, this model's decoder takes {c}", shape[1])));
    }
    let t = RawTensor::new(shape, view_to_f32("latent", v.dtype(), v.data())?)?;
    if !t.is_finite() {
        return Err(EngineError::NonFinite("latent".into()));
    }
    Ok(t)
}

/// Read a latent file (see [`latent_from_bytes`]).
pub fn read_latent(path: impl AsRef<Path>, channels: usize) -> Result<RawTensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    latent_from_bytes(&bytes, Some(channels)).map_err(|e| EngineError::Data(format!("{}: {e}", path.display())))
}

/// Read one tensor of a safetensors file as f64 (for float64 references).
pub fn read_safetensors_f64(path: impl AsRef<Path>, key: &str) -> Result<(Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path.as_ref()).map_err(|e| EngineError::io(&path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| EngineError::Checkpoint(format!("not a valid safetensors file ({e})")))?;
    let v = st.tensor(key).map_err(|_| EngineError::Checkpoint(format!("no tensor {key}")))?;
    let data: Vec<f64> = match v.dtype() {
        Dtype::F64 => v.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8"))).collect(),
        d => view_to_f32(key, d, v.data())?.into_iter().map(f64::from).collect(),
    };
    Ok((v.shape().to_vec(), data))
}

/// Storage precision when writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
}

/// Write tensors (and string metadata) as safetensors, atomically: a temp file renamed into place,
/// so a crash never leaves a half-written file under the final name.
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &TensorMap,
    metadata: &BTreeMap<String, String>,
    precision: Precision,
) -> Result<()> {
    let path = path.as_ref();
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| {
            let bytes = match precision {
                Precision::F32 => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Precision::F16 => t.data.iter().flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes()).collect(),
            };
            (k.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let dtype = match precision {
        Precision::F32 => Dtype::F32,
        Precision::F16 => Dtype::F16,
    };
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bufs
        .iter()
        .map(|(k, s, b)| {
            safetensors::tensor::TensorView::new(dtype, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| EngineError::Data(format!("{k}: {e}")))
        })
        .collect::<Result<_>>()?;
    let meta: std::collections::HashMap<String, String> = metadata.clone().into_iter().collect();
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| EngineError::Data(e.to_string()))?;
    atomic_write(path, &bytes)
}

/// A device tensor's values as f32 on the host (any dtype converted), row-major.
pub fn host_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| EngineError::Data(format!("{e:?}")))
}

/// Write `v` as pretty JSON to `path`, atomically ([`atomic_write`]).
pub fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| EngineError::Config(e.to_string()))?;
    atomic_write(path, s.as_bytes())
}

/// Read a JSON file; a parse error names the file.
pub fn read_json<T: for<'de> serde::Deserialize<'de>>(path: &Path) -> Result<T> {
    let s = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    serde_json::from_str(&s).map_err(|e| EngineError::Config(format!("{}: {e}", path.display())))
}

/// Write bytes to `path` via a temporary sibling and a rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| EngineError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        EngineError::io(path, e)
    })
}

/// Remove what a killed writer leaves behind in `dir`: `.X.tmp` folders (`train::RunDir::checkpoint_tmp`) and
/// `.X.tmpPID` files ([`atomic_write`]).
pub fn remove_stale_tmp(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') && name.contains(".tmp") {
                let p = e.path();
                if p.is_dir() {
                    let _ = std::fs::remove_dir_all(&p);
                } else {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }
}
