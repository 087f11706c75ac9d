//! What the application tells its user while it works. Library code does not print: it says things
//! to a [`Console`], and the binary decides where they go (stdout, stderr, a progress bar).

/// The user-facing side of a long command. Methods take `&self` so that one console can be shared
/// by a training loop's progress callback and the code around it.
pub trait Console {
    /// A line of the command's result (stdout in the binary).
    fn say(&self, line: &str);
    /// A line about how the work is going (stderr in the binary), kept apart from results.
    fn note(&self, line: &str);
    /// One event of a training run.
    fn training(&self, _progress: &train::Progress) {}
    /// How far the privacy audit's scoring is: `stage` of `done` / `total` examples.
    fn audit(&self, _stage: &str, _done: usize, _total: usize) {}
    /// A stage that showed progress is over (clears a bar).
    fn finish_progress(&self) {}
}
