//! Recall@k of a first-stage retriever: the share of gold codes inside the candidate lists that
//! narrowed decoding. An arm decoding over those lists can never predict a gold code the
//! retriever left out, so this number caps the arm's recall and is reported beside it.

use icd::Code;

use crate::results::RetrievalRecall;

/// Micro recall@k over examples: `(gold codes found in their example's candidate list) / (gold
/// codes)`, each distinct gold code of an example counted once. Codes compare in canonical form
/// (`J06.9` equals `J069`); a string that is not a code compares verbatim. `recall` is `None`
/// when no example has a gold code.
pub fn retrieval_recall<'a>(
    retriever: &str,
    k: usize,
    examples: impl IntoIterator<Item = (&'a [String], &'a [String])>,
) -> RetrievalRecall {
    let (mut n, mut gold_total, mut covered) = (0usize, 0usize, 0usize);
    for (gold, candidates) in examples {
        n += 1;
        let listed: Vec<String> = candidates.iter().map(|c| canonical(c)).collect();
        let mut gold: Vec<String> = gold.iter().map(|g| canonical(g)).collect();
        gold.sort_unstable();
        gold.dedup();
        gold_total += gold.len();
        covered += gold.iter().filter(|g| listed.contains(g)).count();
    }
    RetrievalRecall {
        retriever: retriever.to_string(),
        k,
        examples: n,
        gold: gold_total,
        covered,
        recall: (gold_total > 0).then(|| covered as f64 / gold_total as f64),
    }
}

fn canonical(code: &str) -> String {
    Code::parse(code).map_or_else(|_| code.to_string(), |c| c.as_str().to_string())
}
