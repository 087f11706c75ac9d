//! The LoRA lifecycle of a model: attach fresh pairs, list and check the trainable variables,
//! list the frozen base tensors, merge and unmerge, and replace values from a loaded adapter.
//! Reading and writing PEFT adapter folders is `crate::adapter`.

use std::collections::{BTreeSet, HashMap};

use candle_core::{Tensor, Var};

use super::Model;
use crate::classifier::SCORE_KEY;
use crate::error::{LmError, Result};
use crate::linear::{BaseWeight, Linear, LoraPair};
use crate::lora::{self, LoraSpec, LORA_TARGETS};

impl Model {
    /// The LoRA settings in use, if adapters are attached.
    pub fn lora_spec(&self) -> Option<&LoraSpec> {
        self.lora.as_ref()
    }

    /// Attaches fresh LoRA pairs (PEFT init, seeded) to every target projection of every layer.
    pub fn add_lora(&mut self, spec: &LoraSpec, seed: u64) -> Result<()> {
        if self.lora.is_some() {
            return Err(LmError::Lora("adapters already attached".into()));
        }
        let targets = spec.validate()?;
        let mut rng = lora::init_rng(seed);
        for layer in &mut self.layers {
            for t in &targets {
                let lin = layer.projection_mut(t).expect("validated target");
                if matches!(lin.base, BaseWeight::Quantized(_)) {
                    return Err(LmError::Lora(format!(
                        "{t}: LoRA on quantised weights is not supported (no backward)"
                    )));
                }
                let (a, b) = lora::init_pair(
                    spec.r,
                    lin.in_dim(),
                    lin.out_dim(),
                    &mut rng,
                    self.dtype,
                    &self.device,
                )?;
                lin.lora = Some(LoraPair {
                    a,
                    b,
                    scale: spec.scale(),
                    dropout: spec.dropout as f32,
                    merged: false,
                });
            }
        }
        self.lora = Some(spec.clone());
        Ok(())
    }

    /// Every trainable variable with its PEFT tensor name (`...q_proj.lora_A.weight`), layer by
    /// layer, then the classification head when one is attached ([`SCORE_KEY`]). These are the
    /// only `Var`s in the model; hand exactly these to the optimiser.
    pub fn lora_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for t in LORA_TARGETS {
                if let Some(l) = layer.projection(t).and_then(|p| p.lora.as_ref()) {
                    let m = lora::peft_module(i, t);
                    out.push((format!("{m}.lora_A.weight"), l.a.clone()));
                    out.push((format!("{m}.lora_B.weight"), l.b.clone()));
                }
            }
        }
        if let Some(head) = &self.score {
            out.push((SCORE_KEY.to_string(), head.weight.clone()));
        }
        out
    }

    /// Errors unless the trainable names are exactly `expected`, naming the differences.
    pub fn assert_trainable(&self, expected: &BTreeSet<String>) -> Result<()> {
        let actual: BTreeSet<String> = self.lora_vars().into_iter().map(|(n, _)| n).collect();
        if &actual == expected {
            return Ok(());
        }
        let (missing, extra) = differences(expected, &actual);
        Err(LmError::Lora(format!(
            "trainable set differs: missing {missing:?}, unexpected {extra:?}"
        )))
    }

    /// The trainable names the attached spec implies (for [`Model::assert_trainable`]).
    pub fn expected_trainable(&self) -> Result<BTreeSet<String>> {
        let spec = self
            .lora
            .as_ref()
            .ok_or_else(|| LmError::Lora("no adapters attached".into()))?;
        let targets = spec.validate()?;
        let mut keys: BTreeSet<String> = lora::peft_keys(self.config.num_layers, &targets)
            .into_iter()
            .collect();
        if self.score.is_some() {
            keys.insert(SCORE_KEY.to_string());
        }
        Ok(keys)
    }

    /// Every frozen base tensor (embedding, norms, projections, biases, LM head), for checks
    /// that none of them receives a gradient.
    pub fn base_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            (
                "model.embed_tokens.weight".to_string(),
                self.embed_tokens.clone(),
            ),
            ("model.norm.weight".to_string(), self.norm.clone()),
        ];
        let mut push_linear = |name: String, lin: &Linear| {
            if let BaseWeight::Dense(w) = &lin.base {
                out.push((format!("{name}.weight"), w.clone()));
            }
            if let Some(b) = &lin.bias {
                out.push((format!("{name}.bias"), b.clone()));
            }
        };
        push_linear("lm_head".into(), &self.lm_head);
        for (i, layer) in self.layers.iter().enumerate() {
            for t in LORA_TARGETS {
                let name = format!("model.layers.{i}.{}.{t}", lora::block_of(t));
                push_linear(name, layer.projection(t).expect("known target"));
            }
        }
        for (i, layer) in self.layers.iter().enumerate() {
            out.extend(layer.named_norms(&format!("model.layers.{i}")));
        }
        out
    }

    /// Folds every LoRA update into the dense base weights (faster inference).
    pub fn merge_lora(&mut self) -> Result<()> {
        self.each_projection(Linear::merge)
    }

    /// Undoes [`Model::merge_lora`].
    pub fn unmerge_lora(&mut self) -> Result<()> {
        self.each_projection(Linear::unmerge)
    }

    /// Replaces adapter values by name (PEFT names, as from [`crate::adapter::load`]); the
    /// names must match the attached set exactly, and adapters must not be merged.
    pub fn set_lora_weights(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        if self.any_merged() {
            return Err(LmError::Lora(
                "adapters are merged; unmerge before setting new values".into(),
            ));
        }
        let expected = self.expected_trainable()?;
        let given: BTreeSet<String> = tensors.keys().cloned().collect();
        if given != expected {
            let (missing, extra) = differences(&expected, &given);
            return Err(LmError::Lora(format!(
                "adapter tensors differ from the model's LoRA set: missing {missing:?}, unexpected {extra:?}"
            )));
        }
        for (name, var) in self.lora_vars() {
            let t = &tensors[&name];
            if t.dims() != var.dims() {
                return Err(LmError::Lora(format!(
                    "{name}: shape {:?}, model expects {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(var.dtype())?.to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// Applies `f` to every projection of every layer, with its PEFT module name, layer by
    /// layer in target order; stops at the first error.
    fn each_projection(&mut self, f: impl Fn(&mut Linear, &str) -> Result<()>) -> Result<()> {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for t in LORA_TARGETS {
                let lin = layer.projection_mut(t).expect("known target");
                f(lin, &lora::peft_module(i, t))?;
            }
        }
        Ok(())
    }

    /// Whether any attached LoRA pair is folded into its base weight.
    fn any_merged(&self) -> bool {
        self.layers.iter().any(|layer| {
            LORA_TARGETS
                .iter()
                .filter_map(|t| layer.projection(t).and_then(|p| p.lora.as_ref()))
                .any(|l| l.merged)
        })
    }
}

/// Names in `expected` but not `actual`, and in `actual` but not `expected`, sorted.
fn differences<'a>(
    expected: &'a BTreeSet<String>,
    actual: &'a BTreeSet<String>,
) -> (Vec<&'a String>, Vec<&'a String>) {
    (
        expected.difference(actual).collect(),
        actual.difference(expected).collect(),
    )
}
