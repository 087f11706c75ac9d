//! Binary L2-regularised logistic regression solved in the dual by coordinate descent.
//!
//! The primal problem is `min_w 1/2 |w|^2 + C sum_i ln(1 + exp(-y_i w . x_i))`. This is the
//! dual coordinate-descent method of Yu, Huang and Lin (2011), as implemented in LIBLINEAR's
//! `solve_l2r_lr_dual`, written over a precomputed Gram matrix: instead of the weight vector it keeps
//! the decision values `f_j = w . x_j` of all training documents, updated with one Gram row whenever a
//! dual variable moves. Each one-variable sub-problem is solved by a safeguarded Newton method.
//! Visiting order is shuffled with a seeded RNG, so training is deterministic for a seed.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::kernel::Gram;

/// Solver settings.
#[derive(Debug, Clone, Copy)]
pub struct Solver {
    /// Inverse regularisation strength.
    pub c: f64,
    /// Stop when the largest sub-problem gradient of an epoch falls below this.
    pub tol: f64,
    pub max_epochs: usize,
}

/// The fitted dual: `w = sum_i coef_i x_i` (with `coef_i = alpha_i y_i`).
#[derive(Debug, Clone)]
pub struct DualModel {
    pub coef: Vec<f32>,
    pub epochs: usize,
}

/// Trains one binary problem; `positive[i]` says whether training document `i` has the label.
/// `base` is `sum_j K_ij` over all `j` (shared by every label, used to initialise `f` in O(n * pos)).
pub fn train(gram: &Gram, base: &[f64], positive: &[bool], solver: Solver, seed: u64) -> DualModel {
    let n = gram.n;
    let c = solver.c;
    let y: Vec<f64> = positive
        .iter()
        .map(|p| if *p { 1.0 } else { -1.0 })
        .collect();
    // alpha[i] and c - alpha[i] are both kept, as in LIBLINEAR, to avoid cancellation near the bounds.
    let a0 = (0.001 * c).min(1e-8);
    let mut alpha: Vec<[f64; 2]> = vec![[a0, c - a0]; n];
    // f = sum_i a0 y_i K_i = a0 (sum_i K_i - 2 sum_{i positive} K_i)
    let mut f: Vec<f64> = base.iter().map(|b| a0 * b).collect();
    for (i, _) in positive.iter().enumerate().filter(|(_, p)| **p) {
        for (fj, k) in f.iter_mut().zip(gram.row(i)) {
            *fj -= 2.0 * a0 * f64::from(*k);
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let max_inner = 100;
    let mut inner_eps = 1e-2;
    let inner_eps_min = solver.tol.min(1e-8);
    let mut epochs = 0;
    while epochs < solver.max_epochs {
        order.shuffle(&mut rng);
        let mut newton_steps = 0usize;
        let mut g_max = 0.0f64;
        for &i in &order {
            let yi = y[i];
            let a = f64::from(gram.get(i, i));
            let b = yi * f[i];
            // Minimise over alpha_i (slot 0) or over c - alpha_i (slot 1), whichever is far from 0.
            let (slot, sign) = if 0.5 * a * (alpha[i][1] - alpha[i][0]) + b < 0.0 {
                (1, -1.0)
            } else {
                (0, 1.0)
            };
            let old = alpha[i][slot];
            let mut z = old;
            if c - z < 0.5 * c {
                z *= 0.1;
            }
            let grad = |z: f64| a * (z - old) + sign * b + (z / (c - z)).ln();
            let mut gp = grad(z);
            g_max = g_max.max(gp.abs());
            let mut inner = 0;
            while inner <= max_inner {
                if gp.abs() < inner_eps {
                    break;
                }
                let gpp = a + c / (c - z) / z;
                let next = z - gp / gpp;
                z = if next <= 0.0 { z * 0.1 } else { next };
                gp = grad(z);
                newton_steps += 1;
                inner += 1;
            }
            if inner > 0 {
                alpha[i][slot] = z;
                alpha[i][1 - slot] = c - z;
                let step = sign * (z - old) * yi;
                for (fj, k) in f.iter_mut().zip(gram.row(i)) {
                    *fj += step * f64::from(*k);
                }
            }
        }
        epochs += 1;
        if g_max < solver.tol {
            break;
        }
        if newton_steps <= n / 10 {
            inner_eps = inner_eps_min.max(0.1 * inner_eps);
        }
    }
    let coef = alpha
        .iter()
        .zip(&y)
        .map(|(a, yi)| (a[0] * yi) as f32)
        .collect();
    DualModel { coef, epochs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::SparseVec;

    /// Weak regularisation stopped early: enough to separate the clusters.
    const LOOSE: Solver = Solver {
        c: 10.0,
        tol: 1e-3,
        max_epochs: 200,
    };

    /// Run close to the optimum, where its optimality condition can be checked.
    const TIGHT: Solver = Solver {
        c: 1.0,
        tol: 1e-6,
        max_epochs: 1000,
    };

    /// Two clusters on two axes; label = first axis.
    struct Problem {
        gram: Gram,
        base: Vec<f64>,
        positive: Vec<bool>,
    }

    fn problem() -> Problem {
        let xs: Vec<SparseVec> = (0..8)
            .map(|i| {
                let axis = u32::from(i % 2 == 1);
                SparseVec::from_pairs(vec![(axis, 1.0), (2, 0.1 * i as f32)])
            })
            .collect();
        let gram = Gram::compute(&xs, 3, 1.0);
        let base = (0..8)
            .map(|j| (0..8).map(|i| f64::from(gram.get(i, j))).sum())
            .collect();
        let positive = (0..8).map(|i| i % 2 == 0).collect();
        Problem {
            gram,
            base,
            positive,
        }
    }

    impl Problem {
        fn train(&self, solver: Solver, seed: u64) -> DualModel {
            train(&self.gram, &self.base, &self.positive, solver, seed)
        }

        /// Each training document's index, label and decision value under `coef`.
        fn decisions<'a>(
            &'a self,
            coef: &'a [f32],
        ) -> impl Iterator<Item = (usize, bool, f64)> + 'a {
            self.positive.iter().enumerate().map(move |(j, &p)| {
                let f = (0..self.gram.n)
                    .map(|i| f64::from(coef[i]) * f64::from(self.gram.get(i, j)))
                    .sum();
                (j, p, f)
            })
        }
    }

    #[test]
    fn separates_two_clusters_and_is_deterministic() {
        let problem = problem();
        let m = problem.train(LOOSE, 7);
        for (j, positive, d) in problem.decisions(&m.coef) {
            assert_eq!(d > 0.0, positive, "document {j}: decision {d}");
        }
        assert_eq!(m.coef, problem.train(LOOSE, 7).coef);
    }

    #[test]
    fn optimum_satisfies_the_primal_stationarity_condition() {
        // At the optimum, alpha_i = C * sigmoid(-y_i f_i) for every i.
        let problem = problem();
        let m = problem.train(TIGHT, 1);
        for (j, positive, f) in problem.decisions(&m.coef) {
            let y = if positive { 1.0 } else { -1.0 };
            let alpha = f64::from(m.coef[j]) * y;
            let expected = 1.0 / (1.0 + (y * f).exp());
            assert!(
                (alpha - expected).abs() < 1e-3,
                "doc {j}: {alpha} vs {expected}"
            );
        }
    }
}
