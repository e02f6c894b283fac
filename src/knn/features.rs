//! From polars columns to the dense row-major matrix the kernels read.
//!
//! Everything the kernels cannot survive is caught here, before any work starts:
//! missing or non-numeric columns, nulls, NaN and infinities (linfa-nn's trees panic
//! on them). The matrix is always C-order and contiguous, whatever the frame's
//! chunking, so no kernel ever sees a strided view.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::transpose::ColumnsToRows;
use crate::error::{Error, Result};

/// The column [`PartitionedFrame::zip_with_index`](crate::PartitionedFrame::zip_with_index)
/// adds; never a feature.
pub(crate) const ROW: &str = "row";

/// A dense row-major matrix of finite values.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Matrix {
    pub(crate) data: Vec<f64>,
    pub(crate) rows: usize,
    pub(crate) dim: usize,
}

impl Matrix {
    /// Copies a linfa/ndarray matrix (any memory order) into C-order, checking values.
    pub(crate) fn from_array(x: ndarray::ArrayView2<'_, f64>, names: &[String]) -> Result<Matrix> {
        let (rows, dim) = x.dim();
        let data: Vec<f64> = x.iter().copied().collect();
        if let Some(at) = first_non_finite(&data) {
            return Err(Error::InvalidValue {
                column: names[at % dim].clone(),
                row: (at / dim) as u64,
                value: describe(Some(data[at])),
            });
        }
        Ok(Matrix { data, rows, dim })
    }

    pub(crate) fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Names for the columns of a plain matrix (`x0`, `x1`, ...), used in messages.
pub(crate) fn positional_names(dim: usize) -> Vec<String> {
    (0..dim).map(|j| format!("x{j}")).collect()
}

/// The default feature set: every numeric column except the target and `row`.
pub(crate) fn numeric_columns(df: &DataFrame, target: Option<&str>) -> Vec<String> {
    df.columns()
        .iter()
        .filter(|c| c.dtype().is_primitive_numeric() || c.dtype().is_bool())
        .map(|c| c.name().to_string())
        .filter(|name| Some(name.as_str()) != target && name != ROW)
        .collect()
}

/// A column by name, found by scanning the names rather than through polars'
/// hashed name index, which a frame from another evcxr cell may carry hashed with
/// that cell's seed (see [`fresh`](crate::fresh)).
pub(crate) fn find<'a>(df: &'a DataFrame, name: &str) -> Option<&'a Column> {
    df.columns().iter().find(|c| c.name().as_str() == name)
}

pub(crate) fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column> {
    find(df, name).ok_or_else(|| Error::MissingColumn {
        name: name.to_owned(),
        available: format!("{:?}", df.get_column_names()),
    })
}

/// The frame's row numbers for messages: its `row` column when present.
pub(crate) fn row_label(df: &DataFrame, position: usize) -> u64 {
    find(df, ROW)
        .and_then(|c| c.cast(&DataType::UInt64).ok())
        .and_then(|c| c.u64().ok().and_then(|ca| ca.get(position)))
        .unwrap_or(position as u64)
}

fn describe(value: Option<f64>) -> String {
    match value {
        None => "null".to_owned(),
        Some(v) if v.is_nan() => "NaN".to_owned(),
        Some(v) if v > 0.0 => "inf".to_owned(),
        Some(_) => "-inf".to_owned(),
    }
}

/// One numeric column cast to `f64` (free for a `f64` column: the buffers are
/// shared), checked: the first null, NaN or infinity is an error naming the
/// column and row.
fn checked_f64(df: &DataFrame, name: &str) -> Result<Float64Chunked> {
    let col = column(df, name)?;
    if !(col.dtype().is_primitive_numeric() || col.dtype().is_bool()) {
        return Err(Error::NotNumeric {
            column: name.to_owned(),
            dtype: col.dtype().to_string(),
        });
    }
    let cast = col.cast(&DataType::Float64)?;
    let values = cast.f64()?;
    if let Some(at) = first_missing_or_infinite(values) {
        return Err(Error::InvalidValue {
            column: name.to_owned(),
            row: row_label(df, at),
            value: describe(values.get(at)),
        });
    }
    Ok(values.clone())
}

/// The position of the first null, NaN or infinity of `values`, if any.
///
/// Chunk by chunk, on the values' slices: an `Option` per value through the
/// column's iterator made this check the largest part of King County's fit
/// after the tree (16% of the samples).
fn first_missing_or_infinite(values: &Float64Chunked) -> Option<usize> {
    let mut offset = 0;
    for chunk in values.downcast_iter() {
        let found = if chunk.validity().is_some_and(|v| v.unset_bits() > 0) {
            chunk.iter().position(|v| !v.is_some_and(|v| v.is_finite()))
        } else {
            first_non_finite(chunk.values())
        };
        if let Some(at) = found {
            return Some(offset + at);
        }
        offset += chunk.len();
    }
    None
}

/// The position of the first NaN or infinity of `values`, if any.
fn first_non_finite(values: &[f64]) -> Option<usize> {
    /// Values checked at once, with no early exit, so the check vectorizes.
    const BLOCK: usize = 256;
    let finite = |block: &[f64]| block.iter().fold(true, |ok, v| ok & v.is_finite());
    let (c, block) = values.chunks(BLOCK).enumerate().find(|(_, b)| !finite(b))?;
    let at = block.iter().position(|v| !v.is_finite())?;
    Some(c * BLOCK + at)
}

/// One numeric column as finite `f64`s.
pub(crate) fn finite_values(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    Ok(checked_f64(df, name)?.into_no_null_iter().collect())
}

/// The named columns of `df` as a C-order matrix, in the order given.
pub(crate) fn matrix(df: &DataFrame, names: &[String]) -> Result<Matrix> {
    let mut m = ColumnsToRows::new(df.height(), names.len());
    for (j, name) in names.iter().enumerate() {
        m.put(j, checked_f64(df, name)?.into_no_null_iter());
    }
    Ok(m.into_matrix())
}

/// Hands the pages of freed blocks back to the system. glibc keeps a freed
/// block smaller than its mmap threshold (which rises to the size of the
/// last large block freed, up to 32 MB) in its heap, still resident, so a
/// drained column's memory would otherwise stay counted until reused.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A training frame as a fit receives it: borrowed, or lent mutably to be
/// drained into the model (see [`drain_matrix`]).
pub(crate) enum TrainFrame<'a> {
    Shared(&'a DataFrame),
    Drained(&'a mut DataFrame),
}

impl TrainFrame<'_> {
    pub(crate) fn df(&self) -> &DataFrame {
        match self {
            TrainFrame::Shared(df) => df,
            TrainFrame::Drained(df) => df,
        }
    }
}

/// The first row whose named columns are all zero (a cosine fit's error),
/// checked on the frame itself so that a frame to be drained is still whole.
pub(crate) fn first_zero_row(df: &DataFrame, names: &[String]) -> Result<Option<usize>> {
    let mut nonzero = vec![false; df.height()];
    for name in names {
        for (seen, v) in nonzero
            .iter_mut()
            .zip(checked_f64(df, name)?.into_no_null_iter())
        {
            *seen |= v != 0.0;
        }
    }
    Ok(nonzero.iter().position(|&seen| !seen))
}

/// Like [`matrix`], but moves the columns out of `df`, each dropped as soon as
/// it is copied: when nothing else shares its buffer, its memory is freed before
/// the next column is read, so the data is held about once, not twice. Every
/// check runs before `df` is touched; on success it is left empty.
pub(crate) fn drain_matrix(df: &mut DataFrame, names: &[String]) -> Result<Matrix> {
    for name in names {
        checked_f64(df, name)?;
    }
    let mut m = ColumnsToRows::new(df.height(), names.len());
    // Taken one at a time: each column, feature or not, is freed in its turn.
    for col in std::mem::take(df).into_columns() {
        match names.iter().position(|n| n.as_str() == col.name().as_str()) {
            Some(j) => {
                let cast = col.cast(&DataType::Float64)?;
                drop(col);
                m.put(j, cast.f64()?.into_no_null_iter());
            }
            None => drop(col),
        }
        release_freed_memory();
    }
    Ok(m.into_matrix())
}

/// Checks a predict-time frame against the model's features, by name.
///
/// With `strict`, any numeric column that is not a feature, the target or `row` is
/// an error: the model was fitted on "all numeric columns", so an extra one means the
/// frame is not what the model expects.
pub(crate) fn check_features(
    df: &DataFrame,
    features: &[String],
    target: Option<&str>,
    strict: bool,
) -> Result<()> {
    let present = df.get_column_names();
    let missing: Vec<&String> = features
        .iter()
        .filter(|f| !present.iter().any(|p| p.as_str() == f.as_str()))
        .collect();
    let extra: Vec<String> = if strict {
        numeric_columns(df, target)
            .into_iter()
            .filter(|c| !features.contains(c))
            .collect()
    } else {
        Vec::new()
    };
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let mut reason = Vec::new();
    if !missing.is_empty() {
        reason.push(format!("missing {missing:?}"));
    }
    if !extra.is_empty() {
        reason.push(format!(
            "unexpected numeric columns {extra:?} (drop them, or fit with an explicit feature list)"
        ));
    }
    Err(Error::FeatureMismatch {
        reason: reason.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nulls, NaN and infinities before, at and after a block's edges, in a
    /// column of several chunks: the first one's position, as the plain
    /// iterator finds it.
    #[test]
    fn the_first_missing_or_infinite_value_is_found_in_any_chunk() {
        let bad = [
            None,
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
        ];
        for chunks in [vec![700], vec![300, 1, 400], vec![256, 256, 3]] {
            let n: usize = chunks.iter().sum();
            for at in [0, 1, 255, 256, 257, 299, 300, 301, 511, 512, n - 1] {
                for (v, &value) in bad.iter().enumerate() {
                    let mut values: Vec<Option<f64>> =
                        (0..n).map(|i| Some(i as f64 - 9.5)).collect();
                    values[at] = value;
                    // A second bad value later must not be the one reported.
                    if at + 1 < n {
                        values[n - 1] = bad[(v + 1) % bad.len()];
                    }
                    let mut parts = chunks.iter().scan(0, |start, &len| {
                        let part = &values[*start..*start + len];
                        *start += len;
                        Some(Float64Chunked::from_iter_options(
                            "x".into(),
                            part.iter().copied(),
                        ))
                    });
                    let mut column = parts.next().unwrap();
                    for part in parts {
                        column.append(&part).unwrap();
                    }
                    assert_eq!(column.chunks().len(), chunks.len());
                    let want = column.iter().position(|v| !v.is_some_and(f64::is_finite));
                    assert_eq!(want, Some(at));
                    assert_eq!(
                        first_missing_or_infinite(&column),
                        want,
                        "{chunks:?} {at} {value:?}"
                    );
                }
            }
        }
        let clean = Float64Chunked::from_vec("x".into(), (0..1000).map(f64::from).collect());
        assert_eq!(first_missing_or_infinite(&clean), None);
    }
}
