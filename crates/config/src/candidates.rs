//! Retrieval-narrowed decoding: `candidates = { retriever = "tfidf", k = 50 }` on a model entry
//! (or under `[eval]` as the default of every decoding model). A first stage fitted on the
//! training split proposes `k` codes per example and constrained decoding ranks only those, so
//! the retriever's recall@k caps what the arm can reach.

use serde::{Deserialize, Serialize};

/// The first stage that proposes the candidate codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retriever {
    /// The TF-IDF + logistic regression baseline, fitted on the training split.
    Tfidf,
}

impl Retriever {
    pub fn as_str(self) -> &'static str {
        match self {
            Retriever::Tfidf => "tfidf",
        }
    }
}

/// Which retriever narrows decoding, and to how many codes per example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidatesConfig {
    pub retriever: Retriever,
    /// Candidate codes per example; at least 1.
    pub k: usize,
}

/// The most candidates a config may ask for: beyond it the narrowing narrows nothing that
/// decoding over every leaf would not do, at the cost of a retriever ranking per example.
pub const MAX_CANDIDATES: usize = 10_000;

impl CandidatesConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.k == 0 || self.k > MAX_CANDIDATES {
            return Err(format!(
                "candidates.k = {} must lie in 1..={MAX_CANDIDATES}",
                self.k
            ));
        }
        Ok(())
    }
}

impl crate::ModelConfig {
    /// Whether this entry decodes here, so that a retriever can narrow its decoding: a model on
    /// an OpenAI-compatible server decodes there, out of reach of a per-example trie, and a
    /// classifier ranks codes with its head without decoding at all.
    pub fn decodes_here(&self) -> bool {
        self.backend.is_local() && self.method.is_generate()
    }

    /// The narrowing this entry decodes with: its own `candidates`, else `[eval] candidates` when
    /// it decodes here; `None` for plain decoding.
    pub fn candidates_with(&self, eval: &crate::EvalConfig) -> Option<CandidatesConfig> {
        if !self.decodes_here() {
            return None;
        }
        self.candidates.or(eval.candidates)
    }

    /// An entry's own `candidates` must be valid and the entry must decode here.
    pub(crate) fn check_candidates(&self) -> Result<(), String> {
        let Some(c) = &self.candidates else {
            return Ok(());
        };
        c.check()
            .map_err(|m| format!("model {:?}: {m}", self.name))?;
        if !self.backend.is_local() {
            return Err(format!(
                "model {:?}: candidates narrow decoding done here, but a backend = \"openai\" model decodes on its server\nhint: remove candidates from this entry",
                self.name
            ));
        }
        if !self.decodes_here() {
            return Err(format!(
                "model {:?}: candidates narrow decoding, but a method = \"classifier\" model ranks the training codes with its head and decodes nothing\nhint: remove candidates from this entry, or add a method = \"generate\" entry with them",
                self.name
            ));
        }
        Ok(())
    }
}

/// `[eval] candidates` narrows constrained decoding, so it needs `constrained = true`; an entry's
/// own `candidates` decodes constrained over its list whatever `[eval] constrained` says.
pub(crate) fn check_default(eval: &crate::EvalConfig) -> Result<(), String> {
    let Some(c) = &eval.candidates else {
        return Ok(());
    };
    c.check()?;
    if !eval.constrained {
        return Err(
            "narrows constrained decoding, but [eval] constrained = false\nhint: set constrained = true, or put candidates on the model entries that should be narrowed"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Config, Retriever};

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml_str(text, "x.toml").map_err(|e| e.to_string())
    }

    const SLM: &str = "[[models.slm]]\nname = \"smol\"\nmodel = \"m.gguf\"\n";

    #[test]
    fn candidates_parse_on_an_entry_and_as_the_eval_default() {
        let c = load(&format!(
            "{SLM}candidates = {{ retriever = \"tfidf\", k = 50 }}\n"
        ))
        .unwrap();
        let own = c.models.slm[0].candidates.unwrap();
        assert_eq!((own.retriever, own.k), (Retriever::Tfidf, 50));
        assert_eq!(c.models.slm[0].candidates_with(&c.eval), Some(own));
        let again = Config::from_toml_str(&c.to_toml_string(), "resolved").unwrap();
        assert_eq!(again, c);

        let c = load(&format!(
            "{SLM}[eval]\ncandidates = {{ retriever = \"tfidf\", k = 7 }}\n"
        ))
        .unwrap();
        assert_eq!(c.models.slm[0].candidates, None);
        assert_eq!(c.models.slm[0].candidates_with(&c.eval).unwrap().k, 7);
        assert!(!Config::default().to_toml_string().contains("candidates"));
    }

    #[test]
    fn bad_candidates_are_refused_naming_the_key() {
        let cases = [
            (
                format!("{SLM}candidates = {{ retriever = \"tfidf\", k = 0 }}\n"),
                "candidates.k = 0",
            ),
            (
                format!("{SLM}candidates = {{ retriever = \"bm25\", k = 5 }}\n"),
                "unknown variant `bm25`, expected `tfidf`",
            ),
            (
                format!("{SLM}candidates = {{ retriever = \"tfidf\" }}\n"),
                "missing field `k`",
            ),
            (
                "[eval]\ncandidates = { retriever = \"tfidf\", k = 0 }\n".to_string(),
                "eval.candidates",
            ),
            (
                "[eval]\nconstrained = false\ncandidates = { retriever = \"tfidf\", k = 5 }\n"
                    .to_string(),
                "constrained = false",
            ),
            (
                "[[models.llm]]\nname = \"big\"\nmodel = \"m\"\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:8000/v1\"\ncandidates = { retriever = \"tfidf\", k = 5 }\n"
                    .to_string(),
                "decodes on its server",
            ),
            (
                format!(
                    "{SLM}method = \"classifier\"\ncandidates = {{ retriever = \"tfidf\", k = 5 }}\n"
                ),
                "method = \"classifier\" model ranks the training codes with its head",
            ),
        ];
        for (text, named) in cases {
            let err = load(&text).expect_err(&text);
            assert!(err.contains(named), "{text}: {err}");
            assert!(err.contains("x.toml"), "{text}: {err}");
        }
    }

    #[test]
    fn a_classifier_ignores_the_eval_default_and_its_generator_sibling_keeps_it() {
        let text = format!(
            "{SLM}[[models.slm]]\nname = \"cls\"\nmodel = \"m.gguf\"\nmethod = \"classifier\"\n[eval]\ncandidates = {{ retriever = \"tfidf\", k = 5 }}\n"
        );
        let c = load(&text).unwrap();
        assert!(c.models.slm[0].decodes_here());
        assert_eq!(c.models.slm[0].candidates_with(&c.eval).unwrap().k, 5);
        assert!(!c.models.slm[1].decodes_here());
        assert_eq!(c.models.slm[1].candidates_with(&c.eval), None);
    }

    #[test]
    fn a_served_model_ignores_the_eval_default() {
        let text = "[[models.llm]]\nname = \"big\"\nmodel = \"m\"\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:8000/v1\"\n[eval]\ncandidates = { retriever = \"tfidf\", k = 5 }\n";
        let c = load(text).unwrap();
        assert_eq!(c.models.llm[0].candidates_with(&c.eval), None);
    }
}
