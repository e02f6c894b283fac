//! Feature scaling for frames, as sklearn's `StandardScaler`.
//!
//! k-NN compares raw distances, so a feature measured in thousands drowns one
//! measured in units. The scaler is fitted on the training frame only and then
//! applied to every frame that meets the model, so test rows never leak into the
//! statistics. It is plain data (serde), small enough to broadcast next to a model.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::knn::features::{column, finite_values, numeric_columns};

/// Per-column mean and standard deviation, learnt from a training frame.
///
/// ```
/// use sparkbook::preprocessing::StandardScaler;
/// use sparkbook::polars::prelude::*;
///
/// let train = df!("x" => [1.0, 3.0], "big" => [1000i64, 3000], "y" => [0.0, 1.0])?;
/// let scaler = StandardScaler::fit(&train, "y")?;
/// assert_eq!(scaler.columns(), ["x", "big"]);
/// let scaled = scaler.transform(&train)?;
/// assert_eq!(scaled.column("big")?.f64()?.to_vec(), [Some(-1.0), Some(1.0)]);
/// assert_eq!(scaled.column("y")?, train.column("y")?); // the target is left alone
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    columns: Vec<String>,
    means: Vec<f64>,
    scales: Vec<f64>,
}

impl StandardScaler {
    /// Learns every numeric column but `target` (and the `row` index), the columns
    /// [`fit_frame`](crate::knn::KnnParams) uses as features.
    ///
    /// Standard deviations are the population ones (sklearn's); a constant column
    /// gets scale 1, so it is centred and not divided by zero.
    ///
    /// ```
    /// use sparkbook::preprocessing::StandardScaler;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let train = df!("x" => [2.0, 2.0, 2.0], "z" => [0.0, 3.0, 6.0], "y" => [1, 2, 3])?;
    /// let s = StandardScaler::fit(&train, "y")?;
    /// assert_eq!(s.means(), [2.0, 3.0]);
    /// assert_eq!(s.scales(), [1.0, 6.0_f64.sqrt()]);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn fit(train: &DataFrame, target: &str) -> Result<StandardScaler> {
        column(train, target)?;
        StandardScaler::fit_columns(train, &numeric_columns(train, Some(target)))
    }

    /// Learns the named columns only.
    ///
    /// ```
    /// use sparkbook::preprocessing::StandardScaler;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let train = df!("a" => [0.0, 2.0], "b" => [5.0, 5.0])?;
    /// let s = StandardScaler::fit_columns(&train, &["a"])?;
    /// assert_eq!(s.columns(), ["a"]);
    /// let err = StandardScaler::fit_columns(&train, &["c"]).unwrap_err();
    /// assert!(matches!(err, sparkbook::Error::MissingColumn { .. }));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn fit_columns(train: &DataFrame, columns: &[impl AsRef<str>]) -> Result<StandardScaler> {
        if train.height() == 0 {
            return Err(Error::EmptyData {
                what: "scaler training frame",
            });
        }
        let mut scaler = StandardScaler {
            columns: Vec::with_capacity(columns.len()),
            means: Vec::with_capacity(columns.len()),
            scales: Vec::with_capacity(columns.len()),
        };
        for name in columns {
            let values = finite_values(train, name.as_ref())?;
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            scaler.columns.push(name.as_ref().to_owned());
            scaler.means.push(mean);
            scaler.scales.push(if var > 0.0 { var.sqrt() } else { 1.0 });
        }
        Ok(scaler)
    }

    /// The frame with each learnt column replaced by `(value - mean) / scale` as
    /// `f64`; other columns are kept as they are, in place.
    ///
    /// ```
    /// use sparkbook::preprocessing::StandardScaler;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let s = StandardScaler::fit(&df!("x" => [0.0, 4.0], "y" => [0, 1])?, "y")?;
    /// let test = df!("y" => [7], "x" => [6.0])?;
    /// let scaled = s.transform(&test)?;
    /// assert_eq!(scaled.get_column_names(), ["y", "x"]);
    /// assert_eq!(scaled.column("x")?.f64()?.get(0), Some(2.0));
    /// let err = s.transform(&df!("y" => [1])?).unwrap_err();
    /// assert!(err.to_string().contains("`x`"));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn transform(&self, df: &DataFrame) -> Result<DataFrame> {
        let mut columns = df.columns().to_vec();
        for ((name, mean), scale) in self.columns.iter().zip(&self.means).zip(&self.scales) {
            let scaled: Vec<f64> = finite_values(df, name)?
                .into_iter()
                .map(|v| (v - mean) / scale)
                .collect();
            let at = columns
                .iter()
                .position(|c| c.name().as_str() == name)
                .expect("finite_values found the column");
            columns[at] = Column::new(name.as_str().into(), scaled);
        }
        Ok(DataFrame::new(df.height(), columns)?)
    }

    /// The learnt columns, in the order of [`means`](Self::means) and
    /// [`scales`](Self::scales).
    ///
    /// ```
    /// use sparkbook::preprocessing::StandardScaler;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let s = StandardScaler::fit(&df!("b" => [1.0], "a" => [2.0], "t" => [0.0])?, "t")?;
    /// assert_eq!(s.columns(), ["b", "a"]);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Each column's training mean.
    ///
    /// ```
    /// use sparkbook::preprocessing::StandardScaler;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let s = StandardScaler::fit_columns(&df!("a" => [1.0, 2.0, 6.0])?, &["a"])?;
    /// assert_eq!(s.means(), [3.0]);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// Each column's training standard deviation (1 for a constant column).
    ///
    /// ```
    /// use sparkbook::preprocessing::StandardScaler;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let s = StandardScaler::fit_columns(&df!("a" => [1.0, 3.0], "c" => [4.0, 4.0])?, &["a", "c"])?;
    /// assert_eq!(s.scales(), [1.0, 1.0]);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn scales(&self) -> &[f64] {
        &self.scales
    }
}
