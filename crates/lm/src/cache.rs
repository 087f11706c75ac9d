//! The KV cache lives outside the model so that one model serves many independent batches
//! (and beam search can reorder rows) without interior mutability.
//!
//! Layout, chosen for beam search over long prompts with short answers:
//! - the **prefix** is what the first forward (the prefill) computed, `[P, Tp, kv_heads,
//!   head_dim]` per layer. It is never copied: rows that continue the same prompt (the beams of
//!   one prompt) point at one prefix row, so forking a beam costs nothing for the prompt.
//! - the **own** slots are what each row appended since, in buffers `[B, capacity, kv_heads,
//!   head_dim]` preallocated in chunks of [`CHUNK`] tokens and written in place; a decode step
//!   copies only its new token in, and selecting rows copies only these few slots.
//!
//! A forward appends in three phases, so that a failure part-way leaves the cache as it was:
//! `begin` makes room, `append` and `view` write and read one layer at a time, and `commit`
//! advances lengths and masks once every layer is done. Nothing outside this module touches the
//! fields.

use candle_core::{DType, Device, Tensor};

use crate::attention::{Own, Shared};
use crate::error::{LmError, Result};

/// Own slots are allocated this many at a time.
pub const CHUNK: usize = 64;

/// Keys and values `(k, v)` of the same shape.
type Kv = (Tensor, Tensor);

/// Keys and values of one layer.
#[derive(Debug)]
struct LayerKv {
    /// `(k, v)` of the prefill, `[P, Tp, kv_heads, head_dim]` after RoPE.
    prefix: Option<Kv>,
    /// `(k, v)` buffers `[B, capacity, kv_heads, head_dim]`; slots `0..own_len` are filled.
    own: Option<Kv>,
}

/// Keys and values of every layer for a batch of sequences, with which cache slots hold real
/// tokens and the next RoPE position of each sequence.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    /// `[P][Tp]`: prefix slot holds a real (not padding) token.
    prefix_real: Vec<Vec<bool>>,
    /// Prefix row of each sequence.
    rows: Vec<usize>,
    /// `[B][own_len]`: own slot holds a real token.
    own_real: Vec<Vec<bool>>,
    /// Filled own slots (the same for every row).
    own_len: usize,
    /// Next position id per sequence.
    next_pos: Vec<u32>,
}

/// One forward's appends before [`KvCache::commit`]: the prefill's keys and values (collected
/// per layer, to become the prefix) or a decode step's real-token flags of the own slots.
#[derive(Debug)]
pub(crate) struct Append {
    prefill: bool,
    /// New tokens per row.
    t: usize,
    /// `[B][own slots after this step]` for a decode step, `[B][T]` for a prefill.
    own_real: Vec<Vec<bool>>,
    /// `(k, v)` `[B, T, kv_heads, head_dim]` of each layer done so far (prefill only).
    prefix: Vec<Kv>,
}

/// A deep copy of the own slots (they are written in place, so two caches must never share a
/// buffer); the prefix is immutable and shared.
impl Clone for KvCache {
    fn clone(&self) -> Self {
        let all: Vec<usize> = (0..self.batch_size()).collect();
        self.select_rows(&all)
            .expect("selecting every row of a consistent cache")
    }
}

impl KvCache {
    /// An empty cache for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers)
                .map(|_| LayerKv {
                    prefix: None,
                    own: None,
                })
                .collect(),
            prefix_real: Vec::new(),
            rows: Vec::new(),
            own_real: Vec::new(),
            own_len: 0,
            next_pos: Vec::new(),
        }
    }

    /// Number of cached slots per sequence (including padding).
    pub fn len(&self) -> usize {
        self.prefix_real.first().map_or(0, Vec::len) + self.own_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of sequences, 0 before the first forward.
    pub fn batch_size(&self) -> usize {
        self.rows.len()
    }

    /// The next position id of each sequence (its count of real tokens so far).
    pub fn next_positions(&self) -> &[u32] {
        &self.next_pos
    }

    /// A cache holding the given rows in the given order (beam reordering, dropping finished
    /// sequences). Rows may repeat. Only the own slots are copied; the prefix is shared.
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        let b = self.batch_size();
        if let Some(&bad) = rows.iter().find(|&&r| r >= b) {
            return Err(LmError::Input(format!(
                "cache row {bad} out of range for batch size {b}"
            )));
        }
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(LayerKv {
                    prefix: l.prefix.clone(),
                    own: match &l.own {
                        Some((k, v)) => Some((
                            select_slots(k, rows, self.own_len)?,
                            select_slots(v, rows, self.own_len)?,
                        )),
                        None => None,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            prefix_real: self.prefix_real.clone(),
            rows: rows.iter().map(|&r| self.rows[r]).collect(),
            own_real: rows.iter().map(|&r| self.own_real[r].clone()).collect(),
            own_len: self.own_len,
            next_pos: rows.iter().map(|&r| self.next_pos[r]).collect(),
        })
    }

    /// One cache holding the rows of `caches` in order, each fresh from a prefill (no own slots
    /// yet). Shorter prefixes are left-padded with masked slots, so prompts of different lengths
    /// can be prefilled one at a time (no compute spent on padding) and then decoded as one batch
    /// (each weight read once per step for all of them).
    pub fn stack(caches: Vec<KvCache>) -> Result<Self> {
        let Some(first) = caches.first() else {
            return Err(LmError::Input("stacking no caches".into()));
        };
        let num_layers = first.layers.len();
        if let Some(c) = caches
            .iter()
            .find(|c| c.layers.len() != num_layers || c.own_len > 0 || c.is_empty())
        {
            return Err(LmError::Input(format!(
                "stacking needs prefilled caches of {num_layers} layers without decoded tokens; \
                 got {} layers, {} slots, {} decoded",
                c.layers.len(),
                c.len(),
                c.own_len
            )));
        }
        if caches.len() == 1 {
            return Ok(caches.into_iter().next().expect("one cache"));
        }
        let tp = caches.iter().map(KvCache::len).max().unwrap_or(0);
        let mut layers = Vec::with_capacity(num_layers);
        for l in 0..num_layers {
            let mut ks = Vec::with_capacity(caches.len());
            let mut vs = Vec::with_capacity(caches.len());
            for c in &caches {
                let Some((k, v)) = &c.layers[l].prefix else {
                    return Err(LmError::Input(format!("cache layer {l} has no prefix")));
                };
                ks.push(left_pad(k, tp)?);
                vs.push(left_pad(v, tp)?);
            }
            layers.push(LayerKv {
                prefix: Some((Tensor::cat(&ks, 0)?, Tensor::cat(&vs, 0)?)),
                own: None,
            });
        }
        let mut out = KvCache::new(num_layers);
        out.layers = layers;
        for c in caches {
            let base = out.prefix_real.len();
            for real in c.prefix_real {
                let mut row = vec![false; tp - real.len()];
                row.extend(real);
                out.prefix_real.push(row);
            }
            out.rows.extend(c.rows.iter().map(|&r| base + r));
            out.own_real.extend(c.own_real);
            out.next_pos.extend(c.next_pos);
        }
        Ok(out)
    }

    /// A one-row cache holding the first `n` slots of this one, a fresh prefill of one unpadded
    /// sequence: what a prefill of its first `n` tokens would hold, continuing at position `n`.
    /// The slots are views of this cache's prefix (causal attention makes the keys and values of
    /// a token independent of what follows it), so a prefix prefilled once starts every prompt
    /// that begins with any part of it.
    pub fn prefix_of(&self, n: usize) -> Result<Self> {
        let unpadded = self.prefix_real.len() == 1 && self.prefix_real[0].iter().all(|&r| r);
        if self.batch_size() != 1 || self.own_len > 0 || !unpadded {
            return Err(LmError::Input(format!(
                "a cache prefix needs a one-row unpadded prefill without decoded tokens; got {} \
                 rows, {} decoded",
                self.batch_size(),
                self.own_len
            )));
        }
        if n == 0 || n > self.len() {
            return Err(LmError::Input(format!(
                "cache prefix of {n} slots out of 1..={}",
                self.len()
            )));
        }
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let prefix = match &l.prefix {
                    Some((k, v)) => Some((k.narrow(1, 0, n)?, v.narrow(1, 0, n)?)),
                    None => None,
                };
                Ok(LayerKv { prefix, own: None })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            prefix_real: vec![vec![true; n]],
            rows: vec![0],
            own_real: vec![Vec::new()],
            own_len: 0,
            next_pos: vec![n as u32],
        })
    }

    /// The same sequences with each row's decoded slots moved into a prefix row of its own:
    /// a prompt prefilled in two parts (a shared start from [`KvCache::prefix_of`], then its own
    /// tokens) becomes a cache [`KvCache::stack`] accepts, as if it had been prefilled whole.
    /// Copies the keys and values once.
    pub fn into_prefix(self) -> Result<Self> {
        if self.own_len == 0 {
            return Ok(self);
        }
        let len = self.own_len;
        let mut layers = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            let (Some((pk, pv)), Some((ok, ov))) = (&layer.prefix, &layer.own) else {
                return Err(LmError::Input(format!("cache layer {l} is empty")));
            };
            let rows = |p: &Tensor, o: &Tensor| -> Result<Tensor> {
                let parts = self
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(b, &r)| {
                        Ok(Tensor::cat(
                            &[p.narrow(0, r, 1)?, o.narrow(0, b, 1)?.narrow(1, 0, len)?],
                            1,
                        )?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::cat(&parts, 0)?)
            };
            layers.push(LayerKv {
                prefix: Some((rows(pk, ok)?, rows(pv, ov)?)),
                own: None,
            });
        }
        let b = self.batch_size();
        Ok(Self {
            layers,
            prefix_real: self
                .rows
                .iter()
                .zip(&self.own_real)
                .map(|(&r, own)| [self.prefix_real[r].as_slice(), own].concat())
                .collect(),
            rows: (0..b).collect(),
            own_real: vec![Vec::new(); b],
            own_len: 0,
            next_pos: self.next_pos,
        })
    }

    /// Number of layers the cache holds keys and values for.
    pub(crate) fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The position of the first new token of each of `b` rows: 0 for a prefill, the next
    /// position of each sequence afterwards (which must then number `b`).
    pub(crate) fn start_positions(&self, b: usize) -> Result<Vec<u32>> {
        if self.is_empty() {
            return Ok(vec![0; b]);
        }
        if self.batch_size() != b {
            return Err(LmError::Input(format!(
                "batch of {b} rows against a cache of {} rows",
                self.batch_size()
            )));
        }
        Ok(self.next_pos.clone())
    }

    /// Starts a forward of `t` new tokens per row (`real`, `[B][T]`): a prefill on an empty
    /// cache, otherwise a decode step, for which room is made in every layer.
    pub(crate) fn begin(
        &mut self,
        t: usize,
        real: &[Vec<bool>],
        kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Append> {
        if self.is_empty() {
            return Ok(Append {
                prefill: true,
                t,
                own_real: real.to_vec(),
                prefix: Vec::with_capacity(self.layers.len()),
            });
        }
        self.reserve(t, kv_heads, head_dim, dtype, device)?;
        let own_real = self
            .own_real
            .iter()
            .zip(real)
            .map(|(own, new)| [own.as_slice(), new].concat())
            .collect();
        Ok(Append {
            prefill: false,
            t,
            own_real,
            prefix: Vec::new(),
        })
    }

    /// Stores layer `index`'s keys and values of the new tokens, `[B, T, kv_heads, head_dim]`
    /// after RoPE: kept aside by a prefill, written into the own slots by a decode step.
    pub(crate) fn append(
        &self,
        step: &mut Append,
        index: usize,
        k: Tensor,
        v: Tensor,
    ) -> Result<()> {
        if step.prefill {
            step.prefix.push((k, v));
            return Ok(());
        }
        let (_, (ok, ov)) = self.layer(index)?;
        ok.slice_set(&k, 1, self.own_len)?;
        ov.slice_set(&v, 1, self.own_len)?;
        Ok(())
    }

    /// What the new tokens of layer `index` attend to, after [`KvCache::append`]: the shared
    /// prefix (none in a prefill) and each row's own slots up to the new tokens.
    pub(crate) fn view<'a>(
        &'a self,
        step: &'a Append,
        index: usize,
    ) -> Result<(Option<Shared<'a>>, Own<'a>)> {
        if step.prefill {
            let Some((k, v)) = step.prefix.get(index) else {
                return Err(LmError::Input(format!("layer {index} was not appended")));
            };
            let own = Own {
                k,
                v,
                len: step.t,
                real: &step.own_real,
            };
            return Ok((None, own));
        }
        let ((pk, pv), (ok, ov)) = self.layer(index)?;
        let shared = Shared {
            k: pk,
            v: pv,
            rows: &self.rows,
            real: &self.prefix_real,
        };
        let own = Own {
            k: ok,
            v: ov,
            len: self.own_len + step.t,
            real: &step.own_real,
        };
        Ok((Some(shared), own))
    }

    /// Ends a forward begun with [`KvCache::begin`] once every layer is appended: a prefill's
    /// keys and values become the prefix, a decode step's slots count as filled, and each
    /// sequence continues at `next_pos`.
    pub(crate) fn commit(&mut self, step: Append, next_pos: Vec<u32>) {
        if step.prefill {
            let b = step.own_real.len();
            for (slot, kv) in self.layers.iter_mut().zip(step.prefix) {
                slot.prefix = Some(kv);
                slot.own = None;
            }
            self.prefix_real = step.own_real;
            self.rows = (0..b).collect();
            self.own_real = vec![Vec::new(); b];
            self.own_len = 0;
        } else {
            self.own_real = step.own_real;
            self.own_len += step.t;
        }
        self.next_pos = next_pos;
    }

    /// The prefix and own buffers of layer `index` of a prefilled cache with room reserved.
    fn layer(&self, index: usize) -> Result<(&Kv, &Kv)> {
        match self.layers.get(index) {
            Some(LayerKv {
                prefix: Some(prefix),
                own: Some(own),
            }) => Ok((prefix, own)),
            _ => Err(LmError::Input(format!("cache layer {index} is empty"))),
        }
    }

    /// Makes room for `t` more own slots in every layer. Contents and `own_len` are unchanged,
    /// so a forward that fails later leaves the cache as it was.
    fn reserve(
        &mut self,
        t: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<()> {
        let b = self.batch_size();
        let need = self.own_len + t;
        let len = self.own_len;
        for layer in &mut self.layers {
            let cap = layer.own.as_ref().map_or(Ok(0), |(k, _)| k.dim(1))?;
            if need <= cap {
                continue;
            }
            let new_cap = need.div_ceil(CHUNK) * CHUNK;
            let grow = |old: Option<&Tensor>| -> Result<Tensor> {
                let buf = Tensor::zeros((b, new_cap, kv_heads, head_dim), dtype, device)?;
                if let Some(old) = old.filter(|_| len > 0) {
                    buf.slice_set(&old.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
                }
                Ok(buf)
            };
            let k = grow(layer.own.as_ref().map(|(k, _)| k))?;
            let v = grow(layer.own.as_ref().map(|(_, v)| v))?;
            layer.own = Some((k, v));
        }
        Ok(())
    }
}

/// Rows `rows` of the first `len` slots of a `[B, capacity, kv, D]` buffer, in a fresh buffer
/// of the same capacity (so the copy can be appended to in place).
fn select_slots(buf: &Tensor, rows: &[usize], len: usize) -> Result<Tensor> {
    let (_, cap, kv, d) = buf.dims4()?;
    let out = Tensor::zeros((rows.len(), cap, kv, d), buf.dtype(), buf.device())?;
    if len > 0 && !rows.is_empty() {
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::new(idx.as_slice(), buf.device())?;
        let picked = buf.narrow(1, 0, len)?.contiguous()?.index_select(&idx, 0)?;
        out.slice_set(&picked, 1, 0)?;
    }
    Ok(out)
}

/// `[P, T, kv, D]` left-padded with zeros to `[P, len, kv, D]`.
fn left_pad(x: &Tensor, len: usize) -> Result<Tensor> {
    let (p, t, kv, d) = x.dims4()?;
    if t == len {
        return Ok(x.clone());
    }
    let pad = Tensor::zeros((p, len - t, kv, d), x.dtype(), x.device())?;
    Ok(Tensor::cat(&[&pad, x], 1)?)
}
