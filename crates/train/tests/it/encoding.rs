//! Loss span, padding and truncation of encoded examples.

use candle_core::Device;
use config::TruncateSide;
use train::batch::{choose_pad_id, collate, epoch_batches};
use train::encode::{encode_all, EncodeOptions, TRUNCATION_MARKER};

use crate::common::{examples, Fixture};

fn opts(max: usize, side: TruncateSide) -> EncodeOptions {
    EncodeOptions {
        max_seq_len: max,
        truncate_side: side,
    }
}

#[test]
fn first_batch_decoded_shows_loss_exactly_on_answer_and_end_token() {
    let fx = Fixture::new(1);
    let exs = examples(10);
    let set = encode_all(&fx.tok, &fx.chat, &exs, &opts(256, TruncateSide::Left)).unwrap();
    assert_eq!(set.truncated, 0);
    let pad = choose_pad_id(fx.tok.pad_id(), fx.tok.eos_ids());
    assert!(
        !fx.tok.eos_ids().contains(&pad),
        "pad must not look like EOS"
    );
    let lengths: Vec<usize> = set.examples.iter().map(|e| e.ids.len()).collect();
    let first = &epoch_batches(&lengths, 4, 42, 0)[0];
    let rows: Vec<_> = first.iter().map(|&i| &set.examples[i]).collect();
    let batch = collate(&rows, pad, &Device::Cpu).unwrap();
    let ids = batch.ids.to_vec2::<u32>().unwrap();
    let mask = batch.mask.to_vec2::<u32>().unwrap();
    let t = batch.width;
    // Group the supervised targets by row and check they are the next tokens.
    let mut per_row: Vec<Vec<u32>> = vec![Vec::new(); rows.len()];
    for (&at, &target) in batch.predict_at.iter().zip(&batch.targets) {
        let (row, pos) = (at as usize / t, at as usize % t);
        assert_eq!(ids[row][pos + 1], target, "target is the next token");
        assert_eq!(mask[row][pos + 1], 1, "no loss on padding");
        per_row[row].push(target);
    }
    for (row, &i) in first.iter().enumerate() {
        let supervised = fx.tok.decode(&per_row[row], false).unwrap();
        let gold = exs[i].codes[0].dotted();
        assert_eq!(supervised, format!("{gold} <|end|>"), "row {row}");
        // The end token is the last supervised one and it is a stop id.
        assert!(fx.tok.eos_ids().contains(per_row[row].last().unwrap()));
        // Everything before the answer is prompt and carries no loss.
        let prompt = fx
            .tok
            .decode(&ids[row][..rows[row].loss_start], false)
            .unwrap();
        assert!(prompt.ends_with("<|assistant|>"), "{prompt}");
        assert!(!prompt.contains(&gold));
        // Padding after the row is masked.
        let real = rows[row].ids.len();
        assert!(mask[row][real..].iter().all(|&m| m == 0));
        assert!(ids[row][real..].iter().all(|&x| x == pad));
    }
}

#[test]
fn long_dialogues_are_shortened_on_the_configured_side_and_counted() {
    let fx = Fixture::new(1);
    let mut exs = examples(3);
    exs[1].text = (0..30)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let full = encode_all(&fx.tok, &fx.chat, &exs, &opts(256, TruncateSide::Left)).unwrap();
    let long_len = full.examples[1].ids.len();
    let max = long_len - 10;
    for side in [
        TruncateSide::Left,
        TruncateSide::Right,
        TruncateSide::Middle,
    ] {
        let set = encode_all(&fx.tok, &fx.chat, &exs, &opts(max, side)).unwrap();
        assert_eq!(set.truncated, 1, "{side:?}");
        let e = &set.examples[1];
        assert!(e.truncated && e.ids.len() <= max);
        // The answer is intact and still the loss span.
        let answer = fx.tok.decode(&e.ids[e.loss_start..], false).unwrap();
        assert_eq!(answer, format!("{} <|end|>", exs[1].codes[0].dotted()));
        let prompt = fx.tok.decode(&e.ids[..e.loss_start], false).unwrap();
        assert!(
            prompt.contains(TRUNCATION_MARKER.trim()),
            "{side:?}: {prompt}"
        );
        let words: Vec<&str> = prompt
            .split_whitespace()
            .filter(|w| w.starts_with('w'))
            .collect();
        match side {
            TruncateSide::Left => assert_eq!(words.last(), Some(&"w29")),
            TruncateSide::Right => assert_eq!(words.first(), Some(&"w0")),
            TruncateSide::Middle => {
                assert_eq!(words.first(), Some(&"w0"));
                assert_eq!(words.last(), Some(&"w29"));
            }
        }
    }
    // Nothing fits: a clear error naming the example.
    let err = encode_all(&fx.tok, &fx.chat, &exs, &opts(5, TruncateSide::Left)).unwrap_err();
    assert!(err.to_string().contains("ex0"), "{err}");
}

/// Training targets list each code once ("Each code once" in `prompt::extract`): an example whose
/// codes repeat trains on exactly the answer of its codes listed once, in first-seen order.
#[test]
fn a_target_lists_each_code_once_in_first_seen_order() {
    let fx = Fixture::new(1);
    let code = |s: &str| icd::Code::parse(s).unwrap();
    let mut repeated = examples(1);
    repeated[0].codes = ["J06.9", "I10", "J06.9", "I10", "I10"].map(code).to_vec();
    let mut once = examples(1);
    once[0].codes = ["J06.9", "I10"].map(code).to_vec();
    let mut swapped = examples(1);
    swapped[0].codes = ["I10", "J06.9"].map(code).to_vec();
    let enc = |exs| encode_all(&fx.tok, &fx.chat, exs, &opts(256, TruncateSide::Left)).unwrap();
    let (a, b, c) = (enc(&repeated), enc(&once), enc(&swapped));
    assert_eq!(a.examples[0].ids, b.examples[0].ids);
    assert_eq!(a.examples[0].loss_start, b.examples[0].loss_start);
    assert_ne!(a.examples[0].ids, c.examples[0].ids, "order is kept");
}

#[test]
fn epoch_order_is_seeded_length_grouped_and_covers_every_example() {
    let lengths: Vec<usize> = (0..200).map(|i| 10 + (i * 37) % 90).collect();
    let a = epoch_batches(&lengths, 4, 7, 0);
    assert_eq!(a, epoch_batches(&lengths, 4, 7, 0));
    assert_ne!(a, epoch_batches(&lengths, 4, 7, 1));
    assert_ne!(a, epoch_batches(&lengths, 4, 8, 0));
    let mut all: Vec<usize> = a.iter().flatten().copied().collect();
    all.sort();
    assert_eq!(all, (0..200).collect::<Vec<_>>());
    // Grouping: padding far below that of random batches.
    let pad = |bs: &[Vec<usize>]| -> usize {
        bs.iter()
            .map(|b| {
                let m = b.iter().map(|&i| lengths[i]).max().unwrap();
                b.iter().map(|&i| m - lengths[i]).sum::<usize>()
            })
            .sum()
    };
    let random: Vec<Vec<usize>> = (0..200)
        .collect::<Vec<_>>()
        .chunks(4)
        .map(<[usize]>::to_vec)
        .collect();
    assert!(
        pad(&a) * 4 < pad(&random),
        "{} vs {}",
        pad(&a),
        pad(&random)
    );
}
