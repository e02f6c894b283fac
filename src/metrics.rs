//! Scores on a `true`/`pred` frame, as `sklearn.metrics` computes them.
//!
//! Predictions come back from `collect` as a frame, so scoring is a method on the
//! frame: `preds.scores()?`. Sums run in row order, so a score is as deterministic as
//! the predictions it reads.

use std::collections::BTreeMap;
use std::fmt;

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::knn::features::{column, finite_values};

/// Regression scores: sklearn's `r2_score`, root of `mean_squared_error`,
/// `mean_absolute_error`.
///
/// ```
/// use sparkbook::metrics::TruePred;
/// use sparkbook::polars::prelude::*;
///
/// let s = df!("true" => [0.0, 2.0], "pred" => [1.0, 1.0])?.scores()?;
/// let r = s.regression().unwrap();
/// assert_eq!((r.rmse, r.mae, r.n), (1.0, 1.0, 2));
/// assert_eq!(r.r2, 0.0); // no better than predicting the mean
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegressionScores {
    /// Coefficient of determination (1 is perfect; can be negative).
    pub r2: f64,
    /// Root mean squared error, in the target's unit.
    pub rmse: f64,
    /// Mean absolute error, in the target's unit.
    pub mae: f64,
    /// Rows scored.
    pub n: usize,
}

/// Classification scores: accuracy and the confusion table.
///
/// ```
/// use sparkbook::metrics::TruePred;
/// use sparkbook::polars::prelude::*;
///
/// let s = df!("true" => [1i64, 2, 2, 3], "pred" => [1i64, 2, 3, 3])?.scores()?;
/// let c = s.classification().unwrap();
/// assert_eq!(c.labels, ["1", "2", "3"]);
/// assert_eq!(c.accuracy, 0.75);
/// assert_eq!(c.confusion[1], vec![0, 1, 1]); // one true "2" predicted as "3"
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ClassificationScores {
    /// Share of rows whose prediction equals the truth.
    pub accuracy: f64,
    /// Rows scored.
    pub n: usize,
    /// Labels, sorted, as they appear in `confusion`.
    pub labels: Vec<String>,
    /// `confusion[i][j]`: rows whose truth is `labels[i]` and prediction `labels[j]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Scores of a true/pred frame: regression or classification, by the `pred` column's
/// type.
///
/// ```
/// use sparkbook::metrics::{Scores, TruePred};
/// use sparkbook::polars::prelude::*;
///
/// let s = df!("true" => ["a", "b"], "pred" => ["a", "a"])?.scores()?;
/// assert!(matches!(s, Scores::Classification(_)));
/// assert!(s.to_string().starts_with("accuracy 0.5000  (2 rows)"));
/// let r = df!("true" => [1.0], "pred" => [1.0])?.scores()?;
/// assert!(matches!(r, Scores::Regression(_)));
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Scores {
    /// `pred` is a float column.
    Regression(RegressionScores),
    /// `pred` holds labels (strings or integers).
    Classification(ClassificationScores),
}

impl Scores {
    /// The regression scores, if these are regression scores.
    ///
    /// ```
    /// use sparkbook::metrics::TruePred;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let s = df!("true" => [1.0, 2.0], "pred" => [1.0, 2.0])?.scores()?;
    /// assert_eq!(s.regression().unwrap().r2, 1.0);
    /// assert!(s.classification().is_none());
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn regression(&self) -> Option<&RegressionScores> {
        match self {
            Scores::Regression(s) => Some(s),
            Scores::Classification(_) => None,
        }
    }

    /// The classification scores, if these are classification scores.
    ///
    /// ```
    /// use sparkbook::metrics::TruePred;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let s = df!("true" => ["x", "y"], "pred" => ["x", "y"])?.scores()?;
    /// assert_eq!(s.classification().unwrap().accuracy, 1.0);
    /// assert!(s.regression().is_none());
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn classification(&self) -> Option<&ClassificationScores> {
        match self {
            Scores::Classification(s) => Some(s),
            Scores::Regression(_) => None,
        }
    }
}

impl fmt::Display for Scores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scores::Regression(s) => write!(
                f,
                "R2 {:.4}  RMSE {:.4}  MAE {:.4}  ({} rows)",
                s.r2, s.rmse, s.mae, s.n
            ),
            Scores::Classification(s) => {
                writeln!(f, "accuracy {:.4}  ({} rows)", s.accuracy, s.n)?;
                write!(
                    f,
                    "confusion (rows: true, columns: predicted) {:?}",
                    s.labels
                )?;
                for (label, row) in s.labels.iter().zip(&s.confusion) {
                    write!(f, "\n  {label}: {row:?}")?;
                }
                Ok(())
            }
        }
    }
}

/// Scoring for frames with `true` and `pred` columns.
///
/// ```
/// use sparkbook::metrics::TruePred;
/// use sparkbook::polars::prelude::*;
///
/// let preds = df!("true" => [1.0, 2.0, 3.0], "pred" => [1.0, 2.0, 4.0])?;
/// let s = preds.scores()?;
/// let r = s.regression().unwrap();
/// assert_eq!(r.mae, 1.0 / 3.0);
/// assert_eq!(r.r2, 1.0 - 1.0 / 2.0);
///
/// let labels = df!("true" => ["a", "b", "b"], "pred" => ["a", "a", "b"])?;
/// let c = labels.scores()?;
/// assert_eq!(c.classification().unwrap().accuracy, 2.0 / 3.0);
/// assert_eq!(c.classification().unwrap().confusion, vec![vec![1, 0], vec![1, 1]]);
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub trait TruePred {
    /// Regression scores when `pred` is a float column, classification otherwise.
    fn scores(&self) -> Result<Scores>;
}

/// The `true` and `pred` columns of a non-empty frame.
pub(crate) fn pair(df: &DataFrame) -> Result<(&Column, &Column)> {
    let (t, p) = (column(df, "true")?, column(df, "pred")?);
    if df.height() == 0 {
        return Err(Error::EmptyData {
            what: "true/pred frame",
        });
    }
    Ok((t, p))
}

fn labels(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let cast = column(df, name)?.cast(&DataType::String)?;
    let ca = cast.str()?;
    if let Some(row) = ca.iter().position(|v| v.is_none()) {
        return Err(Error::InvalidValue {
            column: name.to_owned(),
            row: row as u64,
            value: "null".to_owned(),
        });
    }
    Ok(ca.iter().flatten().map(str::to_owned).collect())
}

impl TruePred for DataFrame {
    fn scores(&self) -> Result<Scores> {
        let (_, pred) = pair(self)?;
        if pred.dtype().is_float() {
            let (t, p) = (finite_values(self, "true")?, finite_values(self, "pred")?);
            let n = t.len() as f64;
            let mean = t.iter().sum::<f64>() / n;
            let (mut sse, mut sae, mut sst) = (0.0, 0.0, 0.0);
            for (y, yhat) in t.iter().zip(&p) {
                sse += (y - yhat) * (y - yhat);
                sae += (y - yhat).abs();
                sst += (y - mean) * (y - mean);
            }
            // sklearn's r2_score convention for a constant truth: 1 if perfect, else 0.
            let r2 = if sst == 0.0 {
                if sse == 0.0 { 1.0 } else { 0.0 }
            } else {
                1.0 - sse / sst
            };
            Ok(Scores::Regression(RegressionScores {
                r2,
                rmse: (sse / n).sqrt(),
                mae: sae / n,
                n: t.len(),
            }))
        } else {
            let (t, p) = (labels(self, "true")?, labels(self, "pred")?);
            let mut ids = BTreeMap::new();
            for l in t.iter().chain(&p) {
                ids.entry(l.clone()).or_insert(0usize);
            }
            for (i, v) in ids.values_mut().enumerate() {
                *v = i;
            }
            let mut confusion = vec![vec![0; ids.len()]; ids.len()];
            let mut hits = 0;
            for (a, b) in t.iter().zip(&p) {
                confusion[ids[a]][ids[b]] += 1;
                hits += usize::from(a == b);
            }
            Ok(Scores::Classification(ClassificationScores {
                accuracy: hits as f64 / t.len() as f64,
                n: t.len(),
                labels: ids.into_keys().collect(),
                confusion,
            }))
        }
    }
}
