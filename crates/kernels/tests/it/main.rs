//! Each op against the slow reference built from candle's differentiable ops, against finite
//! differences, and a guard that its gradients reach the `GradStore`.

mod attention;
mod check;
mod cross_entropy;
mod linear;
mod norm;
mod rope;
mod swiglu;
