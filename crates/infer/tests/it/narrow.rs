//! Per-example tries: the full trie seen through a mask of a candidate list. The search over a
//! mask must rank exactly the candidates, with the scores a plain forward gives them.

use icd::Code;
use infer::{
    beam_search_within, evaluate_within, suggest_within, BeamOptions, CodeTrie, EvalItem,
    InferError, Normalisation,
};
use proptest::prelude::*;

use crate::beam::{brute_force, prompt, tokenizer, trie_of, widest_level, POOL};
use crate::fake::{Guide, HashModel};
use crate::trie::codes;

/// Brute force restricted to `candidates`: every candidate code's full answer scored by the
/// oracle, best first (ties by code).
fn brute_force_over(
    model: &mut HashModel,
    trie: &CodeTrie,
    prompt: &[u32],
    candidates: &[Code],
) -> Vec<(Code, f64)> {
    brute_force(model, trie, prompt)
        .into_iter()
        .filter(|(c, _)| candidates.contains(c))
        .collect()
}

#[test]
fn a_mask_holds_exactly_the_paths_of_its_codes() {
    let trie = trie_of(POOL);
    let picked = codes(&["J06.9", "J06.0", "E11.65"]);
    let mask = trie.mask(&picked);
    assert_eq!(mask.len(), 3);
    assert!(mask.missing().is_empty());
    assert!(mask.allows(CodeTrie::ROOT));
    let reachable: Vec<Code> = trie
        .paths()
        .into_iter()
        .filter(|(_, path)| {
            let mut node = CodeTrie::ROOT;
            path.iter().all(|&t| {
                node = trie.child(node, t).unwrap();
                mask.allows(node)
            })
        })
        .map(|(c, _)| c)
        .collect();
    let mut sorted = reachable.clone();
    sorted.sort();
    let mut expected = picked.clone();
    expected.sort();
    assert_eq!(sorted, expected, "exactly the picked codes are reachable");
}

#[test]
fn codes_outside_the_trie_are_listed_and_an_empty_mask_finds_nothing() {
    let tok = tokenizer();
    let trie = trie_of(&["J06.9", "I10", "E11.9"]);
    let outside = codes(&["K21.9", "A09"]);
    let mask = trie.mask(outside.iter().chain(&codes(&["I10", "I10"])));
    assert_eq!(mask.len(), 1, "I10 once");
    assert_eq!(mask.missing(), outside.as_slice());

    let empty = trie.mask(&outside);
    assert!(empty.is_empty());
    let mut model = HashModel::new(tok.vocab_size(), 3);
    let prompts = vec![prompt(&tok, "cough"), prompt(&tok, "pressure")];
    let out = beam_search_within(
        &mut model,
        &trie,
        &prompts,
        &[empty, mask],
        &BeamOptions::top_k(3),
    )
    .unwrap();
    assert!(out[0].hypotheses.is_empty());
    let only: Vec<&str> = out[1].hypotheses.iter().map(|h| h.code.as_str()).collect();
    assert_eq!(only, ["I10"]);
}

#[test]
fn one_mask_per_prompt_is_required() {
    let tok = tokenizer();
    let trie = trie_of(POOL);
    let mut model = HashModel::new(tok.vocab_size(), 3);
    let err = beam_search_within(
        &mut model,
        &trie,
        &[prompt(&tok, "a"), prompt(&tok, "b")],
        &[trie.mask(&codes(&["I10"]))],
        &BeamOptions::top_k(1),
    )
    .unwrap_err();
    assert!(matches!(err, InferError::Shape { .. }), "{err}");
}

#[test]
fn evaluation_and_suggestion_keep_each_example_in_its_own_list() {
    let tok = tokenizer();
    let trie = trie_of(POOL);
    let mut model = HashModel::new(tok.vocab_size(), 5);
    let lists = [
        codes(&["J06.9", "J02.9", "I10"]),
        codes(&["E11.9", "E11.65"]),
        codes(&["M54.5", "R05.1", "A09", "N39.0"]),
    ];
    let items: Vec<EvalItem> = lists
        .iter()
        .enumerate()
        .map(|(i, _)| EvalItem {
            id: format!("ex{i}"),
            gold: vec!["I10".into()],
            prompt_ids: prompt(&tok, &format!("note {i}")),
        })
        .collect();
    let masks: Vec<_> = lists.iter().map(|l| trie.mask(l)).collect();
    // Batches of two: the masks must follow their items across batch boundaries.
    let preds =
        evaluate_within(&mut model, &trie, &items, &masks, &BeamOptions::top_k(3), 2).unwrap();
    for ((pred, list), item) in preds.iter().zip(&lists).zip(&items) {
        assert_eq!(pred.candidates.len(), 3.min(list.len()));
        for c in &pred.candidates {
            assert!(
                list.iter().any(|l| l.as_str() == c.code),
                "{} not listed",
                c.code
            );
        }
        let alone = suggest_within(
            &mut model,
            &trie,
            &trie.mask(list),
            &item.prompt_ids,
            &BeamOptions::top_k(3),
        )
        .unwrap();
        assert_eq!(alone, pred.candidates, "batched equals one at a time");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Over a mask, an exhaustive beam equals brute force over the candidate list: same codes in
    /// the same order, log-probabilities within 1e-5; narrower beams return only candidates,
    /// each scored as the oracle scores it. The allowed-token normalisation renormalises over the
    /// candidates' tokens only, so its exhaustive scores sum to one over the list.
    #[test]
    fn masked_search_equals_brute_force_over_the_candidates(
        seed in any::<u64>(),
        spread in 0.5f32..8.0,
        peak in 0.0f32..12.0,
        candidates in proptest::sample::subsequence(POOL.to_vec(), 1..8),
        k in 1usize..6,
        narrow in 1usize..4,
        text in "[a-z ]{1,12}",
    ) {
        let tok = tokenizer();
        let trie = trie_of(POOL);
        let candidates = codes(&candidates);
        let mask = trie.mask(&candidates);
        let mut model = HashModel::new(tok.vocab_size(), seed);
        model.spread = spread;
        let p = prompt(&tok, &text);
        model.guide = Some(Guide { trie: trie.clone(), prompt_len: p.len(), bias: peak });
        let truth = brute_force_over(&mut model, &trie, &p, &candidates);
        prop_assert_eq!(truth.len(), candidates.len());
        let k = k.min(candidates.len());
        let masks = std::slice::from_ref(&mask);
        let prompts = std::slice::from_ref(&p);

        let wide = BeamOptions { beam_width: widest_level(&trie), ..BeamOptions::top_k(k) };
        let got = &beam_search_within(&mut model, &trie, prompts, masks, &wide).unwrap()[0].hypotheses;
        prop_assert_eq!(got.len(), k);
        for (h, (code, score)) in got.iter().zip(&truth) {
            prop_assert_eq!(&h.code, code);
            prop_assert!((h.logprob - score).abs() < 1e-5, "{} vs {}", h.logprob, score);
        }

        let opts = BeamOptions { beam_width: k + narrow - 1, ..BeamOptions::top_k(k) };
        let got = &beam_search_within(&mut model, &trie, prompts, masks, &opts).unwrap()[0].hypotheses;
        prop_assert!(!got.is_empty() && got.len() <= k);
        for h in got {
            let oracle = truth.iter().find(|(c, _)| c == &h.code);
            prop_assert!(oracle.is_some(), "{} is not a candidate", h.code);
            prop_assert!((h.logprob - oracle.unwrap().1).abs() < 1e-5);
        }

        let all = BeamOptions {
            beam_width: widest_level(&trie),
            normalisation: Normalisation::AllowedTokens,
            ..BeamOptions::top_k(candidates.len())
        };
        let got = &beam_search_within(&mut model, &trie, prompts, masks, &all).unwrap()[0].hypotheses;
        let total: f64 = got.iter().map(|h| h.logprob.exp()).sum();
        prop_assert!((total - 1.0).abs() < 1e-6, "{}", total);
    }
}
