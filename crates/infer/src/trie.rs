//! A prefix trie of the valid answers in the model's own token ids.
//!
//! Constrained decoding may only follow trie edges, so whatever it returns is a code of the trie.
//! Each path is the tokenization of one code's answer *as it continues the generation prompt*
//! (byte-level BPE and SentencePiece tokenize a string differently at the start of a text than
//! after a prompt), followed by the end-of-turn token(s), so that a path ends exactly where the
//! trained completion `J06.9<|im_end|>` ends.

use std::collections::HashMap;

use icd::Code;

use prompt::chat::ChatPrompt;

use crate::codec::TextCodec;
use crate::error::{InferError, Result};

/// Identifies a trie node.
pub type NodeId = u32;

const NO_CODE: u32 = u32::MAX;

/// Answers encoded per tokenizer call when building a trie.
const ENCODE_CHUNK: usize = 4096;

/// How answers are written after the prompt (borrowed; [`TrieAnchors`] owns the same texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrieSpec<'a> {
    /// The end of the generation prompt the answer continues, e.g. `"<|im_start|>assistant\n"`.
    /// It must end at a token boundary that the answer cannot merge across (a special token, or
    /// a newline for byte-level BPE); the build checks this for every code. Any tail of the real
    /// prompt that starts with a special token tokenizes as the prompt does, so it is enough.
    pub context: &'a str,
    /// The text the chat template writes right after the answer to end the turn
    /// (`"<|im_end|>"`, `"<|eot_id|>"`, `"</s>"`): the training completion ends with it.
    pub end_of_turn: &'a str,
}

/// The owned texts of a [`TrieSpec`], read off a chat renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrieAnchors {
    pub context: String,
    pub end_of_turn: String,
}

/// Stands in for the dialogue when [`TrieAnchors::from_chat`] renders a conversation: control
/// characters that no template writes, so the text after it is the template's own.
const DIALOGUE_MARK: &str = "\u{1}\u{2}\u{1}";

impl TrieAnchors {
    /// The anchors of a chat format, read off the renderer that training uses: `context` is what
    /// the template writes after the dialogue up to the answer
    /// (`"<|im_end|>\n<|im_start|>assistant\n"` for ChatML), `end_of_turn` what it writes after
    /// the answer up to the end-of-turn marker. So the trie's paths are, by construction, the
    /// training completions' tokens.
    pub fn from_chat(chat: &ChatPrompt) -> Result<TrieAnchors> {
        let probe = Code::parse("A00").expect("a valid code");
        let answer = answer_string(&probe);
        let text = chat
            .training_text(DIALOGUE_MARK, std::slice::from_ref(&probe))
            .map_err(|e| InferError::Chat {
                message: e.to_string(),
            })?;
        let after_dialogue = text
            .prompt
            .text
            .rsplit_once(DIALOGUE_MARK)
            .map(|(_, tail)| tail)
            .ok_or_else(|| InferError::Chat {
                message: "the rendered prompt does not contain the dialogue".into(),
            })?;
        let at = text
            .completion
            .find(&answer)
            .ok_or_else(|| InferError::Chat {
                message: "the training completion does not contain the answer".into(),
            })?;
        Ok(TrieAnchors {
            context: format!("{after_dialogue}{}", &text.completion[..at]),
            end_of_turn: text.completion[at + answer.len()..].to_string(),
        })
    }

    /// The borrowed spec for [`CodeTrie::build`].
    pub fn spec(&self) -> TrieSpec<'_> {
        TrieSpec {
            context: &self.context,
            end_of_turn: &self.end_of_turn,
        }
    }
}

/// The answer of one code as the model is trained to write it: `prompt::chat::answer_text` of the
/// single code (dotted, `J06.9`), so that training and decoding agree by construction.
pub fn answer_string(code: &Code) -> String {
    prompt::chat::answer_text(std::slice::from_ref(code))
}

/// The token ids of `code`'s completion (answer + end of turn) as a continuation of
/// `spec.context`: `encode(context + completion)` minus `encode(context)`.
pub fn completion_tokens<C: TextCodec + ?Sized>(
    code: &Code,
    codec: &C,
    spec: &TrieSpec<'_>,
    context_ids: &[u32],
) -> Result<Vec<u32>> {
    let full = codec.encode(&completion_text(code, spec))?;
    continuation(code, full, context_ids)
}

fn completion_text(code: &Code, spec: &TrieSpec<'_>) -> String {
    format!(
        "{}{}{}",
        spec.context,
        answer_string(code),
        spec.end_of_turn
    )
}

/// `full` without the leading `context_ids`, checking that they are a prefix.
fn continuation(code: &Code, full: Vec<u32>, context_ids: &[u32]) -> Result<Vec<u32>> {
    if !full.starts_with(context_ids) {
        let from = context_ids.len().saturating_sub(3);
        return Err(InferError::BoundaryMerge {
            code: code.clone(),
            context_tail: context_ids[from..].to_vec(),
            got_tail: full[from.min(full.len())..full.len().min(context_ids.len() + 3)].to_vec(),
        });
    }
    let tokens = full[context_ids.len()..].to_vec();
    if tokens.is_empty() {
        return Err(InferError::EmptyAnswer { code: code.clone() });
    }
    Ok(tokens)
}

/// A prefix trie over token ids whose complete paths are the answers of a set of codes.
///
/// Stored as compressed sparse rows (children of a node are one sorted slice of two flat arrays),
/// so the full ICD-10-CM leaf set is a few flat vectors rather than hundreds of thousands of
/// small allocations.
#[derive(Debug, Clone)]
pub struct CodeTrie {
    /// `edge_start[n]..edge_start[n + 1]` are node `n`'s edges.
    edge_start: Vec<u32>,
    /// Edge token ids, sorted within each node.
    edge_token: Vec<u32>,
    /// Edge targets.
    edge_child: Vec<NodeId>,
    /// Per node, the index in `codes` of the code whose path ends there, or `NO_CODE`.
    node_code: Vec<u32>,
    /// Per node, its parent (the root is its own parent): walking up from a code's end node
    /// gives its path, which is what a [`TrieMask`] marks.
    node_parent: Vec<NodeId>,
    codes: Vec<Code>,
    /// Each code's end node, so that narrowing to a few codes never walks or rebuilds the trie.
    code_node: HashMap<Code, NodeId>,
    max_depth: usize,
}

/// The nodes of a [`CodeTrie`] on the paths of a subset of its codes: a per-example view of the
/// full trie (e.g. a retriever's 50 candidates among 74,719 codes) that the searches follow
/// instead of the whole trie. Building one costs the subset's path lengths, not a rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrieMask {
    /// Allowed nodes, sorted, root included when any code is allowed.
    nodes: Vec<NodeId>,
    /// Allowed codes that have a path in the trie.
    codes: usize,
    /// Asked-for codes that are not in the trie (kept for the record; they cannot be decoded).
    missing: Vec<Code>,
}

impl TrieMask {
    /// Whether a search may enter `node`.
    pub fn allows(&self, node: NodeId) -> bool {
        self.nodes.binary_search(&node).is_ok()
    }

    /// Codes of the subset that the trie holds (what a search over the mask can return).
    pub fn len(&self) -> usize {
        self.codes
    }

    /// Whether no code of the subset is in the trie: a search over the mask returns nothing.
    pub fn is_empty(&self) -> bool {
        self.codes == 0
    }

    /// Codes of the subset that the trie does not hold.
    pub fn missing(&self) -> &[Code] {
        &self.missing
    }
}

impl CodeTrie {
    /// The root: no tokens generated yet.
    pub const ROOT: NodeId = 0;

    /// Builds the trie of `codes` (e.g. the code table's leaves, or a training split's label set)
    /// tokenized with `codec` as continuations of `spec.context`. Repeated codes are kept once.
    pub fn build<C, I>(codes: I, codec: &C, spec: &TrieSpec<'_>) -> Result<CodeTrie>
    where
        C: TextCodec + ?Sized,
        I: IntoIterator<Item = Code>,
    {
        let context_ids = codec.encode(spec.context)?;
        let codes: Vec<Code> = codes.into_iter().collect();
        let mut paths = Vec::with_capacity(codes.len());
        // Chunks bound the tokenizer's per-text bookkeeping (offsets, token strings) in memory.
        for chunk in codes.chunks(ENCODE_CHUNK) {
            let texts = chunk.iter().map(|c| completion_text(c, spec)).collect();
            let encoded = codec.encode_batch(texts)?;
            if encoded.len() != chunk.len() {
                return Err(InferError::Shape {
                    op: "encode_batch",
                    expected: format!("{} encodings", chunk.len()),
                    got: encoded.len().to_string(),
                });
            }
            for (code, full) in chunk.iter().zip(encoded) {
                let tokens = continuation(code, full, &context_ids)?;
                paths.push((code.clone(), tokens));
            }
        }
        let trie = CodeTrie::from_paths(paths)?;
        tracing::debug!(
            codes = trie.len(),
            nodes = trie.node_count(),
            bytes = trie.heap_bytes(),
            "built code trie"
        );
        Ok(trie)
    }

    /// Builds the trie from explicit `(code, token path)` pairs. A path may not be a strict prefix
    /// of another (each must end with an end-of-turn token); a repeated pair is kept once.
    pub fn from_paths(paths: impl IntoIterator<Item = (Code, Vec<u32>)>) -> Result<CodeTrie> {
        // Build with one child list per node, then freeze into flat arrays.
        let mut children: Vec<Vec<(u32, NodeId)>> = vec![Vec::new()];
        let mut node_code: Vec<u32> = vec![NO_CODE];
        let mut node_parent: Vec<NodeId> = vec![Self::ROOT];
        let mut codes: Vec<Code> = Vec::new();
        let mut code_node: HashMap<Code, NodeId> = HashMap::new();
        let mut max_depth = 0;
        for (code, tokens) in paths {
            if tokens.is_empty() {
                return Err(InferError::EmptyAnswer { code });
            }
            let mut node = Self::ROOT as usize;
            for &token in &tokens {
                if node_code[node] != NO_CODE {
                    return Err(InferError::AnswerPrefix {
                        code: codes[node_code[node] as usize].clone(),
                        other: code,
                        tokens: tokens.clone(),
                    });
                }
                let list = &mut children[node];
                node = match list.binary_search_by_key(&token, |&(t, _)| t) {
                    Ok(at) => list[at].1 as usize,
                    Err(at) => {
                        let child = node_code.len();
                        list.insert(at, (token, child as NodeId));
                        children.push(Vec::new());
                        node_code.push(NO_CODE);
                        node_parent.push(node as NodeId);
                        child
                    }
                };
            }
            if node_code[node] != NO_CODE {
                let other = codes[node_code[node] as usize].clone();
                if other == code {
                    continue;
                }
                return Err(InferError::AnswerCollision {
                    code,
                    other,
                    tokens,
                });
            }
            if !children[node].is_empty() {
                let other = Self::first_code_below(&children, &node_code, &codes, node);
                return Err(InferError::AnswerPrefix {
                    code,
                    other,
                    tokens,
                });
            }
            node_code[node] = codes.len() as u32;
            code_node.insert(code.clone(), node as NodeId);
            codes.push(code);
            max_depth = max_depth.max(tokens.len());
        }
        if codes.is_empty() {
            return Err(InferError::EmptyTrie);
        }
        let edges: usize = children.iter().map(Vec::len).sum();
        let mut edge_start = Vec::with_capacity(children.len() + 1);
        let mut edge_token = Vec::with_capacity(edges);
        let mut edge_child = Vec::with_capacity(edges);
        edge_start.push(0);
        for list in &children {
            for &(t, c) in list {
                edge_token.push(t);
                edge_child.push(c);
            }
            edge_start.push(edge_token.len() as u32);
        }
        Ok(CodeTrie {
            edge_start,
            edge_token,
            edge_child,
            node_code,
            node_parent,
            codes,
            code_node,
            max_depth,
        })
    }

    fn first_code_below(
        children: &[Vec<(u32, NodeId)>],
        node_code: &[u32],
        codes: &[Code],
        mut node: usize,
    ) -> Code {
        while node_code[node] == NO_CODE {
            node = children[node][0].1 as usize;
        }
        codes[node_code[node] as usize].clone()
    }

    /// The allowed next tokens at `node`, sorted, with the node each leads to.
    pub fn children(&self, node: NodeId) -> impl ExactSizeIterator<Item = (u32, NodeId)> + '_ {
        let range =
            self.edge_start[node as usize] as usize..self.edge_start[node as usize + 1] as usize;
        self.edge_token[range.clone()]
            .iter()
            .copied()
            .zip(self.edge_child[range].iter().copied())
    }

    /// The node reached by `token` from `node`, if that edge exists.
    pub fn child(&self, node: NodeId, token: u32) -> Option<NodeId> {
        let range =
            self.edge_start[node as usize] as usize..self.edge_start[node as usize + 1] as usize;
        let at = self.edge_token[range.clone()].binary_search(&token).ok()?;
        Some(self.edge_child[range.start + at])
    }

    /// The code whose complete path ends at `node` (only the node after the end-of-turn token).
    pub fn code_at(&self, node: NodeId) -> Option<&Code> {
        match self.node_code[node as usize] {
            NO_CODE => None,
            i => Some(&self.codes[i as usize]),
        }
    }

    /// The node reached by following `tokens` from the root.
    pub fn walk(&self, tokens: &[u32]) -> Option<NodeId> {
        tokens
            .iter()
            .try_fold(Self::ROOT, |node, &t| self.child(node, t))
    }

    /// The code whose complete path is exactly `tokens`.
    pub fn lookup(&self, tokens: &[u32]) -> Option<&Code> {
        self.walk(tokens).and_then(|n| self.code_at(n))
    }

    /// Every `(code, path)`, in depth-first token order. For tests and brute-force checks.
    pub fn paths(&self) -> Vec<(Code, Vec<u32>)> {
        let mut out = Vec::with_capacity(self.codes.len());
        let mut path = Vec::new();
        self.collect(Self::ROOT, &mut path, &mut out);
        out
    }

    fn collect(&self, node: NodeId, path: &mut Vec<u32>, out: &mut Vec<(Code, Vec<u32>)>) {
        if let Some(code) = self.code_at(node) {
            out.push((code.clone(), path.clone()));
        }
        for (t, child) in self.children(node) {
            path.push(t);
            self.collect(child, path, out);
            path.pop();
        }
    }

    /// The mask of `codes` over this trie: the nodes on their paths, found by walking up from
    /// each code's end node (so the cost is the codes' path lengths, whatever the trie's size).
    /// Codes the trie does not hold are listed in [`TrieMask::missing`]; repeats count once.
    pub fn mask<'a>(&self, codes: impl IntoIterator<Item = &'a Code>) -> TrieMask {
        let mut mask = TrieMask::default();
        let mut seen = std::collections::HashSet::new();
        for code in codes {
            if !seen.insert(code) {
                continue;
            }
            let Some(&end) = self.code_node.get(code) else {
                mask.missing.push(code.clone());
                continue;
            };
            mask.codes += 1;
            let mut node = end;
            while node != Self::ROOT {
                mask.nodes.push(node);
                node = self.node_parent[node as usize];
            }
        }
        if mask.codes > 0 {
            mask.nodes.push(Self::ROOT);
        }
        mask.nodes.sort_unstable();
        mask.nodes.dedup();
        mask
    }

    /// The allowed next tokens at `node` within `mask` (all of them without one), sorted.
    pub fn children_within<'a>(
        &'a self,
        node: NodeId,
        mask: Option<&'a TrieMask>,
    ) -> impl Iterator<Item = (u32, NodeId)> + 'a {
        self.children(node)
            .filter(move |&(_, child)| mask.is_none_or(|m| m.allows(child)))
    }

    /// The codes, in insertion order.
    pub fn codes(&self) -> &[Code] {
        &self.codes
    }

    /// Number of codes.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether the trie has no codes (never true for a built trie).
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Number of nodes, root included.
    pub fn node_count(&self) -> usize {
        self.node_code.len()
    }

    /// Tokens of the longest path: an upper bound on decode steps.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// The largest token id on any edge, so a caller can check the trie against a vocabulary.
    pub fn max_token(&self) -> Option<u32> {
        self.edge_token.iter().copied().max()
    }

    /// Bytes held on the heap (the flat arrays), for memory reports.
    pub fn heap_bytes(&self) -> usize {
        4 * (self.edge_start.capacity()
            + self.edge_token.capacity()
            + self.edge_child.capacity()
            + self.node_code.capacity()
            + self.node_parent.capacity())
            + std::mem::size_of::<Code>() * self.codes.capacity()
            + (std::mem::size_of::<Code>() + 4) * self.code_node.capacity()
    }
}
