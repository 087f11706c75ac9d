//! The linear kernel over training documents.
//!
//! With a few hundred to a few thousand training documents, thousands of labels and a feature space of
//! a few hundred thousand n-grams, the classifier is cheapest in its dual form: every per-label weight
//! vector is a combination of training vectors, `w_c = sum_i beta_ci x_i`, so training only needs the
//! inner products `x_i . x_j` (this Gram matrix, computed once and shared by all labels) and prediction
//! needs `x . x_i` for the new document. The model is still an ordinary linear classifier on the TF-IDF
//! features; only its storage is dual. Memory and kernel time grow with the square of the training set.

use crate::sparse::SparseVec;
use crate::threads;

/// Symmetric Gram matrix `K_ij = x_i . x_j + bias^2`, row-major, `f32`.
///
/// The constant `bias^2` is the inner product of an appended constant feature, the intercept used by
/// LIBLINEAR (regularised like the other weights).
#[derive(Debug, Clone)]
pub struct Gram {
    pub n: usize,
    data: Vec<f32>,
}

impl Gram {
    pub fn compute(xs: &[SparseVec], dim: usize, bias: f64) -> Gram {
        let n = xs.len();
        let bias_sq = bias * bias;
        // Row i holds x_i . x_j for j >= i; the lower triangle is mirrored afterwards.
        let upper: Vec<Vec<f32>> = threads::map_indexed(n, |i| {
            let mut dense = vec![0.0f32; dim];
            xs[i].scatter(&mut dense);
            (i..n)
                .map(|j| (xs[j].dot_dense(&dense) + bias_sq) as f32)
                .collect()
        });
        let mut data = vec![0.0f32; n * n];
        for (i, row) in upper.iter().enumerate() {
            for (off, v) in row.iter().enumerate() {
                let j = i + off;
                data[i * n + j] = *v;
                data[j * n + i] = *v;
            }
        }
        Gram { n, data }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.n..(i + 1) * self.n]
    }

    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.n + j]
    }
}

/// `x . x_i + bias^2` for every training vector: the kernel row of a new document.
pub fn kernel_row(x: &SparseVec, train: &[SparseVec], dense: &mut [f32], bias: f64) -> Vec<f32> {
    x.scatter(dense);
    let bias_sq = bias * bias;
    let row = train
        .iter()
        .map(|t| (t.dot_dense(dense) + bias_sq) as f32)
        .collect();
    x.clear_from(dense);
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_is_symmetric_inner_products_plus_bias() {
        let xs = vec![
            SparseVec::from_pairs(vec![(0, 1.0), (2, 2.0)]),
            SparseVec::from_pairs(vec![(2, 1.0)]),
            SparseVec::from_pairs(vec![(1, 3.0)]),
        ];
        let g = Gram::compute(&xs, 3, 1.0);
        assert_eq!(g.get(0, 0), 6.0);
        assert_eq!(g.get(0, 1), 3.0);
        assert_eq!(g.get(1, 0), 3.0);
        assert_eq!(g.get(0, 2), 1.0);
        let mut dense = vec![0.0; 3];
        assert_eq!(kernel_row(&xs[0], &xs, &mut dense, 1.0), g.row(0).to_vec());
        assert!(dense.iter().all(|v| *v == 0.0));
    }
}
