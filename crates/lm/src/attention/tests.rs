//! The CPU kernel against the stock-op path, and the stock-op path against itself.

use super::flash::attend_cpu;
use super::*;
use crate::test_tensors::{max_diff, pattern};
use candle_core::Device;

/// Queries, keys and values in [-2, 2).
fn tensor(shape: &[usize], seed: usize) -> Tensor {
    pattern(shape, seed, 2.0)
}

/// Like [`tensor`] but aperiodic (a hash of the index, not a pattern repeating every 1,000
/// elements), so that later key tiles raise the running max and the rescaling is exercised.
fn noise(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n as u64)
        .map(|i| {
            let mut z = i
                .wrapping_add(seed as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z ^= z >> 29;
            (z >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

const HEADS: Heads = Heads {
    q: 4,
    kv: 2,
    dim: 8,
};

/// The CPU kernel's and the stock ops' outputs for one call.
fn both_backends(
    q: &Tensor,
    shared: Option<&Shared<'_>>,
    own: &Own<'_>,
    heads: Heads,
) -> (Tensor, Tensor) {
    let call = Call {
        q,
        shared,
        own,
        heads,
    };
    (attend_cpu(&call).unwrap(), attend_ops(&call).unwrap())
}

/// Own keys and values filling every slot, the queries' own (no shared prefix); `real` per row.
fn unshared<'a>(k: &'a Tensor, v: &'a Tensor, real: &'a [Vec<bool>]) -> Own<'a> {
    Own {
        k,
        v,
        len: real[0].len(),
        real,
    }
}

/// Largest difference between the CPU kernel and the stock ops on a fresh causal prefill of
/// `q` against its own unpadded keys and values (every row `T` real slots, no shared prefix).
fn fresh_prefill_diff(q: &Tensor, k: &Tensor, v: &Tensor, heads: Heads) -> f32 {
    let (b, t) = (q.dim(0).unwrap(), q.dim(1).unwrap());
    let real = vec![vec![true; t]; b];
    let (fast, slow) = both_backends(q, None, &unshared(k, v, &real), heads);
    max_diff(&fast, &slow)
}

/// A long causal prefill (several query blocks, the last one partial) through the public
/// entry point equals the stock-op path, and so does one whose rows carry left padding (the
/// per-slot mask instead of the causal tail alone).
#[test]
fn long_prefill_equals_the_stock_ops() {
    let t = 4 * BLOCK + 7;
    let q = tensor(&[1, t, 4, 8], 11);
    let k = tensor(&[1, t, 2, 8], 12);
    let v = tensor(&[1, t, 2, 8], 13);
    let entry = causal_prefill(&q, &k, &v).unwrap();
    let real = vec![vec![true; t]];
    let (fast, slow) = both_backends(&q, None, &unshared(&k, &v, &real), HEADS);
    assert_eq!(
        max_diff(&entry, &fast),
        0.0,
        "the public entry runs the CPU kernel"
    );
    assert!(max_diff(&fast, &slow) < 1e-5);

    let mut padded = vec![false; 70];
    padded.extend(vec![true; t - 70]);
    let real = vec![padded];
    let (fast, slow) = both_backends(&q, None, &unshared(&k, &v, &real), HEADS);
    // Padding queries see no key: zeros here, an average there; compare the real ones.
    let real_rows = |x: &Tensor| x.narrow(1, 70, t - 70).unwrap();
    assert!(max_diff(&real_rows(&fast), &real_rows(&slow)) < 1e-5);
}

/// Head layouts the kernel groups differently: one query head per kv head (kv == q), three
/// (SmolLM2), and all query heads on one kv head.
const LAYOUTS: [Heads; 4] = [
    Heads {
        q: 4,
        kv: 4,
        dim: 8,
    },
    Heads {
        q: 6,
        kv: 2,
        dim: 8,
    },
    Heads {
        q: 9,
        kv: 3,
        dim: 16,
    },
    Heads {
        q: 3,
        kv: 1,
        dim: 8,
    },
];

/// Causal prefills at lengths below, at and past the query block and the key tile (several
/// key tiles, a partial last block and tile) equal the stock ops for every head layout.
#[test]
fn prefill_equals_the_stock_ops_for_every_length_and_head_layout() {
    for (n, heads) in LAYOUTS.into_iter().enumerate() {
        for t in [1, 5, BLOCK, BLOCK + 1, KEYS + BLOCK + 3, 2 * KEYS + 1] {
            let q = noise(&[2, t, heads.q, heads.dim], 10 + n);
            let k = noise(&[2, t, heads.kv, heads.dim], 20 + n);
            let v = noise(&[2, t, heads.kv, heads.dim], 30 + n);
            let diff = fresh_prefill_diff(&q, &k, &v, heads);
            assert!(diff < 1e-5, "{heads:?}, {t} tokens: differs by {diff}");
        }
    }
}

/// Continuations against a shared prefix of several key tiles, with beams mapped onto two
/// prefix rows, padding in the prefix and in the own slots, a buffer larger than its filled
/// slots, one new token (decode) and a block of new tokens, for every head layout.
#[test]
fn shared_prefix_and_padding_equal_the_stock_ops() {
    let tp = KEYS + 37;
    for (n, heads) in LAYOUTS.into_iter().enumerate() {
        let (kv, d) = (heads.kv, heads.dim);
        let pk = noise(&[2, tp, kv, d], 40 + n);
        let pv = noise(&[2, tp, kv, d], 50 + n);
        let mut padded_row = vec![false; 9];
        padded_row.resize(tp, true);
        let prefix_real = vec![vec![true; tp], padded_row];
        let shared = Shared {
            k: &pk,
            v: &pv,
            rows: &[1, 0, 1],
            real: &prefix_real,
        };
        for (len, t) in [(1, 1), (5, 1), (BLOCK + 6, BLOCK + 2)] {
            let ok = noise(&[3, len + 3, kv, d], 60 + n);
            let ov = noise(&[3, len + 3, kv, d], 70 + n);
            let mut gap = vec![true; len];
            gap[0] = false;
            let own_real = vec![vec![true; len], gap, vec![true; len]];
            let own = Own {
                k: &ok,
                v: &ov,
                len,
                real: &own_real,
            };
            let q = noise(&[3, t, heads.q, d], 80 + n);
            let (fast, slow) = both_backends(&q, Some(&shared), &own, heads);
            let diff = max_diff(&fast, &slow);
            assert!(diff < 1e-5, "{heads:?}, {len} own slots, {t} new: {diff}");
        }
    }
}

/// The stock-op path other devices and dtypes take equals the CPU kernel: a prefill longer
/// than one block, and a continuation against a shared, partly padded prefix with rows
/// mapped onto it and a buffer larger than its filled slots.
#[test]
fn stock_op_fallback_equals_the_cpu_kernel() {
    let t = BLOCK + 9;
    let q = tensor(&[2, t, 4, 8], 1);
    let k = tensor(&[2, t, 2, 8], 2);
    let v = tensor(&[2, t, 2, 8], 3);
    assert!(fresh_prefill_diff(&q, &k, &v, HEADS) < 1e-5);

    let (pk, pv) = (tensor(&[1, 6, 2, 8], 4), tensor(&[1, 6, 2, 8], 5));
    let prefix_real = vec![vec![false, false, true, true, true, true]];
    let shared = Shared {
        k: &pk,
        v: &pv,
        rows: &[0, 0, 0],
        real: &prefix_real,
    };
    let (ok, ov) = (tensor(&[3, 7, 2, 8], 6), tensor(&[3, 7, 2, 8], 7));
    let own_real = vec![vec![true; 4], vec![true, false, true, true], vec![true; 4]];
    let own = Own {
        k: &ok,
        v: &ov,
        len: 4,
        real: &own_real,
    };
    let q = tensor(&[3, 2, 4, 8], 8);
    let (fast, slow) = both_backends(&q, Some(&shared), &own, HEADS);
    assert!(max_diff(&fast, &slow) < 1e-5);
}
