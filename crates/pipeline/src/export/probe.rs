//! Whether an exported tokenizer tokenizes like the one the model was trained with: the same
//! ids for texts chosen to tell pre-tokenizers apart, the same special ids and chat template.
//! An export that fails this would load and run, and quietly feed the model other ids.

use tokenize::Tokenizer;

/// Texts whose splits differ between the pre-tokenizers llama.cpp knows: digit runs (one piece
/// per digit in SmolLM2 and Qwen2, up to three in Llama 3, any length in GPT-2), contractions in
/// both cases, punctuation glued to words, runs of spaces, tabs and newlines, a decomposed
/// accent (Qwen2 normalises to NFC), and non-Latin scripts.
const PROBES: &[&str] = &[
    "Patient: I've had a 39.5 C fever for 12345 days; they're fine, HE'S NOT.",
    "Doctor:\tJ06.9, R05.9 and I10 (2024-01-31)...\n\n  Plan:  rest   +  fluids\r\n",
    "x,y;z 'quoted' \"double\" don't WON'T we'll 1000000 3.14159 -7",
    "Cafe\u{301} cafe\u{301} na\u{ef}ve \u{dc}ber \u{3b1}\u{3b2}\u{3b3} \u{6771}\u{4eac} \u{5e}_^",
    "   leading spaces and trailing   \n\n\n",
];

/// Ok when `exported` encodes every probe (with and without special tokens, and with every
/// special token of `source` written into the text) to the same ids as `source`, and agrees on
/// BOS, EOS and the chat template; otherwise what differs first.
pub fn same_tokenization(source: &Tokenizer, exported: &Tokenizer) -> Result<(), String> {
    let specials = special_tokens(source);
    let mut texts: Vec<String> = PROBES.iter().map(|p| p.to_string()).collect();
    texts.push(format!(
        "{} user\nHi{}\n",
        specials.join(" "),
        specials.join("")
    ));
    for (i, text) in texts.iter().enumerate() {
        for add_special in [false, true] {
            let want = source
                .encode(text, add_special)
                .map_err(|e| e.to_string())?;
            let got = exported
                .encode(text, add_special)
                .map_err(|e| e.to_string())?;
            if want != got {
                let at = want.iter().zip(&got).take_while(|(a, b)| a == b).count();
                return Err(format!(
                    "probe text #{i} (special tokens {}): ids differ from position {at} \
                     ({} ids vs {})",
                    if add_special { "added" } else { "not added" },
                    want.len(),
                    got.len()
                ));
            }
        }
    }
    let facts = |t: &Tokenizer| {
        (
            t.bos_id(),
            t.eos_id(),
            t.chat_template().map(str::to_string),
        )
    };
    if facts(source) != facts(exported) {
        return Err(format!(
            "BOS / EOS / chat template differ: {:?} / {:?} vs {:?} / {:?} (templates equal: {})",
            source.bos_id(),
            source.eos_id(),
            exported.bos_id(),
            exported.eos_id(),
            source.chat_template() == exported.chat_template()
        ));
    }
    if source.eos_ids() != exported.eos_ids() {
        tracing::warn!(
            source = ?source.eos_ids(),
            exported = ?exported.eos_ids(),
            "the exported tokenizer stops generation at other ids"
        );
    }
    Ok(())
}

/// The special (control) tokens of `tokenizer`, by id.
fn special_tokens(tokenizer: &Tokenizer) -> Vec<String> {
    let mut specials: Vec<(u32, String)> = tokenizer
        .inner()
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, t)| t.special && !t.content.is_empty())
        .map(|(id, t)| (id, t.content))
        .collect();
    specials.sort();
    specials.into_iter().map(|(_, s)| s).collect()
}
