//! Inference attention over the KV cache, without backward (the reference forward in
//! `model/reference.rs` is the training oracle).
//!
//! Keys and values are read where the cache keeps them: a prefix shared by every row that
//! continues the same prompt (beams of one prompt attend to one copy of its prefill) and the
//! tokens each row appended since. Nothing is gathered, repeated per query head or concatenated.
//! On the CPU in f32 attention is flash-style: one task per block of [`BLOCK`] query tokens and
//! kv head takes the query heads sharing that kv head as one operand (each key tile is packed
//! once for all of them) and walks tiles of [`KEYS`] keys up to the block's end with a running
//! max and sum per query, so the masked half of a prefill is skipped, only tiles crossing the
//! diagonal are masked, and no score matrix larger than one tile exists. Other devices and
//! dtypes take the same math through stock candle ops.

mod flash;
#[cfg(test)]
mod tests;

use candle_core::{DType, Tensor};

use crate::error::{LmError, Result};
use crate::mask::MASKED;

use flash::attend_cpu;

/// Query tokens per task.
const BLOCK: usize = 64;

/// Key slots per tile: the `[BLOCK * group, KEYS]` scores of a tile stay in L2.
const KEYS: usize = 256;

/// Head layout shared by every tensor of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub q: usize,
    pub kv: usize,
    pub dim: usize,
}

/// Keys and values shared by rows: `k`, `v` `[P, Tp, kv_heads, head_dim]`, row `b` reading prefix
/// row `rows[b]`; `real[p][j]` says whether slot `j` of prefix `p` holds a real token.
pub(crate) struct Shared<'a> {
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub rows: &'a [usize],
    pub real: &'a [Vec<bool>],
}

/// Keys and values of each row after the shared prefix: `k`, `v` `[B, capacity, kv_heads,
/// head_dim]` of which the first `len` slots are filled, the last `T` being the queries' own.
pub(crate) struct Own<'a> {
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub len: usize,
    pub real: &'a [Vec<bool>],
}

/// `softmax(q k^T / sqrt(d) + mask) v` for `q` `[B, T, q_heads, head_dim]` (contiguous, after
/// RoPE) against the shared prefix (all of it visible) and each row's own slots (causal).
/// Returns `[B, T, q_heads * head_dim]`. A query that sees no real key gets zeros on the fast path
/// and a uniform average on the fallback (only padding queries, whose outputs are never used).
pub(crate) fn attend(
    q: &Tensor,
    shared: Option<&Shared<'_>>,
    own: &Own<'_>,
    heads: Heads,
) -> Result<Tensor> {
    let call = Call {
        q,
        shared,
        own,
        heads,
    };
    call.check()?;
    if q.device().is_cpu() && q.dtype() == DType::F32 {
        attend_cpu(&call)
    } else {
        attend_ops(&call)
    }
}

/// The operands of one [`attend`] call, checked against each other once before either backend
/// (the CPU kernel or the stock ops) reads them.
struct Call<'a> {
    q: &'a Tensor,
    shared: Option<&'a Shared<'a>>,
    own: &'a Own<'a>,
    heads: Heads,
}

/// Causal self-attention of a fresh prefill: `q` `[B, T, q_heads, head_dim]`, `k`, `v` `[B, T,
/// kv_heads, head_dim]` (after RoPE, unpadded), giving `[B, T, q_heads * head_dim]`. The kernel
/// the inference forward runs on its first call, exposed so that benchmarks can time attention
/// apart from the projections.
pub fn causal_prefill(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, t, hq, d) = q.dims4()?;
    let kv = k.dim(2)?;
    let real = vec![vec![true; t]; b];
    let own = Own {
        k,
        v,
        len: t,
        real: &real,
    };
    attend(q, None, &own, Heads { q: hq, kv, dim: d })
}

impl Call<'_> {
    fn check(&self) -> Result<()> {
        let Self {
            q,
            shared,
            own,
            heads,
        } = self;
        let (b, t, hq, d) = q.dims4()?;
        let bad = |what: &str| Err(LmError::Input(format!("attention: {what}")));
        if hq != heads.q || d != heads.dim || heads.kv == 0 || !hq.is_multiple_of(heads.kv) {
            return bad("query heads do not match the model");
        }
        let (ob, cap, okv, od) = own.k.dims4()?;
        if ob != b || okv != heads.kv || od != d || own.v.dims() != own.k.dims() {
            return bad("own keys / values do not match the queries");
        }
        if own.len < t || own.len > cap || own.real.len() != b {
            return bad("own slots do not hold the queries");
        }
        if let Some(s) = shared {
            let (p, _, skv, sd) = s.k.dims4()?;
            if skv != heads.kv || sd != d || s.v.dims() != s.k.dims() || s.real.len() != p {
                return bad("shared keys / values do not match the queries");
            }
            if s.rows.len() != b || s.rows.iter().any(|&r| r >= p) {
                return bad("row map does not match the shared prefix");
            }
        }
        Ok(())
    }
}

/// Stock-op attention for devices and dtypes the CPU kernel does not cover: gathers each row's
/// keys (prefix rows, then own slots) and applies an additive mask, with scores in f32.
fn attend_ops(call: &Call<'_>) -> Result<Tensor> {
    let (q, shared, own, heads) = (call.q, call.shared, call.own, call.heads);
    let (b, t, hq, d) = q.dims4()?;
    let dev = q.device();
    let in_dtype = q.dtype();
    let mut ks = Vec::new();
    let mut vs = Vec::new();
    let mut real: Vec<Vec<bool>> = vec![Vec::new(); b];
    if let Some(s) = shared {
        let idx: Vec<u32> = s.rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::new(idx.as_slice(), dev)?;
        ks.push(s.k.index_select(&idx, 0)?);
        vs.push(s.v.index_select(&idx, 0)?);
        for (r, &p) in real.iter_mut().zip(s.rows) {
            r.extend_from_slice(&s.real[p]);
        }
    }
    ks.push(own.k.narrow(1, 0, own.len)?);
    vs.push(own.v.narrow(1, 0, own.len)?);
    for (r, o) in real.iter_mut().zip(own.real) {
        r.extend_from_slice(&o[..own.len]);
    }
    // [B, Tkv, kv, D] -> [B, kv, Tkv, D] in f32.
    let kv_heads = |parts: &[Tensor]| -> Result<Tensor> {
        Ok(Tensor::cat(parts, 1)?
            .transpose(1, 2)?
            .to_dtype(DType::F32)?
            .contiguous()?)
    };
    let k = kv_heads(&ks)?;
    let v = kv_heads(&vs)?;
    let tkv = k.dim(2)?;
    let n_rep = hq / heads.kv;
    let first = own.len - t;
    let tp = tkv - own.len;
    let mut mask = Vec::with_capacity(b * t * tkv);
    for row in &real {
        for i in 0..t {
            for (j, &r) in row.iter().enumerate() {
                let visible = r && (j < tp || j - tp <= first + i);
                mask.push(if visible { 0.0 } else { MASKED });
            }
        }
    }
    let mask = Tensor::from_vec(mask, (b, 1, 1, t, tkv), dev)?;
    let q = q.transpose(1, 2)?.to_dtype(DType::F32)?.contiguous()?;
    let qg = q.reshape((b, heads.kv, n_rep * t, d))?;
    let scale = 1.0 / (d as f64).sqrt();
    let scores = (qg.matmul(&k.t()?)? * scale)?
        .reshape((b, heads.kv, n_rep, t, tkv))?
        .broadcast_add(&mask)?;
    let probs =
        candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, heads.kv, n_rep * t, tkv))?;
    let y = probs.matmul(&v)?.to_dtype(in_dtype)?;
    Ok(y.reshape((b, hq, t, d))?
        .transpose(1, 2)?
        .reshape((b, t, hq * d))?
        .contiguous()?)
}
