//! The portable attention: candle tensor ops that run on every device, one block of queries of
//! every head at a time, with the same flash-style backward as the CPU kernel (probabilities
//! recomputed from the kept log-sum-exp). Split from the CPU kernel because the two share only the
//! shapes ([`super::Dims`]) and the mask.

use super::*;

/// The portable ops. Query heads are viewed as `[b, hkv, group, t, d]`, so one block of queries of
/// every head is a batched matmul against its kv head's keys.
pub(super) struct Portable<'m> {
    dims: Dims,
    causal: &'m Tensor,
    keys: &'m Tensor,
    block: usize,
}

impl<'m> Portable<'m> {
    pub(super) fn new(dims: Dims, mask: &'m AttentionMask) -> Result<Self> {
        let Some((causal, keys)) = &mask.additive else {
            return Err(KernelError::Invalid {
                op: OP,
                message: "the mask was built for the CPU kernels; build it with Backend::Portable"
                    .into(),
            }
            .into());
        };
        let per_query = (dims.b * dims.hq * dims.t).max(1);
        let block = (PORTABLE_SCORES / per_query).clamp(1, PORTABLE_BLOCK);
        Ok(Self {
            dims,
            causal,
            keys,
            block,
        })
    }

    /// Query blocks `(i0, rows)`.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.dims.t)
            .step_by(self.block)
            .map(|i0| (i0, self.block.min(self.dims.t - i0)))
    }

    /// `[b, hq, t, x]` (or `[b, hq, t]`) viewed as `[b, hkv, group, t, x]` in `dtype`.
    fn grouped(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        let Dims { b, hkv, t, .. } = self.dims;
        let last = x.elem_count() / (b * self.dims.hq * t).max(1);
        x.to_dtype(dtype)?
            .reshape((b, hkv, self.dims.group(), t, last))
    }

    /// Rows `i0..i0 + n` of a grouped tensor as `[b, hkv, group * n, x]`.
    fn rows(&self, x: &Tensor, i0: usize, n: usize) -> Result<Tensor> {
        let Dims { b, hkv, .. } = self.dims;
        let last = x.dim(4)?;
        x.narrow(3, i0, n)?
            .contiguous()?
            .reshape((b, hkv, self.dims.group() * n, last))
    }

    /// Scaled, masked scores of query rows `qb` (`[b, hkv, group * n, d]`, from `i0`) against
    /// keys `0..i0 + n`: `[b, hkv, group * n, i0 + n]`.
    fn scores(&self, qb: &Tensor, k: &Tensor, i0: usize, n: usize) -> Result<Tensor> {
        let Dims { b, hkv, .. } = self.dims;
        let i1 = i0 + n;
        let dtype = qb.dtype();
        let kb = k.narrow(2, 0, i1)?;
        let causal = self
            .causal
            .narrow(0, i0, n)?
            .narrow(1, 0, i1)?
            .to_dtype(dtype)?;
        let keys = self
            .keys
            .narrow(1, 0, i1)?
            .to_dtype(dtype)?
            .reshape((b, 1, 1, 1, i1))?;
        (qb.matmul(&kb.t()?)? * self.dims.scale())?
            .reshape((b, hkv, self.dims.group(), n, i1))?
            .broadcast_add(&causal)?
            .broadcast_add(&keys)?
            .reshape((b, hkv, self.dims.group() * n, i1))
    }

    pub(super) fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let Dims { b, hq, t, d, .. } = self.dims;
        let dtype = backend::reduce_dtype(q.dtype());
        let (qg, k, v) = (
            self.grouped(q, dtype)?,
            k.to_dtype(dtype)?,
            v.to_dtype(dtype)?,
        );
        let mut outs = Vec::new();
        let mut lses = Vec::new();
        for (i0, n) in self.blocks() {
            let s = self.scores(&self.rows(&qg, i0, n)?, &k, i0, n)?;
            // A row whose keys are all masked has maximum -inf: shift it by a finite value so
            // its exponentials are 0, not NaN; its sum is 0, its output 0, its lse -inf.
            let m = s.max_keepdim(D::Minus1)?.maximum(backend::lowest(dtype))?;
            let e = s.broadcast_sub(&m)?.exp()?;
            let sum = e.sum_keepdim(D::Minus1)?;
            let p = e.broadcast_div(&sum.maximum(f64::from(f32::MIN_POSITIVE))?)?;
            let o = p.matmul(&v.narrow(2, 0, i0 + n)?)?;
            outs.push(o.reshape((b, self.dims.hkv, self.dims.group(), n, d))?);
            lses.push((m + sum.log()?)?.reshape((b, self.dims.hkv, self.dims.group(), n))?);
        }
        let out = Tensor::cat(&outs, 3)?
            .reshape((b, hq, t, d))?
            .to_dtype(q.dtype())?;
        let lse = Tensor::cat(&lses, 3)?.reshape((b, hq, t))?;
        Ok((out, lse))
    }

    pub(super) fn backward(&self, saved: Saved) -> Result<Grads3> {
        let [q, k, v, out, lse, grad] = &saved.detached();
        let Dims { b, hq, hkv, t, d } = self.dims;
        let dtype = backend::reduce_dtype(q.dtype());
        let scale = self.dims.scale();
        let qg = self.grouped(q, dtype)?;
        let og = self.grouped(out, dtype)?;
        let gg = self.grouped(grad, dtype)?;
        // lse is -inf where every key is masked; a finite floor keeps exp(s - lse) at 0 there.
        let lg = self.grouped(&lse.maximum(backend::lowest(lse.dtype()))?, dtype)?;
        let (k, v) = (k.to_dtype(dtype)?, v.to_dtype(dtype)?);
        let mut dk = Tensor::zeros((b, hkv, t, d), dtype, q.device())?;
        let mut dv = Tensor::zeros((b, hkv, t, d), dtype, q.device())?;
        let mut dqs = Vec::new();
        for (i0, n) in self.blocks() {
            let i1 = i0 + n;
            let (kb, vb) = (k.narrow(2, 0, i1)?, v.narrow(2, 0, i1)?);
            let qb = self.rows(&qg, i0, n)?;
            let gb = self.rows(&gg, i0, n)?;
            let ob = self.rows(&og, i0, n)?;
            let lb = self.rows(&lg, i0, n)?;
            let p = self.scores(&qb, &k, i0, n)?.broadcast_sub(&lb)?.exp()?;
            // dv += p^T do (the matmul sums the query heads of a kv head)
            let dv_b = p.t()?.matmul(&gb)?;
            // ds = p * (do v^T - <do, o>)
            let delta = (&gb * &ob)?.sum_keepdim(D::Minus1)?;
            let ds = (p * gb.matmul(&vb.t()?)?.broadcast_sub(&delta)?)?;
            // dq = scale * ds k ; dk += scale * ds^T q
            let dq_b = (ds.matmul(&kb)? * scale)?;
            let dk_b = (ds.t()?.matmul(&qb)? * scale)?;
            dk = (dk + dk_b.pad_with_zeros(2, 0, t - i1)?)?;
            dv = (dv + dv_b.pad_with_zeros(2, 0, t - i1)?)?;
            dqs.push(dq_b.reshape((b, hkv, self.dims.group(), n, d))?);
        }
        let dq = Tensor::cat(&dqs, 3)?.reshape((b, hq, t, d))?;
        Ok((
            dq.to_dtype(q.dtype())?,
            dk.to_dtype(q.dtype())?,
            dv.to_dtype(q.dtype())?,
        ))
    }
}
