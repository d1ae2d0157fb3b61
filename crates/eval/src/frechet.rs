//! The Frechet distance between two Gaussians fitted to feature sets: FID (Inception features of frames) and
//! FVD (I3D features of clips). Float64 throughout.
//!
//! d = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr sqrt(S_a S_b), with tr sqrt(S_a S_b) computed as the sum of
//! square roots of the eigenvalues of the symmetric PSD matrix sqrt(S_a) S_b sqrt(S_a) (similar to S_a S_b):
//! two symmetric eigendecompositions instead of a general matrix square root, so singular covariances (fewer
//! samples than dimensions) stay exact.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Mean and unbiased covariance (divisor n - 1, as NumPy's `np.cov`) of a feature set.
#[derive(Debug, Clone)]
pub struct FeatureStats {
    pub count: usize,
    pub mean: DVector<f64>,
    pub cov: DMatrix<f64>,
}

impl FeatureStats {
    /// Rows of equal length; at least two rows.
    pub fn from_rows<R: AsRef<[f32]>>(rows: &[R]) -> Result<Self, String> {
        let n = rows.len();
        if n < 2 {
            return Err(format!("a feature set needs at least 2 samples, got {n}"));
        }
        let dim = rows[0].as_ref().len();
        if let Some((i, r)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.as_ref().len() != dim)
        {
            return Err(format!(
                "feature row {i} has {} values, row 0 has {dim}",
                r.as_ref().len()
            ));
        }
        let data = DMatrix::from_fn(n, dim, |i, j| rows[i].as_ref()[j] as f64);
        let mean = DVector::from_fn(dim, |j, _| data.column(j).mean());
        let mut centered = data;
        for j in 0..dim {
            centered.column_mut(j).add_scalar_mut(-mean[j]);
        }
        let cov = centered.tr_mul(&centered) / (n - 1) as f64;
        Ok(Self {
            count: n,
            mean,
            cov,
        })
    }
}

/// Square root of a symmetric PSD matrix (negative eigenvalues from rounding clamped to zero).
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new(m.clone());
    let roots = eig.eigenvalues.map(|v| v.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// The Frechet distance between the Gaussians of `a` and `b`.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64, String> {
    if a.mean.len() != b.mean.len() {
        return Err(format!(
            "feature sets of different widths ({} and {})",
            a.mean.len(),
            b.mean.len()
        ));
    }
    let root_a = sqrt_psd(&a.cov);
    let mut inner = &root_a * &b.cov * &root_a;
    // Symmetrise away rounding so the symmetric solver sees exactly what it assumes.
    inner = (&inner + inner.transpose()) * 0.5;
    let trace_sqrt: f64 = SymmetricEigen::new(inner)
        .eigenvalues
        .iter()
        .map(|v| v.max(0.0).sqrt())
        .sum();
    let mean_term = (&a.mean - &b.mean).norm_squared();
    Ok(mean_term + a.cov.trace() + b.cov.trace() - 2.0 * trace_sqrt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_at_distance_zero_from_itself() {
        let rows: Vec<Vec<f32>> = (0..20)
            .map(|i| (0..5).map(|j| ((i * 7 + j * 3) % 11) as f32).collect())
            .collect();
        let s = FeatureStats::from_rows(&rows).unwrap();
        assert!(frechet_distance(&s, &s).unwrap().abs() < 1e-9);
    }

    #[test]
    fn a_shift_adds_its_squared_length() {
        let rows: Vec<Vec<f32>> = (0..30)
            .map(|i| (0..4).map(|j| ((i * 5 + j * 13) % 17) as f32).collect())
            .collect();
        let shifted: Vec<Vec<f32>> = rows
            .iter()
            .map(|r| r.iter().map(|v| v + 2.0).collect())
            .collect();
        let (a, b) = (
            FeatureStats::from_rows(&rows).unwrap(),
            FeatureStats::from_rows(&shifted).unwrap(),
        );
        assert!((frechet_distance(&a, &b).unwrap() - 16.0).abs() < 1e-9);
    }

    #[test]
    fn bad_feature_sets_are_refused() {
        assert!(FeatureStats::from_rows(&[vec![1.0f32]]).is_err());
        assert!(FeatureStats::from_rows(&[vec![1.0f32, 2.0], vec![1.0]]).is_err());
    }
}
