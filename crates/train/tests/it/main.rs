mod classifier;
mod common;
mod encoding;
mod fast_forward;
mod gradients;
mod optim;
mod selection;
mod training;
