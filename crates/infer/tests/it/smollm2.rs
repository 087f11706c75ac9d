//! Opt-in tier: the trie of every ICD-10-CM leaf in the real SmolLM2-135M-Instruct vocabulary.
//! Runs when `ICDTUNE_SMOLLM2_GGUF` points at the GGUF (as the tokenize crate's tier).

use std::time::Instant;

use icd::Code;
use infer::{CodeTrie, TextCodec, TrieAnchors, TrieSpec};

#[path = "../../../tokenize/tests/it/smollm2_gguf.rs"]
mod smollm2_gguf;

#[test]
fn smollm2_trie_of_all_leaves_matches_the_rendered_training_text() {
    let Some(tok) = smollm2_gguf::smollm2() else {
        return;
    };
    let table = icd::CodeTable::icd10cm();
    let leaves: Vec<Code> = table.leaves().map(|e| e.code.clone()).collect();
    let chat = smollm2_gguf::chat_prompt(&tok, None, "Give the ICD-10-CM code.");
    let anchors = TrieAnchors::from_chat(&chat).unwrap();
    assert_eq!(anchors.end_of_turn, "<|im_end|>");
    assert!(
        anchors.context.ends_with("<|im_start|>assistant\n"),
        "{:?}",
        anchors.context
    );
    let spec = anchors.spec();
    let (start, cpu) = (Instant::now(), process_cpu_seconds());
    let trie = CodeTrie::build(leaves.iter().cloned(), &tok, &spec).unwrap();
    let (elapsed, cpu) = (
        start.elapsed(),
        process_cpu_seconds().map(|c| c - cpu.unwrap_or(0.0)),
    );
    eprintln!(
        "SmolLM2 trie: {} leaves, {} nodes, max depth {}, {} KiB, built in {:?} wall, {:?} s CPU (vocab {})",
        trie.len(),
        trie.node_count(),
        trie.max_depth(),
        trie.heap_bytes() / 1024,
        elapsed,
        cpu,
        tok.vocab_size()
    );
    assert_eq!(trie.len(), leaves.len());
    let start = Instant::now();
    let rebuilt = CodeTrie::from_paths(trie.paths()).unwrap();
    eprintln!("  of which inserting the paths: {:?}", start.elapsed());
    assert_eq!(rebuilt.paths(), trie.paths());

    // The trie path of a code is what training puts after the full rendered prompt.
    let stop = tok.eos_ids().to_vec();
    for code in leaves.iter().step_by(397) {
        let text = chat
            .training_text(
                "Patient: I have had a cough for a week.",
                std::slice::from_ref(code),
            )
            .unwrap();
        let prompt_ids = TextCodec::encode(&tok, &text.prompt.text).unwrap();
        let full =
            TextCodec::encode(&tok, &format!("{}{}", text.prompt.text, text.completion)).unwrap();
        assert!(full.starts_with(&prompt_ids), "code {code}");
        let continuation = &full[prompt_ids.len()..];
        assert_eq!(trie.lookup(continuation), Some(code), "code {code}");
        assert!(
            stop.contains(continuation.last().unwrap()),
            "code {code} ends with a stop id"
        );
    }
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`, 100 ticks per second), so
/// the build cost can be read on a busy machine where wall time is inflated.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// A model whose forward costs nothing: every row is the same fixed logit vector, so the time
/// measured is the search's own (full-vocabulary `log_softmax`, trie walk, bookkeeping).
struct FreeModel {
    row: Vec<f32>,
}

impl infer::StepModel for FreeModel {
    type Cache = usize;

    fn vocab_size(&self) -> usize {
        self.row.len()
    }

    fn prefill(&mut self, prompts: &[Vec<u32>]) -> infer::Result<(usize, infer::Logits)> {
        Ok((prompts.len(), self.rows(prompts.len())))
    }

    fn select(&mut self, _: usize, rows: &[usize]) -> infer::Result<usize> {
        Ok(rows.len())
    }

    fn step(&mut self, cache: &mut usize, _: &[u32]) -> infer::Result<infer::Logits> {
        Ok(self.rows(*cache))
    }
}

impl FreeModel {
    fn rows(&self, n: usize) -> infer::Logits {
        infer::Logits::new(self.row.len(), self.row.repeat(n)).unwrap()
    }
}

#[test]
fn smollm2_search_overhead_per_prompt() {
    let Some(tok) = smollm2_gguf::smollm2() else {
        return;
    };
    let table = icd::CodeTable::icd10cm();
    let spec = TrieSpec {
        context: "<|im_start|>assistant\n",
        end_of_turn: "<|im_end|>",
    };
    let trie = CodeTrie::build(table.leaves().map(|e| e.code.clone()), &tok, &spec).unwrap();
    let row: Vec<f32> = (0..tok.vocab_size())
        .map(|i| ((i as f32) * 0.618).sin() * 5.0)
        .collect();
    let mut model = FreeModel { row };
    let prompts = vec![vec![1u32; 8]; 8];
    let opts = infer::BeamOptions::top_k(5);
    let start = Instant::now();
    let out = infer::beam_search(&mut model, &trie, &prompts, &opts).unwrap();
    let per_prompt = start.elapsed() / prompts.len() as u32;
    let steps: usize = out.iter().map(|o| o.decode_tokens).sum::<usize>() / prompts.len();
    eprintln!(
        "search overhead, top-5 over {} leaves, vocab {}: {per_prompt:?} per prompt ({steps} decode tokens)",
        trie.len(),
        tok.vocab_size()
    );
    assert!(out.iter().all(|o| o.hypotheses.len() == 5));
}
