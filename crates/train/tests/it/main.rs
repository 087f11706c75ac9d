mod common;
mod encoding;
mod gradients;
mod optim;
mod training;
