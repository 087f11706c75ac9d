//! Projection layers: a frozen base (dense tensor or quantised matrix), an optional bias and an
//! optional LoRA pair whose `Var`s are the only trainable state in the model.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor, Var};

use crate::error::{LmError, Result};

/// In-situ weight quantisation applied at load (inference only: `QMatMul` has no backward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    Q8_0,
    Q4_0,
    Q4K,
}

impl Quantization {
    fn ggml(self) -> GgmlDType {
        match self {
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4K => GgmlDType::Q4K,
        }
    }
}

impl std::str::FromStr for Quantization {
    type Err = LmError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Self::Q8_0),
            "q4_0" => Ok(Self::Q4_0),
            "q4_k" | "q4k" => Ok(Self::Q4K),
            _ => Err(LmError::Input(format!(
                "unknown quantisation {s:?} (q8_0, q4_0, q4_k)"
            ))),
        }
    }
}

/// Frozen base weight `[out, in]`.
#[derive(Debug, Clone)]
pub enum BaseWeight {
    Dense(Tensor),
    Quantized(QMatMul),
}

/// A LoRA pair: `y += scale * dropout(x) A^T B^T`, `A: [r, in]`, `B: [out, r]`, in
/// [`crate::lora::adapter_dtype`] of the base (f32 under a bf16 base): the rank-r path runs in
/// the adapter's dtype and its result is cast to the base's.
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
    pub dropout: f32,
    /// True while `scale * B A` is folded into the dense base weight.
    pub merged: bool,
}

/// A projection as used in attention and MLP blocks.
#[derive(Debug, Clone)]
pub struct Linear {
    pub base: BaseWeight,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraPair>,
    in_dim: usize,
    out_dim: usize,
}

/// Up to this many rows go through [`crate::fused::skinny_matmul`] in inference: one row is
/// already a fast matrix-vector product in `gemm`, and past about 16 rows `gemm`'s blocked kernel
/// wins again (see `bench/run.sh`, decode with 5 rows).
const SKINNY_ROWS: usize = 16;

/// Applies `x [.., in] @ w^T` with candle's batched-matmul broadcasting rules.
fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let y = match x.dims() {
        [b1, b2, _, _] => x.matmul(&w.broadcast_left((*b1, *b2))?.t()?)?,
        [b, _, _] => x.matmul(&w.broadcast_left(*b)?.t()?)?,
        _ => x.matmul(&w.t()?)?,
    };
    Ok(y)
}

impl Linear {
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        Ok(Self {
            base: BaseWeight::Dense(weight),
            bias,
            lora: None,
            in_dim,
            out_dim,
        })
    }

    /// Quantises `weight` (f32 on its device) into a `QMatMul`; `name` only labels errors.
    pub fn quantized(
        weight: &Tensor,
        bias: Option<Tensor>,
        q: Quantization,
        name: &str,
    ) -> Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let block = q.ggml().block_size();
        if !in_dim.is_multiple_of(block) {
            return Err(LmError::Quantize {
                name: name.to_string(),
                dtype: format!("{q:?}"),
                message: format!(
                    "input width {in_dim} is not a multiple of the block size {block}"
                ),
            });
        }
        let qt = QTensor::quantize(&weight.to_dtype(DType::F32)?, q.ggml())?;
        Ok(Self {
            base: BaseWeight::Quantized(QMatMul::from_qtensor(qt)?),
            bias,
            lora: None,
            in_dim,
            out_dim,
        })
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Forward pass; `train` enables LoRA dropout. Gradients flow into the LoRA vars and into
    /// `x` (dense base only); the base weight is a plain tensor and gets none.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = match &self.base {
            BaseWeight::Dense(w) => matmul_t(x, w)?,
            BaseWeight::Quantized(q) => {
                let dtype = x.dtype();
                q.forward(&x.to_dtype(DType::F32)?)?.to_dtype(dtype)?
            }
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(l) = &self.lora {
            if !l.merged {
                let xin = if train && l.dropout > 0.0 {
                    candle_nn::ops::dropout(x, l.dropout)?
                } else {
                    x.clone()
                };
                let xin = xin.to_dtype(l.a.dtype())?;
                let h = matmul_t(&xin, l.a.as_tensor())?;
                let d = matmul_t(&h, l.b.as_tensor())?;
                let d = (d * l.scale)?.to_dtype(y.dtype())?;
                y = (y + d)?;
            }
        }
        Ok(y)
    }

    /// Inference forward (no dropout, no gradients needed): all leading dimensions are folded
    /// into one so each weight is read once per call, not once per batch row as a batched matmul
    /// against a broadcast weight does. Same values as [`Linear::forward`] with `train = false`.
    pub fn forward_inference(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let Some((&inner, lead)) = dims.split_last() else {
            return self.forward(x, false);
        };
        if lead.len() < 2 {
            return match lead.len() {
                1 => self.forward_rows(x),
                _ => self.forward(x, false),
            };
        }
        let rows: usize = lead.iter().product();
        let flat = x.contiguous()?.reshape((rows, inner))?;
        let y = self.forward_rows(&flat)?;
        let mut out = lead.to_vec();
        out.push(self.out_dim);
        Ok(y.reshape(out)?)
    }

    /// [`Linear::forward_inference`] of a `[rows, in]` matrix: a few rows against a dense weight
    /// (decode steps) take [`crate::fused::skinny_matmul`], the rest the stock path.
    fn forward_rows(&self, x: &Tensor) -> Result<Tensor> {
        let plain = self.lora.as_ref().is_none_or(|l| l.merged);
        let (rows, _) = x.dims2()?;
        if let (BaseWeight::Dense(w), true) = (&self.base, plain) {
            if (2..=SKINNY_ROWS).contains(&rows) {
                if let Some(y) = crate::fused::skinny_matmul(x, w)? {
                    return Ok(match &self.bias {
                        Some(b) => y.broadcast_add(b)?,
                        None => y,
                    });
                }
            }
        }
        self.forward(x, false)
    }

    /// `scale * B A`, the dense update the LoRA pair stands for.
    fn lora_delta(l: &LoraPair, dtype: DType) -> Result<Tensor> {
        let d = l.b.as_tensor().matmul(l.a.as_tensor())?;
        Ok((d * l.scale)?.to_dtype(dtype)?)
    }

    /// Folds the LoRA update into the dense base weight; the forward then skips the LoRA path.
    pub fn merge(&mut self, name: &str) -> Result<()> {
        self.fold_lora(name, true)
    }

    /// Subtracts a merged LoRA update again, restoring the base weight (up to rounding).
    pub fn unmerge(&mut self, name: &str) -> Result<()> {
        self.fold_lora(name, false)
    }

    /// Adds (`merge`) or subtracts the LoRA update to / from the dense base weight, refusing a
    /// second merge, an unmerge of an unmerged update and quantised weights.
    fn fold_lora(&mut self, name: &str, merge: bool) -> Result<()> {
        let Some(l) = &mut self.lora else {
            return Ok(());
        };
        if l.merged == merge {
            let state = if merge {
                "already merged"
            } else {
                "not merged"
            };
            return Err(LmError::Lora(format!("{name}: {state}")));
        }
        let BaseWeight::Dense(w) = &mut self.base else {
            let why = if merge {
                "cannot merge into a quantised weight"
            } else {
                "quantised weights are never merged"
            };
            return Err(LmError::Lora(format!("{name}: {why}")));
        };
        let delta = Self::lora_delta(l, w.dtype())?;
        *w = if merge {
            (&*w + delta)?
        } else {
            (&*w - delta)?
        };
        l.merged = merge;
        Ok(())
    }
}
