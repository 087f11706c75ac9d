//! The terminal side of [`pipeline::Console`]: results on stdout, progress notes on stderr, and
//! progress bars for training and the audit (one at a time, drawn on stderr once their work starts).

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use train::Progress;

const TRAINING_BAR: &str = "{bar:30} {pos}/{len} steps  {msg}  eta {eta}";
const AUDIT_BAR: &str = "{msg:>20} {bar:30} {pos}/{len}";

/// Prints what the application layer says.
#[derive(Default)]
pub struct Terminal {
    bar: Mutex<Option<ProgressBar>>,
}

impl Terminal {
    /// The current bar, created with `template` when none is showing.
    fn bar(&self, template: &str) -> Option<ProgressBar> {
        let mut slot = self.bar.lock().ok()?;
        let bar = slot.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Some(bar.clone())
    }

    /// Runs `print` with the bar (if any) out of the way.
    fn print(&self, print: impl FnOnce()) {
        let bar = self.bar.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl pipeline::Console for Terminal {
    fn say(&self, line: &str) {
        self.print(|| println!("{line}"));
    }

    fn note(&self, line: &str) {
        self.print(|| eprintln!("{line}"));
    }

    fn training(&self, p: &Progress) {
        let Some(bar) = self.bar(TRAINING_BAR) else {
            return;
        };
        match p {
            Progress::Started {
                start_step,
                total_steps,
            } => {
                bar.set_length(*total_steps);
                bar.set_position(*start_step);
            }
            Progress::Step {
                step,
                loss,
                tokens_per_s,
                ..
            } => {
                bar.set_position(*step);
                bar.set_message(format!("loss {loss:.4}  {tokens_per_s:.0} tok/s"));
            }
            Progress::Validation {
                step,
                val_loss,
                metric,
                ..
            } => {
                let metric = metric.map_or(String::new(), |(kind, value)| {
                    format!(", {} {value:.4}", kind.name())
                });
                bar.println(format!(
                    "step {step}: validation loss {val_loss:.4}{metric}"
                ));
            }
            Progress::Checkpoint { .. } => {}
        }
    }

    fn audit(&self, stage: &str, done: usize, total: usize) {
        let Some(bar) = self.bar(AUDIT_BAR) else {
            return;
        };
        bar.set_message(stage.to_string());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }

    fn finish_progress(&self) {
        if let Some(bar) = self.bar.lock().ok().and_then(|mut b| b.take()) {
            bar.finish_and_clear();
        }
    }
}
