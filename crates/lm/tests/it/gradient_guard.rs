//! The LoRA gradient guard, shared by the `lm` tests and (by path) the `train` tests: a loss's
//! gradients reach every trainable variable of a model and no base tensor.

use candle_core::backprop::GradStore;
use candle_core::DType;
use lm::Model;

/// Asserts that every LoRA variable (and a classifier head) of `model` has a nonzero gradient in
/// `grads`, and that no base tensor is a variable or has a gradient.
pub fn assert_gradients_reach_only_lora(model: &Model, grads: &GradStore) {
    for (name, var) in model.lora_vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let max = g
            .abs()
            .and_then(|a| {
                a.flatten_all()?
                    .max(0)?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()
            })
            .unwrap();
        assert!(max > 0.0, "{name}: zero gradient");
    }
    for (name, t) in model.base_tensors() {
        assert!(!t.is_variable(), "base tensor {name} is a Var");
        assert!(
            grads.get(&t).is_none(),
            "base tensor {name} received a gradient"
        );
    }
}
