//! A chat completion's answer: the generated text with what the server says about it. Errors
//! describe the answer's shape, never its text.

use serde_json::Value;

use crate::error::{RemoteError, Result};

/// What the server generated for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The assistant message's content (empty when the server sent `null`).
    pub text: String,
    /// Why generation stopped (`stop`, `length`), as the server says.
    pub finish_reason: Option<String>,
    /// Prompt tokens the server counted (`usage.prompt_tokens`).
    pub prompt_tokens: Option<u64>,
    /// Generated tokens the server counted (`usage.completion_tokens`).
    pub completion_tokens: Option<u64>,
    /// Sum of the answer tokens' log-probabilities, when the server returned them
    /// (`choices[0].logprobs.content[*].logprob`): the answer's sequence log-probability.
    pub logprob: Option<f64>,
}

/// Parses the JSON of a chat completion.
pub(crate) fn parse_answer(body: &str, entry: &str, path: &'static str) -> Result<Answer> {
    let bad = |reason: String| RemoteError::BadResponse {
        entry: entry.to_string(),
        path,
        reason,
    };
    let v: Value =
        serde_json::from_str(body).map_err(|e| bad(format!("not JSON (line {})", e.line())))?;
    let choice = v
        .pointer("/choices/0")
        .ok_or_else(|| bad("no choices[0]".into()))?;
    let text = match choice.pointer("/message/content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) => String::new(),
        Some(other) => return Err(bad(format!("message.content is {}", kind(other)))),
        None => return Err(bad("no choices[0].message.content".into())),
    };
    let count = |pointer: &str| v.pointer(pointer).and_then(Value::as_u64);
    Ok(Answer {
        text,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        prompt_tokens: count("/usage/prompt_tokens"),
        completion_tokens: count("/usage/completion_tokens"),
        logprob: sequence_logprob(choice),
    })
}

/// The sum of the returned token log-probabilities; `None` unless every token has a finite one.
fn sequence_logprob(choice: &Value) -> Option<f64> {
    let tokens = choice.pointer("/logprobs/content")?.as_array()?;
    if tokens.is_empty() {
        return None;
    }
    tokens.iter().try_fold(0.0, |sum, t| {
        t.get("logprob")
            .and_then(Value::as_f64)
            .filter(|l| l.is_finite())
            .map(|l| sum + l)
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_with_usage_and_logprobs_is_read_whole() {
        let body = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"J06.9"},
            "finish_reason":"stop","logprobs":{"content":[{"token":"J","logprob":-0.25},
            {"token":"06.9","logprob":-0.5}]}}],"usage":{"prompt_tokens":57,"completion_tokens":3}}"#;
        let a = parse_answer(body, "m", "/chat/completions").unwrap();
        assert_eq!(a.text, "J06.9");
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
        assert_eq!((a.prompt_tokens, a.completion_tokens), (Some(57), Some(3)));
        assert_eq!(a.logprob, Some(-0.75));
    }

    #[test]
    fn missing_parts_are_none_and_broken_answers_are_named_without_their_text() {
        let a = parse_answer(
            r#"{"choices":[{"message":{"content":null}}]}"#,
            "m",
            "/chat/completions",
        )
        .unwrap();
        assert_eq!(
            (a.text.as_str(), a.prompt_tokens, a.logprob),
            ("", None, None)
        );
        for (body, says) in [
            ("Patient Maria said", "not JSON"),
            (r#"{"choices":[]}"#, "no choices[0]"),
            (
                r#"{"choices":[{"message":{"content":["Maria"]}}]}"#,
                "an array",
            ),
            (r#"{"choices":[{"text":"Maria"}]}"#, "message.content"),
        ] {
            let err = parse_answer(body, "m", "/chat/completions")
                .unwrap_err()
                .to_string();
            assert!(err.contains(says) && err.contains("\"m\""), "{err}");
            assert!(!err.contains("Maria"), "{err}");
        }
    }
}
