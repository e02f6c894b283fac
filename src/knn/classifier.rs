//! `KnnClassifier`: sklearn's `KNeighborsClassifier`, with labels of any ordered type.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::path::Path;
use std::sync::Arc;

use linfa::dataset::DatasetBase;
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, Array2, ArrayBase, Data, Ix2};
use polars::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::features::{self, Matrix, ROW, TrainFrame};
use super::model::{Core, neighbor_weights};
use super::params::{Algorithm, Classification, KnnParams, KnnValidParams};
use super::persist;
use crate::broadcast::ByteSize;
use crate::error::{Error, Result};

/// A class label: anything ordered and cloneable (integers, strings, enums).
///
/// Classes are kept sorted, as sklearn's `classes_`; probability columns follow that
/// order and vote ties go to the first class in it.
///
/// ```
/// use sparkbook::knn::KnnClassifier;
/// use ndarray::array;
/// use linfa::traits::Fit;
///
/// let data = linfa::Dataset::new(array![[0.0], [1.0], [5.0]], array!['y', 'y', 'n']);
/// let model = KnnClassifier::params(1).fit(&data)?; // char labels
/// assert_eq!(model.classes(), ['n', 'y']);
/// assert_eq!(model.try_predict(&array![[4.0]])?.to_vec(), vec!['n']);
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub trait Label: Clone + Ord + Hash + Send + Sync + Serialize + DeserializeOwned + 'static {}

impl<L: Clone + Ord + Hash + Send + Sync + Serialize + DeserializeOwned + 'static> Label for L {}

/// Labels that can be read from and written to a polars column.
///
/// ```
/// use sparkbook::knn::{FrameLabel, KnnClassifier};
/// use sparkbook::polars::prelude::*;
///
/// let df = df!("x" => [0.0, 1.0, 9.0], "class" => [2i64, 2, 7])?;
/// assert_eq!(i64::from_column(&df, "class")?, vec![2, 2, 7]);
/// let model: KnnClassifier<i64> = KnnClassifier::params(1).fit_frame(&df, "class")?;
/// let pred = model.predict_frame(&df!("x" => [8.0])?)?;
/// assert_eq!(pred.column("pred")?.i64()?.get(0), Some(7));
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub trait FrameLabel: Label {
    /// Reads a label column, rejecting nulls.
    fn from_column(df: &DataFrame, name: &str) -> Result<Vec<Self>>;
    /// Builds a column from labels.
    fn to_column(name: &str, labels: Vec<Self>) -> Column;
}

fn first_null(df: &DataFrame, name: &str, col: &Column) -> Result<()> {
    if let Some(at) = (0..col.len()).find(|&i| col.get(i).map_or(true, |v| v.is_null())) {
        return Err(Error::InvalidValue {
            column: name.to_owned(),
            row: features::row_label(df, at),
            value: "null".to_owned(),
        });
    }
    Ok(())
}

impl FrameLabel for String {
    fn from_column(df: &DataFrame, name: &str) -> Result<Vec<String>> {
        let col = features::column(df, name)?;
        first_null(df, name, col)?;
        let cast = col.cast(&DataType::String)?;
        Ok(cast.str()?.iter().flatten().map(str::to_owned).collect())
    }

    fn to_column(name: &str, labels: Vec<String>) -> Column {
        Column::new(name.into(), labels)
    }
}

impl FrameLabel for i64 {
    fn from_column(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
        let col = features::column(df, name)?;
        if !col.dtype().is_integer() {
            return Err(Error::NotNumeric {
                column: name.to_owned(),
                dtype: format!(
                    "{} (integer labels expected; use String labels for other types)",
                    col.dtype()
                ),
            });
        }
        first_null(df, name, col)?;
        let cast = col.cast(&DataType::Int64)?;
        Ok(cast.i64()?.into_no_null_iter().collect())
    }

    fn to_column(name: &str, labels: Vec<i64>) -> Column {
        Column::new(name.into(), labels)
    }
}

/// k-nearest-neighbour classification: the (weighted) majority label of the k nearest
/// training rows.
///
/// ```
/// use sparkbook::knn::KnnClassifier;
/// use sparkbook::polars::prelude::*;
///
/// let train = df!("x" => [0.0, 0.1, 5.0, 5.1, 5.2], "kind" => ["low", "low", "high", "high", "high"])?;
/// let model: KnnClassifier<String> = KnnClassifier::params(3).fit_frame(&train, "kind")?;
/// assert_eq!(model.classes(), ["high", "low"]);
/// let test = df!("x" => [0.05, 4.9])?;
/// let pred = model.predict_frame(&test)?;
/// assert_eq!(pred.column("pred")?.str()?.get(1), Some("high"));
/// let proba = model.predict_proba_frame(&test)?;
/// assert_eq!(proba.column("proba_low")?.f64()?.get(0), Some(2.0 / 3.0));
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "L: Label")]
pub struct KnnClassifier<L: Label> {
    core: Core<Classification>,
    classes: Vec<L>,
    /// Class index of every training row; shared, so that cloning a model to
    /// broadcast it copies no data.
    class_of: Arc<Vec<u32>>,
}

impl KnnClassifier<String> {
    /// Starts the parameters with `k` neighbours (sklearn's `n_neighbors`).
    ///
    /// Defined on `KnnClassifier<String>` only so that `KnnClassifier::params(k)`
    /// needs no type annotation (as `HashMap::new`); the label type of the fitted
    /// model comes from the data passed to `fit` or `fit_frame`.
    ///
    /// ```
    /// use sparkbook::knn::{KnnClassifier, Weights};
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("x" => [0.0, 1.0, 2.0], "c" => ["a", "b", "b"])?;
    /// let params = KnnClassifier::params(3).weights(Weights::Distance);
    /// let model: KnnClassifier<String> = params.fit_frame(&df, "c")?;
    /// assert_eq!(model.params_used().k(), 3);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn params(k: usize) -> KnnParams<Classification> {
        KnnParams::new(k)
    }
}

impl<L: Label> KnnClassifier<L> {
    fn from_labels(core: Core<Classification>, labels: Vec<L>) -> KnnClassifier<L> {
        let ids: BTreeMap<L, u32> = labels.iter().cloned().map(|l| (l, 0)).collect();
        let classes: Vec<L> = ids.keys().cloned().collect();
        let ids: BTreeMap<L, u32> = classes.iter().cloned().zip(0..).collect();
        let class_of = Arc::new(labels.iter().map(|l| ids[l]).collect());
        KnnClassifier {
            core,
            classes,
            class_of,
        }
    }

    /// The classes, sorted (sklearn's `classes_`).
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("x" => [0.0, 1.0, 2.0], "c" => ["z", "a", "z"])?;
    /// let model: KnnClassifier<String> = KnnClassifier::params(1).fit_frame(&df, "c")?;
    /// assert_eq!(model.classes(), ["a", "z"]);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn classes(&self) -> &[L] {
        &self.classes
    }

    /// Feature names, in the order the model reads them.
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("b" => [0.0, 1.0], "a" => [1.0, 0.0], "c" => ["x", "y"])?;
    /// let model: KnnClassifier<String> = KnnClassifier::params(1).fit_frame(&df, "c")?;
    /// assert_eq!(model.features(), ["b", "a"]);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn features(&self) -> &[String] {
        &self.core.features
    }

    /// The parameters the model was fitted with.
    ///
    /// ```
    /// use sparkbook::knn::{KnnClassifier, Metric};
    /// use ndarray::array;
    /// use linfa::traits::Fit;
    ///
    /// let data = linfa::Dataset::new(array![[0.0], [1.0]], array![0, 1]);
    /// let model = KnnClassifier::params(1).metric(Metric::Manhattan).fit(&data)?;
    /// assert_eq!(model.params_used().metric(), Metric::Manhattan);
    /// assert_eq!(model.params_used().leaf_size(), 64);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn params_used(&self) -> &KnnValidParams<Classification> {
        &self.core.params
    }

    /// The search method in use (`Auto` resolved).
    ///
    /// ```
    /// use sparkbook::knn::{Algorithm, KnnClassifier};
    /// use ndarray::array;
    /// use linfa::traits::Fit;
    ///
    /// let data = linfa::Dataset::new(array![[0.0], [1.0], [2.0]], array![0, 0, 1]);
    /// let brute = KnnClassifier::params(1).algorithm(Algorithm::Brute).fit(&data)?;
    /// assert_eq!(brute.algorithm(), Algorithm::Brute);
    /// assert_ne!(KnnClassifier::params(1).fit(&data)?.algorithm(), Algorithm::Auto);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn algorithm(&self) -> Algorithm {
        self.core.algorithm()
    }

    /// Training rows.
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use ndarray::array;
    /// use linfa::traits::Fit;
    ///
    /// let data = linfa::Dataset::new(array![[0.0], [1.0], [2.0]], array![0, 0, 1]);
    /// assert_eq!(KnnClassifier::params(1).fit(&data)?.n_train(), 3);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn n_train(&self) -> usize {
        self.class_of.len()
    }

    /// Saves the model as versioned JSON, atomically.
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("x" => [0.0, 1.0, 5.0], "c" => ["a", "a", "b"])?;
    /// let model: KnnClassifier<String> = KnnClassifier::params(1).fit_frame(&df, "c")?;
    /// let path = std::env::temp_dir().join(format!("sparkbook-doc-{}-clf-save.json", std::process::id()));
    /// model.save(&path)?;
    /// assert!(std::fs::read_to_string(&path).unwrap().contains("classifier"));
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        persist::save(path.as_ref(), "classifier", self)
    }

    /// Loads a model saved with [`save`](Self::save).
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("x" => [0.0, 1.0, 5.0], "c" => ["a", "a", "b"])?;
    /// let model: KnnClassifier<String> = KnnClassifier::params(1).fit_frame(&df, "c")?;
    /// let path = std::env::temp_dir().join(format!("sparkbook-doc-{}-clf-load.json", std::process::id()));
    /// model.save(&path)?;
    /// let back: KnnClassifier<String> = KnnClassifier::load(&path)?;
    /// assert_eq!(back.predict_frame(&df)?, model.predict_frame(&df)?);
    /// std::fs::remove_file(&path).unwrap();
    /// assert!(KnnClassifier::<String>::load(&path).is_err());
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<KnnClassifier<L>> {
        let model: KnnClassifier<L> = persist::load(path.as_ref(), "classifier")?;
        let n_classes = model.classes.len() as u32;
        model
            .core
            .validate(model.class_of.len())
            .and_then(|()| match model.class_of.iter().all(|&c| c < n_classes) {
                true => Ok(()),
                false => Err("a class index is out of range".to_owned()),
            })
            .map_err(|reason| Error::ModelFile {
                path: path.as_ref().display().to_string(),
                reason,
            })?;
        Ok(model)
    }

    /// sklearn's `kneighbors(X, k)`: distances and training-row indices.
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use ndarray::array;
    /// use linfa::traits::Fit;
    ///
    /// let data = linfa::Dataset::new(array![[0.0], [4.0], [1.0]], array![0, 1, 0]);
    /// let model = KnnClassifier::params(1).fit(&data)?;
    /// let (dist, idx) = model.kneighbors(&array![[3.0]], 2)?;
    /// assert_eq!(idx.row(0).to_vec(), vec![1, 2]);
    /// assert!((dist[[0, 0]] - 1.0).abs() < 1e-12 && (dist[[0, 1]] - 2.0).abs() < 1e-12);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn kneighbors<D: Data<Elem = f64>>(
        &self,
        x: &ArrayBase<D, Ix2>,
        k: usize,
    ) -> Result<(Array2<f64>, Array2<usize>)> {
        self.core.kneighbors(x.view(), k)
    }

    /// Class probabilities, one row per query and one column per class (in
    /// [`classes`](Self::classes) order): the weighted share of neighbours per class.
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use ndarray::array;
    /// use linfa::traits::Fit;
    ///
    /// let data = linfa::Dataset::new(array![[0.0], [1.0], [9.0]], array![7usize, 7, 3]);
    /// let model = KnnClassifier::params(3).fit(&data)?;
    /// assert_eq!(model.classes(), [3, 7]);
    /// let p = model.predict_proba(&array![[0.5]])?;
    /// assert_eq!(p.row(0).to_vec(), vec![1.0 / 3.0, 2.0 / 3.0]);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn predict_proba<D: Data<Elem = f64>>(&self, x: &ArrayBase<D, Ix2>) -> Result<Array2<f64>> {
        let queries = self.core.array_queries(x.view())?;
        let proba = self.proba_matrix(&queries)?;
        Array2::from_shape_vec((queries.rows, self.classes.len()), proba)
            .map_err(|e| Error::Message(e.to_string()))
    }

    /// Predicts every row of `x`, checking it first.
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use ndarray::array;
    /// use linfa::traits::Fit;
    ///
    /// let data = linfa::Dataset::new(array![[0.0], [1.0], [9.0]], array![1, 1, 2]);
    /// let model = KnnClassifier::params(1).fit(&data)?;
    /// assert_eq!(model.try_predict(&array![[8.0], [0.2]])?.to_vec(), vec![2, 1]);
    /// assert!(model.try_predict(&array![[1.0, 2.0]]).is_err()); // wrong width
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn try_predict<D: Data<Elem = f64>>(&self, x: &ArrayBase<D, Ix2>) -> Result<Array1<L>> {
        let queries = self.core.array_queries(x.view())?;
        Ok(Array1::from(self.predict_matrix(&queries)?))
    }

    fn proba_matrix(&self, queries: &Matrix) -> Result<Vec<f64>> {
        let k = self.core.params.k;
        let c = self.classes.len();
        let mut proba = Vec::with_capacity(queries.rows * c);
        let mut weights = Vec::with_capacity(k);
        self.core.for_each_block(queries, k, |nb| {
            for (dist, idx) in nb.distances.chunks(k).zip(nb.indices.chunks(k)) {
                neighbor_weights(self.core.params.weights, dist, &mut weights);
                let start = proba.len();
                proba.resize(start + c, 0.0);
                let row = &mut proba[start..];
                for (&w, &i) in weights.iter().zip(idx) {
                    row[self.class_of[i as usize] as usize] += w;
                }
                let total: f64 = row.iter().sum();
                row.iter_mut().for_each(|p| *p /= total);
            }
        })?;
        Ok(proba)
    }

    fn predict_matrix(&self, queries: &Matrix) -> Result<Vec<L>> {
        let c = self.classes.len();
        let proba = self.proba_matrix(queries)?;
        Ok(proba
            .chunks(c)
            .map(|row| {
                // First maximum: ties go to the first class in sorted order, as sklearn.
                let best = row
                    .iter()
                    .enumerate()
                    .fold(0, |best, (i, &p)| if p > row[best] { i } else { best });
                self.classes[best].clone()
            })
            .collect())
    }
}

impl<L: FrameLabel> KnnClassifier<L> {
    /// Predicts a frame's rows: `pred`, preceded by `true` when the frame has the
    /// label column and by `row` when it carries one.
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let train = df!("x" => [0.0, 1.0, 9.0], "c" => ["lo", "lo", "hi"])?;
    /// let model: KnnClassifier<String> = KnnClassifier::params(1).fit_frame(&train, "c")?;
    /// let pred = model.predict_frame(&df!("x" => [8.0, 0.5], "c" => ["hi", "hi"])?)?;
    /// assert_eq!(pred.get_column_names(), ["true", "pred"]);
    /// assert_eq!(pred.column("pred")?.str()?.get(1), Some("lo"));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn predict_frame(&self, df: &DataFrame) -> Result<DataFrame> {
        let queries = self.core.frame_queries(df)?;
        let pred = self.predict_matrix(&queries)?;
        self.core.output_frame(
            df,
            |target| Ok(L::to_column("true", L::from_column(df, target)?)),
            L::to_column("pred", pred),
        )
    }

    /// Class probabilities for a frame's rows: one `proba_<class>` column per class
    /// (plus `row` when the frame carries one).
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let train = df!("x" => [0.0, 1.0, 9.0], "c" => ["lo", "lo", "hi"])?;
    /// let model: KnnClassifier<String> = KnnClassifier::params(3).fit_frame(&train, "c")?;
    /// let proba = model.predict_proba_frame(&df!("x" => [0.5])?)?;
    /// assert_eq!(proba.get_column_names(), ["proba_hi", "proba_lo"]);
    /// assert_eq!(proba.column("proba_hi")?.f64()?.get(0), Some(1.0 / 3.0));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn predict_proba_frame(&self, df: &DataFrame) -> Result<DataFrame>
    where
        L: std::fmt::Display,
    {
        let queries = self.core.frame_queries(df)?;
        let proba = self.proba_matrix(&queries)?;
        let c = self.classes.len();
        let mut columns = Vec::with_capacity(c + 1);
        if let Some(row) = features::find(df, ROW) {
            columns.push(row.clone());
        }
        for (j, class) in self.classes.iter().enumerate() {
            let values: Vec<f64> = proba.chunks(c).map(|r| r[j]).collect();
            columns.push(Column::new(format!("proba_{class}").into(), values));
        }
        Ok(DataFrame::new(df.height(), columns)?)
    }
}

impl KnnParams<Classification> {
    /// Fits on a frame: features are all numeric columns except the label column
    /// `target` (and `row`); labels are read as `L` (`String` or `i64`).
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("x" => [0.0, 1.0], "id" => [10i64, 20], "c" => [1i64, 2])?;
    /// let model: KnnClassifier<i64> = KnnClassifier::params(1).fit_frame(&df, "c")?;
    /// assert_eq!(model.features(), ["x", "id"]); // every numeric column but the label
    /// assert!(KnnClassifier::params(1).fit_frame::<String>(&df, "missing").is_err());
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn fit_frame<L: FrameLabel>(
        &self,
        df: &DataFrame,
        target: &str,
    ) -> Result<KnnClassifier<L>> {
        self.fit_frame_inner(TrainFrame::Shared(df), target, None)
    }

    /// Fits like [`fit_frame`](Self::fit_frame), moving the columns out of `df`
    /// into the model, each freed as soon as it is copied (see
    /// the regressor's `fit_frame_drain`): on an error `df` is
    /// untouched, on success it is left empty.
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let mut df = df!("x" => [0.0, 1.0, f64::NAN], "c" => ["a", "b", "b"])?;
    /// let bad = KnnClassifier::params(1).fit_frame_drain::<String>(&mut df, "c");
    /// assert!(bad.unwrap_err().to_string().contains("row 2"));
    /// assert_eq!(df.height(), 3);
    /// let mut df = df.head(Some(2));
    /// let model: KnnClassifier<String> = KnnClassifier::params(1).fit_frame_drain(&mut df, "c")?;
    /// assert_eq!((df.width(), model.classes().len()), (0, 2));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn fit_frame_drain<L: FrameLabel>(
        &self,
        df: &mut DataFrame,
        target: &str,
    ) -> Result<KnnClassifier<L>> {
        self.fit_frame_inner(TrainFrame::Drained(df), target, None)
    }

    /// Fits on a frame with an explicit feature list.
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let df = df!("x" => [0.0, 1.0], "id" => [10i64, 20], "c" => ["a", "b"])?;
    /// let model: KnnClassifier<String> = KnnClassifier::params(1).fit_frame_with(&df, "c", &["x"])?;
    /// assert_eq!(model.features(), ["x"]);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn fit_frame_with<L: FrameLabel>(
        &self,
        df: &DataFrame,
        target: &str,
        features: &[&str],
    ) -> Result<KnnClassifier<L>> {
        self.fit_frame_inner(TrainFrame::Shared(df), target, Some(features))
    }

    /// [`fit_frame_with`](Self::fit_frame_with)'s feature list, with
    /// [`fit_frame_drain`](Self::fit_frame_drain)'s memory: on success every
    /// column of `df` is gone, the ones that are not features too.
    ///
    /// ```
    /// use sparkbook::knn::KnnClassifier;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let mut df = df!("x" => [0.0, 1.0], "id" => [10i64, 20], "c" => ["a", "b"])?;
    /// let model: KnnClassifier<String> =
    ///     KnnClassifier::params(1).fit_frame_drain_with(&mut df, "c", &["x"])?;
    /// assert_eq!((model.features(), df.width()), (&["x".to_owned()][..], 0));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn fit_frame_drain_with<L: FrameLabel>(
        &self,
        df: &mut DataFrame,
        target: &str,
        features: &[&str],
    ) -> Result<KnnClassifier<L>> {
        self.fit_frame_inner(TrainFrame::Drained(df), target, Some(features))
    }

    fn fit_frame_inner<L: FrameLabel>(
        &self,
        frame: TrainFrame<'_>,
        target: &str,
        explicit: Option<&[&str]>,
    ) -> Result<KnnClassifier<L>> {
        let params = linfa::ParamGuard::check_ref(self)?;
        let df = frame.df();
        let (names, all_numeric) = Core::<Classification>::frame_features(df, target, explicit)?;
        let labels = L::from_column(df, target)?;
        let train = Core::frame_matrix(params, frame, &names)?;
        let core = Core::fit(params, train, names, all_numeric, Some(target.to_owned()))?;
        Ok(KnnClassifier::from_labels(core, labels))
    }
}

impl<D: Data<Elem = f64>, L: Label> Fit<ArrayBase<D, Ix2>, Array1<L>, Error>
    for KnnValidParams<Classification>
{
    type Object = KnnClassifier<L>;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, Array1<L>>) -> Result<KnnClassifier<L>> {
        let x = dataset.records();
        let names = features::positional_names(x.ncols());
        let train = Matrix::from_array(x.view(), &names)?;
        let labels = dataset.targets().to_vec();
        if labels.len() != train.rows {
            return Err(Error::FeatureMismatch {
                reason: format!("{} records but {} labels", train.rows, labels.len()),
            });
        }
        let core = Core::fit(self, train, names, false, None)?;
        Ok(KnnClassifier::from_labels(core, labels))
    }
}

/// linfa's `predict`. The trait cannot return an error and labels have no NaN, so
/// on bad input (wrong width, non-finite values) `y` is left as it was; use
/// [`KnnClassifier::try_predict`] to get the error instead.
impl<D: Data<Elem = f64>, L: Label> PredictInplace<ArrayBase<D, Ix2>, Array1<L>>
    for KnnClassifier<L>
{
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<L>) {
        if let Ok(pred) = self.try_predict(x)
            && pred.len() == y.len()
        {
            y.assign(&pred);
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<L> {
        Array1::from_elem(x.nrows(), self.classes[0].clone())
    }
}

impl<L: Label> ByteSize for KnnClassifier<L> {
    fn byte_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.core.index.byte_size()
            + self.class_of.len() * 4
            + self.classes.capacity() * std::mem::size_of::<L>()
    }
}

impl<L: Label + std::fmt::Debug> std::fmt::Debug for KnnClassifier<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnnClassifier")
            .field("k", &self.core.params.k)
            .field("weights", &self.core.params.weights)
            .field("metric", &self.core.params.metric)
            .field("algorithm", &self.core.algorithm())
            .field("n_train", &self.n_train())
            .field("classes", &self.classes)
            .finish()
    }
}
