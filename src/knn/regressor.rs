//! `KnnRegressor`: sklearn's `KNeighborsRegressor`, exact and broadcastable.

use std::path::Path;
use std::sync::Arc;

use linfa::dataset::DatasetBase;
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, Array2, ArrayBase, Data, Ix2};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::features::{self, Matrix, TrainFrame};
use super::model::{Core, neighbor_weights};
use super::params::{Algorithm, KnnParams, KnnValidParams, Regression};
use super::persist;
use crate::broadcast::ByteSize;
use crate::error::{Error, Result};

/// k-nearest-neighbour regression: the mean (or inverse-distance weighted mean) of the
/// k nearest training rows' targets.
///
/// The model owns its training data, so it can be kept across notebook cells, saved,
/// and broadcast to partitions by reference.
///
/// ```
/// use sparkbook::knn::{KnnRegressor, Weights};
/// use sparkbook::polars::prelude::*;
///
/// let train = df!("x" => [0.0, 1.0, 2.0, 10.0], "y" => [0.0, 10.0, 20.0, 100.0])?;
/// let model = KnnRegressor::params(2).fit_frame(&train, "y")?;
/// let test = df!("x" => [0.9, 9.0], "y" => [9.0, 90.0])?;
/// let pred = model.predict_frame(&test)?;
/// assert_eq!(pred.get_column_names(), ["true", "pred"]);
/// // 0.9 is nearest to 1 and 0 -> (10 + 0) / 2; 9.0 is nearest to 10 and 2 -> 60.
/// assert_eq!(pred.column("pred")?.f64()?.to_vec(), vec![Some(5.0), Some(60.0)]);
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct KnnRegressor {
    core: Core<Regression>,
    /// Shared, so that cloning a model to broadcast it copies no data.
    targets: Arc<Vec<f64>>,
}

impl KnnRegressor {
    /// Starts the parameters with `k` neighbours (sklearn's `n_neighbors`).
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use ndarray::array;
    /// use linfa::traits::Fit;
    ///
    /// let data = linfa::Dataset::new(array![[0.0], [1.0], [2.0]], array![0.0, 1.0, 2.0]);
    /// let model = KnnRegressor::params(3).fit(&data)?;
    /// assert_eq!(model.try_predict(&array![[0.0]])?[0], 1.0); // mean of all three
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn params(k: usize) -> KnnParams<Regression> {
        KnnParams::new(k)
    }

    /// Loads a model saved with [`save`](Self::save).
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let train = df!("a" => [1.0, 2.0, 3.0], "y" => [1.0, 4.0, 9.0])?;
    /// let model = KnnRegressor::params(1).fit_frame(&train, "y")?;
    /// let path = std::env::temp_dir().join(format!("sparkbook-doc-{}.json", std::process::id()));
    /// model.save(&path)?;
    /// let back = KnnRegressor::load(&path)?;
    /// assert_eq!(back.predict_frame(&train)?, model.predict_frame(&train)?);
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<KnnRegressor> {
        let model: KnnRegressor = persist::load(path.as_ref(), "regressor")?;
        model
            .core
            .validate(model.targets.len())
            .and_then(|()| match model.targets.iter().all(|t| t.is_finite()) {
                true => Ok(()),
                false => Err("a target is not finite".to_owned()),
            })
            .map_err(|reason| Error::ModelFile {
                path: path.as_ref().display().to_string(),
                reason,
            })?;
        Ok(model)
    }

    /// Saves the model as versioned JSON, atomically: the file is written beside the
    /// target and renamed into place, so a failure leaves no partial file.
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let model = KnnRegressor::params(1).fit_frame(&df!("a" => [1.0], "y" => [2.0])?, "y")?;
    /// let path = std::env::temp_dir().join(format!("sparkbook-doc-{}-reg-save.json", std::process::id()));
    /// model.save(&path)?;
    /// assert_eq!(KnnRegressor::load(&path)?.n_train(), 1);
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        persist::save(path.as_ref(), "regressor", self)
    }

    /// Feature names, in the order the model reads them.
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("b" => [0.0, 1.0], "a" => [1.0, 0.0], "y" => [3.0, 4.0])?;
    /// assert_eq!(KnnRegressor::params(1).fit_frame(&df, "y")?.features(), ["b", "a"]);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn features(&self) -> &[String] {
        &self.core.features
    }

    /// The target column's name, when fitted from a frame.
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use sparkbook::polars::prelude::*;
    /// use ndarray::array;
    /// use linfa::traits::Fit;
    ///
    /// let df = df!("x" => [0.0, 1.0], "price" => [3.0, 4.0])?;
    /// assert_eq!(KnnRegressor::params(1).fit_frame(&df, "price")?.target(), Some("price"));
    /// let data = linfa::Dataset::new(array![[0.0]], array![1.0]);
    /// assert_eq!(KnnRegressor::params(1).fit(&data)?.target(), None);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn target(&self) -> Option<&str> {
        self.core.target.as_deref()
    }

    /// The parameters the model was fitted with.
    ///
    /// ```
    /// use sparkbook::knn::{KnnRegressor, Weights};
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("x" => [0.0, 1.0], "y" => [3.0, 4.0])?;
    /// let model = KnnRegressor::params(2).weights(Weights::Distance).fit_frame(&df, "y")?;
    /// assert_eq!(model.params_used().weights(), Weights::Distance);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn params_used(&self) -> &KnnValidParams<Regression> {
        &self.core.params
    }

    /// The search method in use (`Auto` resolved).
    ///
    /// ```
    /// use sparkbook::knn::{Algorithm, KnnRegressor};
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("x" => [0.0, 1.0], "y" => [3.0, 4.0])?;
    /// let model = KnnRegressor::params(1).algorithm(Algorithm::KdTree).fit_frame(&df, "y")?;
    /// assert_eq!(model.algorithm(), Algorithm::KdTree);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn algorithm(&self) -> Algorithm {
        self.core.algorithm()
    }

    /// Training rows.
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("x" => [0.0, 1.0, 2.0], "y" => [3.0, 4.0, 5.0])?;
    /// assert_eq!(KnnRegressor::params(1).fit_frame(&df, "y")?.n_train(), 3);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn n_train(&self) -> usize {
        self.targets.len()
    }

    /// sklearn's `kneighbors(X, k)`: for each row of `x`, the distances to its `k`
    /// nearest training rows (ascending; ties to the lower row) and their indices.
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use ndarray::array;
    /// use linfa::traits::Fit;
    ///
    /// let data = linfa::Dataset::new(array![[0.0], [3.0], [1.0]], array![0.0, 3.0, 1.0]);
    /// let model = KnnRegressor::params(1).fit(&data)?;
    /// let (dist, idx) = model.kneighbors(&array![[0.9]], 2)?;
    /// assert_eq!(idx.row(0).to_vec(), vec![2, 0]);
    /// assert!((dist[[0, 0]] - 0.1).abs() < 1e-12);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn kneighbors<D: Data<Elem = f64>>(
        &self,
        x: &ArrayBase<D, Ix2>,
        k: usize,
    ) -> Result<(Array2<f64>, Array2<usize>)> {
        self.core.kneighbors(x.view(), k)
    }

    /// Predicts every row of `x`, checking it first (width, finite values).
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use ndarray::array;
    /// use linfa::traits::Fit;
    ///
    /// let data = linfa::Dataset::new(array![[0.0], [1.0], [2.0]], array![0.0, 1.0, 2.0]);
    /// let model = KnnRegressor::params(2).fit(&data)?;
    /// assert_eq!(model.try_predict(&array![[0.1]])?.to_vec(), vec![0.5]);
    /// assert!(model.try_predict(&array![[f64::NAN]]).is_err());
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn try_predict<D: Data<Elem = f64>>(&self, x: &ArrayBase<D, Ix2>) -> Result<Array1<f64>> {
        let queries = self.core.array_queries(x.view())?;
        Ok(Array1::from(self.predict_matrix(&queries)?))
    }

    /// Predicts a frame's rows, matching feature columns by name.
    ///
    /// Returns `pred`, preceded by `true` when the frame has the target column, and by
    /// `row` when the frame carries one (from
    /// [`zip_with_index`](crate::PartitionedFrame::zip_with_index)). This is the
    /// function to `map_partitions` over.
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let model = KnnRegressor::params(1).fit_frame(&df!("x" => [0.0, 10.0], "y" => [1.0, 2.0])?, "y")?;
    /// let pred = model.predict_frame(&df!("row" => [7u64, 8], "x" => [9.0, 1.0])?)?;
    /// assert_eq!(pred.get_column_names(), ["row", "pred"]); // no `y`, so no `true`
    /// assert_eq!(pred.column("pred")?.f64()?.to_vec(), vec![Some(2.0), Some(1.0)]);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn predict_frame(&self, df: &DataFrame) -> Result<DataFrame> {
        let queries = self.core.frame_queries(df)?;
        let pred = self.predict_matrix(&queries)?;
        self.core.output_frame(
            df,
            |target| {
                Ok(Column::new(
                    "true".into(),
                    features::finite_values(df, target)?,
                ))
            },
            Column::new("pred".into(), pred),
        )
    }

    fn predict_matrix(&self, queries: &Matrix) -> Result<Vec<f64>> {
        let k = self.core.params.k;
        let mut pred = Vec::with_capacity(queries.rows);
        let mut weights = Vec::with_capacity(k);
        self.core.for_each_block(queries, k, |nb| {
            for (dist, idx) in nb.distances.chunks(k).zip(nb.indices.chunks(k)) {
                neighbor_weights(self.core.params.weights, dist, &mut weights);
                let (mut num, mut den) = (0.0, 0.0);
                for (&w, &i) in weights.iter().zip(idx) {
                    num += w * self.targets[i as usize];
                    den += w;
                }
                pred.push(num / den);
            }
        })?;
        Ok(pred)
    }
}

impl KnnParams<Regression> {
    /// Fits on a frame: features are all numeric columns except `target` (and `row`).
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("a" => [1.0, 2.0], "name" => ["x", "y"], "y" => [3.0, 4.0])?;
    /// let model = KnnRegressor::params(1).fit_frame(&df, "y")?;
    /// assert_eq!(model.features(), ["a"]); // the string column is not a feature
    /// assert!(KnnRegressor::params(1).fit_frame(&df, "price").is_err());
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn fit_frame(&self, df: &DataFrame, target: &str) -> Result<KnnRegressor> {
        self.fit_frame_inner(TrainFrame::Shared(df), target, None)
    }

    /// Fits like [`fit_frame`](Self::fit_frame), moving the columns out of `df`
    /// into the model: each column's memory is freed as soon as it is copied, so
    /// a large fit needs about one copy of the data at its peak instead of two
    /// (the model must own its rows to outlive the frame's cell). Every check
    /// runs first: on an error `df` is untouched, on success it is left empty.
    /// Memory is only saved when nothing else shares the columns (a clone of the
    /// frame, or a frame it was selected from).
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let mut df = df!("x" => [0.0, 1.0, 2.0], "y" => [0.0, 10.0, 20.0])?;
    /// assert!(KnnRegressor::params(4).fit_frame_drain(&mut df, "y").is_err());
    /// assert_eq!(df.height(), 3); // a failed fit leaves the frame as it was
    /// let model = KnnRegressor::params(1).fit_frame_drain(&mut df, "y")?;
    /// assert_eq!(df.width(), 0);
    /// let pred = model.predict_frame(&df!("x" => [1.2])?)?;
    /// assert_eq!(pred.column("pred")?.f64()?.get(0), Some(10.0));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn fit_frame_drain(&self, df: &mut DataFrame, target: &str) -> Result<KnnRegressor> {
        self.fit_frame_inner(TrainFrame::Drained(df), target, None)
    }

    /// Fits on a frame with an explicit feature list; other columns are ignored, at
    /// fit and at predict time.
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("a" => [0.0, 1.0], "b" => [5.0, 0.0], "y" => [0.0, 1.0])?;
    /// let model = KnnRegressor::params(1).fit_frame_with(&df, "y", &["a"])?;
    /// assert_eq!(model.features(), ["a"]);
    /// let pred = model.predict_frame(&df!("a" => [0.9])?)?; // `b` is not needed
    /// assert_eq!(pred.column("pred")?.f64()?.get(0), Some(1.0));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn fit_frame_with(
        &self,
        df: &DataFrame,
        target: &str,
        features: &[&str],
    ) -> Result<KnnRegressor> {
        self.fit_frame_inner(TrainFrame::Shared(df), target, Some(features))
    }

    /// [`fit_frame_with`](Self::fit_frame_with)'s feature list, with
    /// [`fit_frame_drain`](Self::fit_frame_drain)'s memory: on success every
    /// column of `df` is gone, the ones that are not features too, so a frame
    /// read with more columns than the model needs is not held twice either.
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let mut df = df!("a" => [0.0, 1.0], "b" => [5.0, 0.0], "y" => [0.0, 1.0])?;
    /// let params = KnnRegressor::params(1);
    /// assert!(params.fit_frame_drain_with(&mut df, "y", &["c"]).is_err());
    /// assert_eq!(df.width(), 3); // a failed fit leaves the frame as it was
    /// let model = params.fit_frame_drain_with(&mut df, "y", &["a"])?;
    /// assert_eq!((model.features(), df.width()), (&["a".to_owned()][..], 0));
    /// let pred = model.predict_frame(&df!("a" => [0.9])?)?;
    /// assert_eq!(pred.column("pred")?.f64()?.get(0), Some(1.0));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn fit_frame_drain_with(
        &self,
        df: &mut DataFrame,
        target: &str,
        features: &[&str],
    ) -> Result<KnnRegressor> {
        self.fit_frame_inner(TrainFrame::Drained(df), target, Some(features))
    }

    fn fit_frame_inner(
        &self,
        frame: TrainFrame<'_>,
        target: &str,
        explicit: Option<&[&str]>,
    ) -> Result<KnnRegressor> {
        let params = linfa::ParamGuard::check_ref(self)?;
        let df = frame.df();
        let (names, all_numeric) = Core::<Regression>::frame_features(df, target, explicit)?;
        let targets: Arc<Vec<f64>> = features::finite_values(df, target)?.into();
        let train = Core::frame_matrix(params, frame, &names)?;
        let core = Core::fit(params, train, names, all_numeric, Some(target.to_owned()))?;
        Ok(KnnRegressor { core, targets })
    }
}

impl<D: Data<Elem = f64>> Fit<ArrayBase<D, Ix2>, Array1<f64>, Error>
    for KnnValidParams<Regression>
{
    type Object = KnnRegressor;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, Array1<f64>>) -> Result<KnnRegressor> {
        let x = dataset.records();
        let names = features::positional_names(x.ncols());
        let train = Matrix::from_array(x.view(), &names)?;
        let targets = dataset.targets().to_vec();
        if let Some(row) = targets.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidValue {
                column: "target".to_owned(),
                row: row as u64,
                value: format!("{}", targets[row]),
            });
        }
        if targets.len() != train.rows {
            return Err(Error::FeatureMismatch {
                reason: format!("{} records but {} targets", train.rows, targets.len()),
            });
        }
        let core = Core::fit(self, train, names, false, None)?;
        Ok(KnnRegressor {
            core,
            targets: Arc::new(targets),
        })
    }
}

/// linfa's `predict`. The trait cannot return an error, so rows it cannot predict
/// (wrong width, non-finite values) come back as NaN; use
/// [`KnnRegressor::try_predict`] to get the error instead.
impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for KnnRegressor {
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        match self.try_predict(x) {
            Ok(pred) if pred.len() == y.len() => y.assign(&pred),
            _ => y.fill(f64::NAN),
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

impl ByteSize for KnnRegressor {
    fn byte_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.core.index.byte_size() + self.targets.len() * 8
    }
}

impl std::fmt::Debug for KnnRegressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnnRegressor")
            .field("k", &self.core.params.k)
            .field("weights", &self.core.params.weights)
            .field("metric", &self.core.params.metric)
            .field("algorithm", &self.core.algorithm())
            .field("n_train", &self.n_train())
            .field("features", &self.core.features)
            .finish()
    }
}
