//! A safe, strided wrapper around the `gemm` crate (the kernels candle's CPU matmul uses).
//!
//! Calling `gemm` directly instead of `Tensor::matmul` lets the ops read transposed operands through
//! strides (no copies), accumulate into an existing output, scale in the same pass, and choose
//! single-threaded kernels inside already-parallel loops.

use crate::cpu::Real;

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `rows x cols` matrix.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// A row-major matrix whose rows are `rs` elements apart.
    pub fn strided(data: &'a [T], rows: usize, cols: usize, rs: usize) -> Self {
        let m = Self {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        };
        m.check();
        m
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(
                last < self.data.len(),
                "matrix view {}x{} (strides {}, {}) overruns a slice of {}",
                self.rows,
                self.cols,
                self.rs,
                self.cs,
                self.data.len()
            );
        }
    }
}

/// Whether a GEMM may use all of rayon's threads or must stay on the calling thread (when it is
/// already one task of a parallel loop).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    All,
    Single,
}

/// `dst = beta * a * b` (or `dst += beta * a * b` when `accumulate`), where `dst` is row-major with
/// rows `ld` elements apart.
/// [`gemm`] on `f32`, for the CPU kernels of other crates (the inference attention of `lm`), so
/// that one bounds-checked wrapper guards every unsafe call into the `gemm` crate.
pub fn gemm_f32(
    dst: &mut [f32],
    ld: usize,
    a: Mat<'_, f32>,
    b: Mat<'_, f32>,
    beta: f32,
    accumulate: bool,
    threads: Threads,
) {
    gemm(dst, ld, a, b, beta, accumulate, threads)
}

pub(crate) fn gemm<T: Real>(
    dst: &mut [T],
    ld: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    beta: T,
    accumulate: bool,
    threads: Threads,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "gemm inner dimensions differ: {k} vs {}", b.rows);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ld + n <= dst.len() && n <= ld,
        "gemm output {m}x{n} (ld {ld}) overruns a slice of {}",
        dst.len()
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * ld..i * ld + n].fill(T::zero());
            }
        }
        return;
    }
    let parallelism = match threads {
        Threads::All if m * n * k >= 64 * 64 * 64 => {
            let n_threads = candle_core::utils::get_num_threads();
            if n_threads > 1 {
                gemm::Parallelism::Rayon(n_threads)
            } else {
                gemm::Parallelism::None
            }
        }
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the views were bounds-checked above and in `Mat::check`; `dst` is borrowed mutably
    // and cannot alias `a` or `b`; T is f32 or f64, which gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}
