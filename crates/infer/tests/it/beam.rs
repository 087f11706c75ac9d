//! Constrained beam search against brute force and the plain-scoring oracle.

use icd::Code;
use infer::{
    beam_search, evaluate_constrained, score_sequence, suggest, BeamOptions, CodeTrie, EvalItem,
    Hypothesis, InferError, Normalisation, TextCodec,
};
use proptest::prelude::*;

use crate::fake::{Guide, HashModel, TinyTokenizer};
use crate::trie::{codes, spec};

pub const POOL: &[&str] = &[
    "J06.9", "J06.0", "J02.9", "J02.0", "J45.909", "I10", "I11.0", "I11.9", "E11.9", "E11.65",
    "E78.5", "K21.9", "M54.5", "R05.1", "R51.9", "S72.001A", "Z00.00", "A09", "B34.9", "N39.0",
];

pub fn tokenizer() -> TinyTokenizer {
    TinyTokenizer::new(&["J0", "06", ".9", "11", "E1", "I1", "00", ".0", "54"])
}

pub fn trie_of(list: &[&str]) -> CodeTrie {
    CodeTrie::build(codes(list), &tokenizer(), &spec()).unwrap()
}

pub fn prompt(tok: &TinyTokenizer, text: &str) -> Vec<u32> {
    tok.encode(&format!("<bos><user>{text}<eot>\n<asst>\n"))
        .unwrap()
}

/// Every code of the trie with its oracle score, best first (ties by code).
pub fn brute_force(model: &mut HashModel, trie: &CodeTrie, prompt: &[u32]) -> Vec<(Code, f64)> {
    let mut all: Vec<(Code, f64)> = trie
        .paths()
        .into_iter()
        .map(|(c, path)| {
            (
                c,
                score_sequence(model, prompt, &path).unwrap().iter().sum(),
            )
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all
}

/// Most nodes at any one depth: a beam this wide never prunes, so the search is exhaustive.
pub fn widest_level(trie: &CodeTrie) -> usize {
    let mut level = vec![CodeTrie::ROOT];
    let mut widest = 1;
    while !level.is_empty() {
        level = level
            .iter()
            .flat_map(|&n| trie.children(n).map(|(_, c)| c).collect::<Vec<_>>())
            .collect();
        widest = widest.max(level.len());
    }
    widest
}

/// The trie of `POOL`, a hash model seeded `seed` over the tiny vocabulary, and the prompt of
/// `text`: the setup of most searches here.
fn pool_search(seed: u64, text: &str) -> (CodeTrie, HashModel, Vec<u32>) {
    let tok = tokenizer();
    let model = HashModel::new(tok.vocab_size(), seed);
    (trie_of(POOL), model, prompt(&tok, text))
}

/// The ranked hypotheses of a search over the one prompt `p`.
fn search_one(
    model: &mut HashModel,
    trie: &CodeTrie,
    p: &[u32],
    opts: &BeamOptions,
) -> Vec<Hypothesis> {
    let mut out = beam_search(model, trie, &[p.to_vec()], opts).unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0).hypotheses
}

#[test]
fn top_k_is_valid_sorted_unique_and_scored_like_a_plain_forward() {
    let (trie, mut model, p) = pool_search(7, "sore throat and fever");
    let hyps = search_one(&mut model, &trie, &p, &BeamOptions::top_k(5));
    assert_eq!(hyps.len(), 5);
    let mut seen = std::collections::HashSet::new();
    for (i, h) in hyps.iter().enumerate() {
        assert_eq!(
            trie.lookup(&h.tokens),
            Some(&h.code),
            "returned path is a trie path"
        );
        assert!(seen.insert(h.code.clone()), "code {} twice", h.code);
        let oracle: f64 = score_sequence(&mut model, &p, &h.tokens)
            .unwrap()
            .iter()
            .sum();
        assert!(
            (h.logprob - oracle).abs() < 1e-9,
            "{} vs {oracle}",
            h.logprob
        );
        assert!(h.logprob < 0.0);
        if i > 0 {
            assert!(hyps[i - 1].logprob >= h.logprob, "sorted best first");
        }
    }
}

#[test]
fn constrained_greedy_follows_the_best_allowed_token_at_each_step() {
    let (trie, mut model, p) = pool_search(11, "chest pain");
    let hyps = search_one(&mut model, &trie, &p, &BeamOptions::greedy());
    // Walk the trie by hand, always taking the allowed token with the highest logit.
    let mut node = CodeTrie::ROOT;
    let mut path = Vec::new();
    while trie.code_at(node).is_none() {
        let logits = model.logits_after(&[p.clone(), path.clone()].concat());
        let (t, child) = trie
            .children(node)
            .max_by(|a, b| logits[a.0 as usize].total_cmp(&logits[b.0 as usize]))
            .unwrap();
        path.push(t);
        node = child;
    }
    assert_eq!(hyps.len(), 1);
    assert_eq!(hyps[0].tokens, path);
}

/// Constrained decoding never answers a code twice ("Each code once" in `prompt::extract`): a
/// path is one code's whole answer, and a code reachable by two paths (two spellings) is ranked
/// once, by its better path.
#[test]
fn constrained_decoding_never_yields_a_code_twice() {
    let code = |s: &str| Code::parse(s).unwrap();
    let eot = crate::fake::EOT;
    let trie = CodeTrie::from_paths([
        (code("J06.9"), vec![10, 11, eot]),
        (code("J06.9"), vec![12, eot]),
        (code("I10"), vec![13, eot]),
        (code("E11.9"), vec![14, 15, eot]),
    ])
    .unwrap();
    let prompt = vec![4, 5, 6];
    for seed in 0..20 {
        let mut model = HashModel::new(20, seed);
        // k as large as the number of paths: without the ranking's de-duplication J06.9 would
        // come back twice.
        let hyps = search_one(&mut model, &trie, &prompt, &BeamOptions::top_k(4));
        let mut listed: Vec<&Code> = hyps.iter().map(|h| &h.code).collect();
        listed.sort();
        listed.dedup();
        assert_eq!(listed.len(), hyps.len(), "seed {seed}: {hyps:?}");
        assert_eq!(hyps.len(), 3, "seed {seed}");
        let best_j069 = [vec![10, 11, eot], vec![12, eot]]
            .iter()
            .map(|path| -> f64 {
                score_sequence(&mut model, &prompt, path)
                    .unwrap()
                    .iter()
                    .sum()
            })
            .fold(f64::NEG_INFINITY, f64::max);
        let j069 = hyps.iter().find(|h| h.code == code("J06.9")).unwrap();
        assert!((j069.logprob - best_j069).abs() < 1e-9, "seed {seed}");
    }
}

#[test]
fn batched_prompts_give_the_same_answers_as_one_at_a_time_and_prefill_once() {
    let tok = tokenizer();
    let trie = trie_of(POOL);
    let prompts: Vec<Vec<u32>> = ["cough", "knee pain after a fall", "high blood sugar"]
        .iter()
        .map(|t| prompt(&tok, t))
        .collect();
    let opts = BeamOptions {
        beam_width: 6,
        ..BeamOptions::top_k(4)
    };
    let mut batched = HashModel::new(tok.vocab_size(), 3);
    let together = beam_search(&mut batched, &trie, &prompts, &opts).unwrap();
    assert_eq!(batched.prefill_calls, 1);
    assert_eq!(
        batched.prefill_tokens,
        prompts.iter().map(Vec::len).sum::<usize>(),
        "each prompt is prefilled exactly once; beams share it"
    );
    assert_eq!(
        batched.step_tokens,
        together.iter().map(|o| o.decode_tokens).sum::<usize>()
    );
    for (p, out) in prompts.iter().zip(&together) {
        let mut single = HashModel::new(tok.vocab_size(), 3);
        let alone = beam_search(&mut single, &trie, std::slice::from_ref(p), &opts).unwrap();
        assert_eq!(&alone[0], out);
        assert_eq!(out.prompt_tokens, p.len());
    }
}

#[test]
fn allowed_token_normalisation_is_a_distribution_over_the_codes() {
    let (trie, mut model, p) = pool_search(5, "headache");
    let opts = BeamOptions {
        k: trie.len(),
        beam_width: widest_level(&trie),
        normalisation: Normalisation::AllowedTokens,
        length_normalise: false,
    };
    let hyps = search_one(&mut model, &trie, &p, &opts);
    assert_eq!(hyps.len(), trie.len());
    let total: f64 = hyps.iter().map(|h| h.logprob.exp()).sum();
    assert!((total - 1.0).abs() < 1e-9, "total probability {total}");
}

#[test]
fn length_normalisation_ranks_by_mean_token_logprob() {
    let (trie, mut model, p) = pool_search(9, "back pain");
    let opts = BeamOptions {
        length_normalise: true,
        beam_width: widest_level(&trie),
        ..BeamOptions::top_k(6)
    };
    let hyps = search_one(&mut model, &trie, &p, &opts);
    let mean = |h: &infer::Hypothesis| h.logprob / h.tokens.len() as f64;
    assert!(hyps.windows(2).all(|w| mean(&w[0]) >= mean(&w[1])));
    let mut all: Vec<f64> = trie
        .paths()
        .iter()
        .map(|(_, path)| {
            score_sequence(&mut model, &p, path)
                .unwrap()
                .iter()
                .sum::<f64>()
                / path.len() as f64
        })
        .collect();
    all.sort_by(|a, b| b.total_cmp(a));
    assert!((mean(&hyps[0]) - all[0]).abs() < 1e-9);
}

#[test]
fn bad_options_and_misbehaving_models_are_errors() {
    let tok = tokenizer();
    let trie = trie_of(POOL);
    let p = prompt(&tok, "x");
    let mut model = HashModel::new(tok.vocab_size(), 1);
    let search = |model: &mut HashModel, opts: &BeamOptions| {
        beam_search(model, &trie, std::slice::from_ref(&p), opts)
    };
    let narrow = BeamOptions {
        beam_width: 2,
        ..BeamOptions::top_k(3)
    };
    assert!(matches!(
        search(&mut model, &narrow),
        Err(InferError::Option {
            option: "beam_width",
            ..
        })
    ));
    assert!(matches!(
        search(&mut model, &BeamOptions::top_k(0)),
        Err(InferError::Option { option: "k", .. })
    ));
    let mut small = HashModel::new(10, 1);
    assert!(matches!(
        beam_search(&mut small, &trie, &[vec![1]], &BeamOptions::top_k(1)),
        Err(InferError::TokenOutOfVocab { .. })
    ));
    let mut nan = HashModel::new(tok.vocab_size(), 1);
    nan.nan_token = Some(7);
    assert!(matches!(
        search(&mut nan, &BeamOptions::top_k(2)),
        Err(InferError::NanLogits {
            op: "step",
            token: 7,
            ..
        })
    ));
    model.drop_a_row = true;
    assert!(matches!(
        search(&mut model, &BeamOptions::top_k(2)),
        Err(InferError::Shape { op: "step", .. })
    ));
}

#[test]
fn suggest_and_evaluate_report_candidates_and_real_token_counts() {
    let tok = tokenizer();
    let trie = trie_of(POOL);
    let mut model = HashModel::new(tok.vocab_size(), 21);
    let p = prompt(&tok, "fever");
    let cands = suggest(&mut model, &trie, &p, &BeamOptions::top_k(3)).unwrap();
    assert_eq!(cands.len(), 3);
    assert!(
        cands.iter().all(|c| !c.code.contains('.')),
        "canonical undotted codes"
    );
    let items: Vec<EvalItem> = ["fever", "rash", "cough and cold"]
        .iter()
        .enumerate()
        .map(|(i, t)| EvalItem {
            id: format!("ex-{i}"),
            gold: vec!["J069".into()],
            prompt_ids: prompt(&tok, t),
        })
        .collect();
    let mut model = HashModel::new(tok.vocab_size(), 21);
    let preds = evaluate_constrained(&mut model, &trie, &items, &BeamOptions::top_k(3), 2).unwrap();
    assert_eq!(preds.len(), 3);
    assert_eq!(
        preds[0].candidates, cands,
        "same as suggest for the same prompt"
    );
    assert_eq!(model.prefill_calls, 2, "batches of 2 and 1");
    for (item, pred) in items.iter().zip(&preds) {
        assert_eq!(pred.id, item.id);
        assert_eq!(pred.prompt_tokens, item.prompt_ids.len() as u64);
        assert!(pred.generated_tokens > 0);
        assert!(pred.latency_ms >= 0.0);
        assert_eq!(pred.set_size, Some(1));
    }
    assert_eq!(
        model.step_tokens as u64,
        preds.iter().map(|p| p.generated_tokens).sum::<u64>(),
        "generated tokens are exactly the decoded tokens, no padding"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// With a beam as wide as the trie the search is exhaustive: it must equal brute force over
    /// every trie path. Narrower beams must still return valid, correctly scored, sorted codes.
    #[test]
    fn beam_search_equals_brute_force_when_exhaustive(
        seed in any::<u64>(),
        spread in 0.5f32..8.0,
        peak in 0.0f32..12.0,
        pick in proptest::sample::subsequence(POOL.to_vec(), 2..POOL.len()),
        k in 1usize..6,
        narrow in 1usize..4,
        text in "[a-z ]{1,12}",
    ) {
        let tok = tokenizer();
        let trie = trie_of(&pick);
        let mut model = HashModel::new(tok.vocab_size(), seed);
        model.spread = spread;
        let p = prompt(&tok, &text);
        // Raising the allowed tokens makes them hold most of the probability, so finishing an
        // answer can cost almost nothing and any over-eager pruning changes the result.
        model.guide = Some(Guide { trie: trie.clone(), prompt_len: p.len(), bias: peak });
        let truth = brute_force(&mut model, &trie, &p);
        let k = k.min(trie.len());

        let wide = BeamOptions { beam_width: widest_level(&trie), ..BeamOptions::top_k(k) };
        let got = search_one(&mut model, &trie, &p, &wide);
        prop_assert_eq!(got.len(), k);
        for (h, (code, score)) in got.iter().zip(&truth) {
            prop_assert_eq!(&h.code, code);
            prop_assert!((h.logprob - score).abs() < 1e-9);
        }

        let opts = BeamOptions { beam_width: k + narrow - 1, ..BeamOptions::top_k(k) };
        let got = search_one(&mut model, &trie, &p, &opts);
        prop_assert!(!got.is_empty() && got.len() <= k);
        for w in got.windows(2) {
            prop_assert!(w[0].logprob >= w[1].logprob);
        }
        for h in got {
            prop_assert_eq!(trie.lookup(&h.tokens), Some(&h.code));
            let oracle = truth.iter().find(|(c, _)| c == &h.code).unwrap().1;
            prop_assert!((h.logprob - oracle).abs() < 1e-9);
        }
    }
}
