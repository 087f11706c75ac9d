//! Sparse feature vectors: a document has a few thousand non-zero n-grams out of a vocabulary of
//! hundreds of thousands, so dense vectors would waste both memory and time.

/// A sparse vector with strictly increasing indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVec {
    pub idx: Vec<u32>,
    pub val: Vec<f32>,
}

impl SparseVec {
    /// Builds a vector from unsorted `(index, value)` pairs with unique indices.
    pub fn from_pairs(mut pairs: Vec<(u32, f32)>) -> SparseVec {
        pairs.sort_unstable_by_key(|p| p.0);
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        let (idx, val) = pairs.into_iter().unzip();
        SparseVec { idx, val }
    }

    pub fn nnz(&self) -> usize {
        self.idx.len()
    }

    pub fn norm_sq(&self) -> f64 {
        self.val.iter().map(|v| f64::from(*v) * f64::from(*v)).sum()
    }

    /// Scales the vector to unit Euclidean length (no-op for the zero vector).
    pub fn normalize(&mut self) {
        let norm = self.norm_sq().sqrt();
        if norm > 0.0 {
            for v in &mut self.val {
                *v = (f64::from(*v) / norm) as f32;
            }
        }
    }

    /// Dot product with a dense vector indexed by feature id.
    pub fn dot_dense(&self, dense: &[f32]) -> f64 {
        self.idx
            .iter()
            .zip(&self.val)
            .map(|(i, v)| f64::from(*v) * f64::from(dense[*i as usize]))
            .sum()
    }

    /// Writes the vector into `dense` (which must be zero at these indices).
    pub fn scatter(&self, dense: &mut [f32]) {
        for (i, v) in self.idx.iter().zip(&self.val) {
            dense[*i as usize] = *v;
        }
    }

    /// Resets the entries written by [`SparseVec::scatter`] to zero.
    pub fn clear_from(&self, dense: &mut [f32]) {
        for i in &self.idx {
            dense[*i as usize] = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_normalize() {
        let mut v = SparseVec::from_pairs(vec![(3, 4.0), (0, 3.0)]);
        assert_eq!(v.idx, vec![0, 3]);
        v.normalize();
        assert!((v.norm_sq() - 1.0).abs() < 1e-6);
        let mut dense = vec![0.0f32; 5];
        v.scatter(&mut dense);
        assert!((v.dot_dense(&dense) - 1.0).abs() < 1e-6);
        v.clear_from(&mut dense);
        assert!(dense.iter().all(|x| *x == 0.0));
    }
}
