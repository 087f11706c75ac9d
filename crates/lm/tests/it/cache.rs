//! The inference forward's KV cache: prefills longer than one attention block, continuations of
//! several tokens, growth past the preallocated chunk, beam-style forking after decoding, and
//! clones that do not share the slots written in place. Every logit is checked against the
//! reference forward on the whole sequence.

use candle_core::{Device, IndexOp, Tensor};
use lm::{LogitPositions, Model};

use crate::common::{ids, max_diff, tiny_model};

const TOL: f32 = 1e-4;

/// Deterministic token ids in the tiny vocabulary (97), avoiding 0 (used as padding).
fn tokens(seed: u32, n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| 1 + (i * 31 + seed * 17) % 96)
        .collect()
}

fn reference_last(model: &Model, seq: &[u32]) -> Tensor {
    model
        .forward_reference(&ids(&[seq]), None, &LogitPositions::Last, false)
        .expect("reference")
        .i(0)
        .expect("row")
}

/// One decode step of one token per row.
fn step(model: &Model, cache: &mut lm::KvCache, toks: &[u32]) -> Tensor {
    let x = Tensor::from_vec(toks.to_vec(), (toks.len(), 1), &Device::Cpu).expect("ids");
    model
        .forward(&x, None, cache, &LogitPositions::Last)
        .expect("decode")
}

/// A left-padded batch longer than the attention block (64 queries), then a three-token
/// continuation per row, then single-token steps past the first cache chunk.
#[test]
fn long_prefill_multi_token_continuation_and_growth_match_reference() {
    let (_dir, model) = tiny_model("llama", 21);
    let long = tokens(1, 150);
    let short = tokens(2, 137);
    let pad = long.len() - short.len();
    let padded: Vec<u32> = std::iter::repeat_n(0, pad).chain(short.clone()).collect();
    let mask: Vec<u32> = std::iter::repeat_n(0, pad)
        .chain(std::iter::repeat_n(1, short.len()))
        .collect();
    let mut cache = model.new_cache();
    let all = model
        .forward(
            &ids(&[&long, &padded]),
            Some(&ids(&[&vec![1; long.len()], &mask])),
            &mut cache,
            &LogitPositions::All,
        )
        .expect("prefill");
    for (row, (seq, start)) in [(&long, 0), (&short, pad)].into_iter().enumerate() {
        let want = model
            .forward_reference(&ids(&[seq]), None, &LogitPositions::All, false)
            .expect("reference");
        let got = all.i((row, start..)).expect("rows");
        let d = max_diff(&got, &want.i(0).expect("row"));
        assert!(d < TOL, "row {row}: prefill differs by {d}");
    }

    let mut seqs = [long, short];
    let cont = [[5u32, 6, 7], [8, 9, 10]];
    let got = model
        .forward(
            &ids(&[&cont[0], &cont[1]]),
            None,
            &mut cache,
            &LogitPositions::All,
        )
        .expect("continuation");
    for (row, seq) in seqs.iter_mut().enumerate() {
        for (i, &tok) in cont[row].iter().enumerate() {
            seq.push(tok);
            let d = max_diff(&got.i((row, i)).unwrap(), &reference_last(&model, seq));
            assert!(d < TOL, "row {row} continuation token {i} differs by {d}");
        }
    }

    for n in 0..lm::cache::CHUNK + 2 {
        let toks = [11 + (n % 80) as u32, 13 + (n % 70) as u32];
        let got = step(&model, &mut cache, &toks);
        seqs[0].push(toks[0]);
        seqs[1].push(toks[1]);
        if n == 0 || n == lm::cache::CHUNK - 4 || n == lm::cache::CHUNK + 1 {
            for (row, seq) in seqs.iter().enumerate() {
                let d = max_diff(&got.i(row).unwrap(), &reference_last(&model, seq));
                assert!(d < TOL, "row {row} step {n} differs by {d}");
            }
        }
    }
    assert_eq!(cache.len(), 150 + 3 + lm::cache::CHUNK + 2);
}

/// Beam search's use: rows forked and dropped after they decoded (own slots copied, prefix
/// shared), and a clone stepped independently of its original.
#[test]
fn forked_rows_after_decoding_continue_their_own_sequences() {
    let (_dir, model) = tiny_model("qwen2", 23);
    let mut seqs = vec![tokens(3, 9), tokens(4, 9)];
    let mut cache = model.new_cache();
    model
        .forward(
            &ids(&[&seqs[0], &seqs[1]]),
            None,
            &mut cache,
            &LogitPositions::Last,
        )
        .expect("prefill");
    let forks: [&[usize]; 4] = [&[1, 0, 1], &[2, 2, 0], &[1], &[0, 0]];
    for (round, rows) in forks.iter().enumerate() {
        let toks: Vec<u32> = (0..seqs.len())
            .map(|r| 20 + (round * 3 + r) as u32)
            .collect();
        step(&model, &mut cache, &toks);
        for (seq, &t) in seqs.iter_mut().zip(&toks) {
            seq.push(t);
        }
        cache = cache.select_rows(rows).expect("select");
        seqs = rows.iter().map(|&r| seqs[r].clone()).collect();
        let toks: Vec<u32> = (0..seqs.len()).map(|r| 40 + (round + r) as u32).collect();
        let got = step(&model, &mut cache, &toks);
        for (row, (seq, &t)) in seqs.iter_mut().zip(&toks).enumerate() {
            seq.push(t);
            let d = max_diff(&got.i(row).unwrap(), &reference_last(&model, seq));
            assert!(d < TOL, "round {round} row {row} differs by {d}");
        }
    }

    let mut copy = cache.clone();
    let a = step(&model, &mut copy, &[60, 61]);
    let b = step(&model, &mut cache, &[62, 63]);
    for (row, seq) in seqs.iter().enumerate() {
        let mut sa = seq.clone();
        sa.push(60 + row as u32);
        let mut sb = seq.clone();
        sb.push(62 + row as u32);
        let d = max_diff(&a.i(row).unwrap(), &reference_last(&model, &sa));
        assert!(d < TOL, "clone row {row} differs by {d}");
        let d = max_diff(&b.i(row).unwrap(), &reference_last(&model, &sb));
        assert!(
            d < TOL,
            "original row {row} differs by {d} after its clone stepped"
        );
    }
}
