//! Unconstrained greedy and sampled generation with stop conditions.

use infer::{
    evaluate_generative, generate, score_sequence, Decoding, EvalItem, GenerateOptions, InferError,
    StopReason, TextCodec,
};

use types::Prediction;

use crate::fake::{HashModel, Scripted, TinyTokenizer, EOT};

fn setup() -> (TinyTokenizer, Vec<Vec<u32>>) {
    let tok = TinyTokenizer::new(&["J0", "06", ".9"]);
    let prompts = ["one", "two words", "a longer third prompt"]
        .iter()
        .map(|t| {
            tok.encode(&format!("<bos><user>{t}<eot>\n<asst>\n"))
                .unwrap()
        })
        .collect();
    (tok, prompts)
}

fn opts(decoding: Decoding, max_new_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        decoding,
        max_new_tokens,
        stop_ids: vec![EOT],
        stop_strings: Vec::new(),
    }
}

fn sampled(seed: u64) -> Decoding {
    Decoding::Sample {
        temperature: 1.5,
        top_p: 1.0,
        seed,
    }
}

#[test]
fn greedy_is_the_argmax_of_a_plain_forward_at_every_step() {
    let (tok, prompts) = setup();
    let mut model = HashModel::new(tok.vocab_size(), 4);
    let out = generate(&mut model, &tok, &prompts, &opts(Decoding::Greedy, 12)).unwrap();
    for (p, g) in prompts.iter().zip(&out) {
        let mut history = p.clone();
        for &t in &g.tokens {
            let logits = model.logits_after(&history);
            let best = (0..logits.len())
                .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
                .unwrap();
            assert_eq!(t as usize, best);
            history.push(t);
        }
        let oracle: f64 = score_sequence(&mut model, p, &g.tokens)
            .unwrap()
            .iter()
            .sum();
        assert!((g.logprob - oracle).abs() < 1e-9);
        assert_eq!(g.text, tok.decode(&g.tokens).unwrap());
    }
}

#[test]
fn eos_stops_generation_and_is_not_in_the_text() {
    let (tok, prompts) = setup();
    let mut model = HashModel::new(tok.vocab_size(), 8);
    // EOS dominates once the history is 3 tokens longer than the shortest prompt.
    let shortest = prompts.iter().map(Vec::len).min().unwrap();
    model.biases.push((EOT, shortest + 3, 100.0));
    let out = generate(&mut model, &tok, &prompts, &opts(Decoding::Greedy, 50)).unwrap();
    for (p, g) in prompts.iter().zip(&out) {
        assert_eq!(g.stop, StopReason::StopId);
        assert_eq!(*g.tokens.last().unwrap(), EOT);
        assert_eq!(
            g.tokens.iter().filter(|&&t| t == EOT).count(),
            1,
            "nothing after EOS"
        );
        assert!(g.tokens.len() <= (shortest + 4).saturating_sub(p.len()).max(1));
        assert_eq!(g.text, tok.decode(&g.tokens[..g.tokens.len() - 1]).unwrap());
    }
}

#[test]
fn max_new_tokens_and_stop_strings_end_generation() {
    let (tok, prompts) = setup();
    let mut model = HashModel::new(tok.vocab_size(), 2);
    let mut o = opts(Decoding::Greedy, 7);
    o.stop_ids.clear();
    let out = generate(&mut model, &tok, &prompts, &o).unwrap();
    assert!(out
        .iter()
        .all(|g| g.tokens.len() == 7 && g.stop == StopReason::MaxTokens));
    // Stop at a string that appears in the first answer's text.
    let full = out[0].text.clone();
    let needle: String = full.chars().skip(3).take(2).collect();
    o.stop_strings = vec![needle.clone()];
    let cut = generate(&mut model, &tok, &prompts[..1], &o).unwrap();
    assert_eq!(cut[0].stop, StopReason::StopString);
    assert_eq!(cut[0].text, full[..full.find(&needle).unwrap()]);
    assert!(cut[0].tokens.len() <= 7);
    assert!(
        generate(&mut model, &tok, &prompts, &opts(Decoding::Greedy, 0))
            .unwrap()
            .iter()
            .all(|g| g.tokens.is_empty())
    );
}

#[test]
fn sampling_is_reproducible_for_a_seed_and_independent_of_the_batch() {
    let (tok, prompts) = setup();
    let mut model = HashModel::new(tok.vocab_size(), 6);
    let a = generate(&mut model, &tok, &prompts, &opts(sampled(42), 16)).unwrap();
    let b = generate(&mut model, &tok, &prompts, &opts(sampled(42), 16)).unwrap();
    assert_eq!(a, b);
    let alone = generate(&mut model, &tok, &prompts[1..2], &opts(sampled(42), 16)).unwrap();
    assert_eq!(alone[0], a[1]);
    let other = generate(&mut model, &tok, &prompts, &opts(sampled(43), 16)).unwrap();
    assert_ne!(a, other, "another seed draws differently");
    let greedy = generate(&mut model, &tok, &prompts, &opts(Decoding::Greedy, 16)).unwrap();
    assert_ne!(a, greedy, "temperature 1.5 over a flat model is not greedy");
    for (p, g) in prompts.iter().zip(&a) {
        let oracle: f64 = score_sequence(&mut model, p, &g.tokens)
            .unwrap()
            .iter()
            .sum();
        assert!((g.logprob - oracle).abs() < 1e-9, "log-prob is untempered");
    }
}

#[test]
fn a_tiny_nucleus_is_greedy() {
    let (tok, prompts) = setup();
    let mut model = HashModel::new(tok.vocab_size(), 12);
    let nucleus = Decoding::Sample {
        temperature: 1.0,
        top_p: 1e-6,
        seed: 1,
    };
    let a = generate(&mut model, &tok, &prompts, &opts(nucleus, 10)).unwrap();
    let g = generate(&mut model, &tok, &prompts, &opts(Decoding::Greedy, 10)).unwrap();
    assert_eq!(a, g);
}

#[test]
fn invalid_sampling_options_are_errors() {
    let (tok, prompts) = setup();
    let mut model = HashModel::new(tok.vocab_size(), 12);
    for (temperature, top_p) in [(0.0, 1.0), (-1.0, 0.5), (1.0, 0.0), (1.0, 1.5)] {
        let d = Decoding::Sample {
            temperature,
            top_p,
            seed: 0,
        };
        assert!(matches!(
            generate(&mut model, &tok, &prompts, &opts(d, 4)),
            Err(InferError::Option { .. })
        ));
    }
}

#[test]
fn generative_evaluation_parses_codes_from_the_raw_text() {
    let tok = TinyTokenizer::new(&[]);
    let prompt = tok.encode("<bos><user>x<eot>\n<asst>\n").unwrap();
    // Force the answer "J06.9" then EOS by biasing each next character in turn.
    let answer = tok.encode("J06.9").unwrap();
    let mut model = HashModel::new(tok.vocab_size(), 1);
    for (i, &t) in answer.iter().enumerate() {
        // A bias active from exactly this length only: later biases outweigh earlier ones.
        model
            .biases
            .push((t, prompt.len() + i, 100.0 * (i + 1) as f32));
    }
    model.biases.push((
        EOT,
        prompt.len() + answer.len(),
        100.0 * (answer.len() + 1) as f32,
    ));
    let items = vec![EvalItem {
        id: "d1".into(),
        gold: vec!["J069".into()],
        prompt_ids: prompt.clone(),
    }];
    let preds =
        evaluate_generative(&mut model, &tok, &items, &opts(Decoding::Greedy, 20), 4).unwrap();
    assert_eq!(preds[0].raw_text.as_deref(), Some("J06.9"));
    assert_eq!(preds[0].candidates.len(), 1);
    assert_eq!(preds[0].candidates[0].code, "J069");
    assert_eq!(preds[0].generated_tokens, answer.len() as u64 + 1);
    assert_eq!(preds[0].prompt_tokens, prompt.len() as u64);
    assert_eq!(preds[0].set_size, None);
}

/// Greedy generative evaluation (up to 200 new tokens) of one dialogue `d1` whose gold is `gold`.
fn evaluate_scripted(
    model: &mut Scripted,
    tok: &TinyTokenizer,
    prompt_ids: Vec<u32>,
    gold: &str,
) -> Prediction {
    let items = [EvalItem {
        id: "d1".into(),
        gold: vec![gold.into()],
        prompt_ids,
    }];
    let mut preds =
        evaluate_generative(model, tok, &items, &opts(Decoding::Greedy, 200), 1).unwrap();
    assert_eq!(preds.len(), 1);
    preds.remove(0)
}

/// The extracted codes of a prediction, in rank order.
fn codes(pred: &Prediction) -> Vec<&str> {
    pred.candidates.iter().map(|c| c.code.as_str()).collect()
}

/// A prompt of the tiny tokenizer and a model that answers `answer` after it.
fn scripted(tok: &TinyTokenizer, answer: &str) -> (Vec<u32>, Scripted) {
    let prompt = tok.encode("<bos><user>x<eot>\n<asst>\n").unwrap();
    let model = Scripted {
        vocab: tok.vocab_size(),
        prompt_len: prompt.len(),
        script: tok.encode(answer).unwrap(),
    };
    (prompt, model)
}

#[test]
fn a_model_that_repeats_a_code_ends_its_answer_at_the_repeat() {
    let tok = TinyTokenizer::new(&["R5", "0.", "I1"]);
    let looping = "R50.9, I10, R50.9, R50.9, R50.9, R50.9, R50.9, R50.9, R50.9, R50.9";
    let (prompt, mut model) = scripted(&tok, looping);
    for decoding in [Decoding::Greedy, sampled(3)] {
        let out = generate(
            &mut model,
            &tok,
            std::slice::from_ref(&prompt),
            &opts(decoding, 200),
        )
        .unwrap();
        let g = &out[0];
        assert_eq!(g.stop, StopReason::RepeatedCode);
        assert_eq!(g.text, "R50.9, I10");
        // It stopped at the separator after the repeat, not at the budget.
        assert_eq!(tok.decode(&g.tokens).unwrap(), "R50.9, I10, R50.9,");
    }
    let pred = evaluate_scripted(&mut model, &tok, prompt, "R509");
    assert_eq!(codes(&pred), ["R509", "I10"]);
    assert_eq!(pred.raw_text.as_deref(), Some("R50.9, I10"));
    assert_eq!(
        pred.generated_tokens,
        tok.encode("R50.9, I10, R50.9,").unwrap().len() as u64
    );
}

#[test]
fn a_repeat_at_the_very_end_or_in_free_text_is_dropped_by_extraction_not_cut() {
    let tok = TinyTokenizer::new(&[]);
    for answer in ["I10, J06.9, I10", "I10 is likely; I10 fits the fever"] {
        let (prompt, mut model) = scripted(&tok, answer);
        let pred = evaluate_scripted(&mut model, &tok, prompt, "I10");
        assert_eq!(pred.raw_text.as_deref(), Some(answer));
        let codes = codes(&pred);
        assert_eq!(codes.iter().filter(|c| **c == "I10").count(), 1, "{answer}");
    }
}
