//! Each op, with both backends, against the slow reference built from candle's differentiable ops
//! (its autograd gives the reference gradients), against finite differences, and the backends
//! against each other.

mod attention;
mod check;
mod cross_entropy;
mod linear;
mod norm;
mod rope;
mod swiglu;
