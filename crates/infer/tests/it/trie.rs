//! The code trie: paths are the tokens training puts after the prompt, ending with end-of-turn.

use icd::Code;
use infer::{CodeTrie, InferError, TextCodec, TrieAnchors, TrieSpec};
use prompt::chat::{ChatPrompt, ChatTemplate};

use crate::fake::{TinyTokenizer, EOT};

/// A ChatML-like template over the tiny tokenizer's special tokens.
const TEMPLATE: &str = "{% for m in messages %}{% if m.role == 'assistant' %}<asst>\n{{ m.content }}<eot>\n\
{% else %}<user>{{ m.content }}<eot>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<asst>\n{% endif %}";

/// The shortest context that works for the tiny template: its assistant header.
pub fn spec() -> TrieSpec<'static> {
    TrieSpec {
        context: "<asst>\n",
        end_of_turn: "<eot>",
    }
}

fn code(s: &str) -> Code {
    Code::parse(s).unwrap()
}

pub fn codes(list: &[&str]) -> Vec<Code> {
    list.iter().map(|s| code(s)).collect()
}

fn chat() -> ChatPrompt {
    ChatPrompt::new(
        ChatTemplate::new(TEMPLATE).unwrap(),
        Some("<bos>".into()),
        Some("<eot>".into()),
        vec!["<eot>".into()],
        None,
        "give the code".into(),
    )
}

const CODES: &[&str] = &[
    "J06.9", "J06.0", "J02.9", "I10", "E11.9", "E11.65", "S72.001A",
];

#[test]
fn trie_paths_are_the_training_completion_tokens_after_the_full_prompt() {
    // Merges make tokenization context-dependent, as BPE is.
    let tok = TinyTokenizer::new(&["J0", "06", ".9", "11", "E1", "65", "I1", "00", "1A"]);
    let trie = CodeTrie::build(codes(CODES), &tok, &spec()).unwrap();
    assert_eq!(trie.len(), CODES.len());
    let chat = chat();
    for c in codes(CODES) {
        let text = chat
            .training_text("a cough since monday", std::slice::from_ref(&c))
            .unwrap();
        assert_eq!(text.completion, format!("{}<eot>", c.dotted()));
        let prompt_ids = tok.encode(&text.prompt.text).unwrap();
        let full_ids = tok
            .encode(&format!("{}{}", text.prompt.text, text.completion))
            .unwrap();
        assert!(full_ids.starts_with(&prompt_ids));
        let continuation = &full_ids[prompt_ids.len()..];
        assert_eq!(trie.lookup(continuation), Some(&c), "code {c}");
        assert_eq!(
            *continuation.last().unwrap(),
            EOT,
            "path of {c} ends with end-of-turn"
        );
    }
}

#[test]
fn every_path_ends_with_end_of_turn_and_only_there() {
    let tok = TinyTokenizer::new(&["J0", "06"]);
    let trie = CodeTrie::build(codes(CODES), &tok, &spec()).unwrap();
    let paths = trie.paths();
    assert_eq!(paths.len(), CODES.len());
    for (c, path) in &paths {
        assert_eq!(path.last(), Some(&EOT));
        assert!(!path[..path.len() - 1].contains(&EOT), "code {c}");
        let node = trie.walk(path).unwrap();
        assert_eq!(trie.code_at(node), Some(c));
        assert_eq!(trie.children(node).len(), 0, "a complete path is a leaf");
        // Every proper prefix is an inner node without a code.
        for n in 0..path.len() {
            assert_eq!(trie.code_at(trie.walk(&path[..n]).unwrap()), None);
        }
    }
    assert!(trie.max_depth() >= paths.iter().map(|p| p.1.len()).max().unwrap());
    assert!(trie.node_count() > CODES.len());
}

#[test]
fn repeated_codes_are_kept_once_and_children_are_sorted() {
    let tok = TinyTokenizer::new(&[]);
    let trie = CodeTrie::build(codes(&["I10", "I10", "I11.0", "A00.0"]), &tok, &spec()).unwrap();
    assert_eq!(trie.len(), 3);
    let root: Vec<u32> = trie.children(CodeTrie::ROOT).map(|(t, _)| t).collect();
    let mut sorted = root.clone();
    sorted.sort();
    assert_eq!(root, sorted);
    assert_eq!(root.len(), 2, "A and I");
}

#[test]
fn a_merge_across_the_prompt_boundary_is_an_error_naming_the_code() {
    // "\nJ" merges the prompt's last newline with the answer's first letter.
    let tok = TinyTokenizer::new(&["\nJ"]);
    let err = CodeTrie::build(codes(&["I10", "J06.9"]), &tok, &spec()).unwrap_err();
    match &err {
        InferError::BoundaryMerge { code, .. } => assert_eq!(code.as_str(), "J069"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("J06.9"), "{err}");
}

#[test]
fn ambiguous_paths_are_rejected() {
    let prefix = CodeTrie::from_paths(vec![
        (code("I10"), vec![5, 6]),
        (code("I11"), vec![5, 6, 7]),
    ]);
    assert!(matches!(prefix, Err(InferError::AnswerPrefix { .. })));
    let prefix_other_order = CodeTrie::from_paths(vec![
        (code("I11"), vec![5, 6, 7]),
        (code("I10"), vec![5, 6]),
    ]);
    assert!(matches!(
        prefix_other_order,
        Err(InferError::AnswerPrefix { .. })
    ));
    let collision = CodeTrie::from_paths(vec![(code("I10"), vec![5]), (code("I11"), vec![5])]);
    assert!(matches!(collision, Err(InferError::AnswerCollision { .. })));
    assert!(matches!(
        CodeTrie::from_paths(Vec::new()),
        Err(InferError::EmptyTrie)
    ));
    assert!(matches!(
        CodeTrie::from_paths(vec![(code("I10"), vec![])]),
        Err(InferError::EmptyAnswer { .. })
    ));
}

#[test]
fn builds_from_the_shipped_table_leaves() {
    let table = icd::CodeTable::icd10cm();
    let leaves: Vec<Code> = table.leaves().map(|e| e.code.clone()).collect();
    let tok = TinyTokenizer::new(&["J0", "06", ".9", "00", "1A"]);
    let start = std::time::Instant::now();
    let trie = CodeTrie::build(leaves.iter().cloned(), &tok, &spec()).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(trie.len(), leaves.len());
    assert!(trie.codes().iter().all(|c| table.is_leaf(c)));
    eprintln!(
        "trie of {} leaves: {} nodes, {} KiB, built in {:?} (tiny tokenizer)",
        trie.len(),
        trie.node_count(),
        trie.heap_bytes() / 1024,
        elapsed
    );
}

#[test]
fn the_spec_read_off_the_chat_renderer_builds_the_same_trie() {
    let anchors = TrieAnchors::from_chat(&chat()).unwrap();
    assert_eq!(anchors.context, "<eot>\n<asst>\n");
    assert_eq!(anchors.end_of_turn, "<eot>");
    let spec = anchors.spec();
    let tok = TinyTokenizer::new(&["J0", "06", ".9", "11"]);
    let from_chat = CodeTrie::build(codes(CODES), &tok, &spec).unwrap();
    let by_hand = CodeTrie::build(codes(CODES), &tok, &self::spec()).unwrap();
    assert_eq!(from_chat.paths(), by_hand.paths());
}
