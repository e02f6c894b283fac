//! Rich display in Jupyter notebooks run by evcxr.
//!
//! evcxr shows a cell's last value by calling `value.evcxr_display()` when such a
//! method exists; the method prints the content between `EVCXR_BEGIN_CONTENT <mime>`
//! and `EVCXR_END_CONTENT` lines. [`NotebookDisplay`] provides that method for polars
//! frames (a foreign type, hence a trait in the prelude) and for sparkbook's own types,
//! rendering HTML tables with a row limit so a 10-million-row frame does not flood
//! the notebook.

use std::fmt::Write as _;

use polars::prelude::*;

use crate::broadcast::Broadcast;
use crate::metrics::Scores;
use crate::partition::PartitionedFrame;
use crate::session::JobReport;

/// Rows shown before a frame is cut (the first and last half of them are shown).
///
/// ```
/// use sparkbook::prelude::*;
/// use sparkbook::polars::prelude::*;
///
/// let big = df!("x" => (0..1000).collect::<Vec<i32>>())?;
/// let shown = big.to_html().matches("<tr><td>").count();
/// assert_eq!(shown, sparkbook::MAX_ROWS + 1); // the rows, plus the "…" row
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub const MAX_ROWS: usize = 20;

/// HTML rendering for notebooks; evcxr calls [`evcxr_display`](Self::evcxr_display).
///
/// ```
/// use sparkbook::prelude::*;
/// use sparkbook::polars::prelude::*;
///
/// let df = df!("x" => [1, 2], "name" => ["<a>", "b"])?;
/// let html = df.to_html();
/// assert!(html.contains("<th>x<br>") && html.contains("&lt;a&gt;"));
/// assert!(df.evcxr_content().starts_with("EVCXR_BEGIN_CONTENT text/html\n"));
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub trait NotebookDisplay {
    /// The value as an HTML fragment.
    fn to_html(&self) -> String;

    /// What [`evcxr_display`](Self::evcxr_display) prints: the HTML between evcxr's
    /// content markers.
    fn evcxr_content(&self) -> String {
        format!(
            "EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT\n",
            self.to_html()
        )
    }

    /// Called by evcxr to show the value of a cell.
    fn evcxr_display(&self) {
        print!("{}", self.evcxr_content());
    }
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cell(value: AnyValue<'_>) -> String {
    match value {
        AnyValue::Null => "null".to_owned(),
        AnyValue::String(s) => escape(s),
        AnyValue::StringOwned(s) => escape(s.as_str()),
        other => escape(&other.to_string()),
    }
}

fn table(header: &[String], rows: &[Vec<String>], caption: &str) -> String {
    let mut html = String::from("<table class=\"sparkbook\">");
    let _ = write!(html, "<caption>{}</caption><thead><tr>", escape(caption));
    for h in header {
        let _ = write!(html, "<th>{h}</th>");
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for v in row {
            let _ = write!(html, "<td>{v}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

impl NotebookDisplay for DataFrame {
    /// A table of at most [`MAX_ROWS`] rows (the first and last halves, with a `…` row
    /// between), column types under the names, and the shape as caption.
    fn to_html(&self) -> String {
        let header: Vec<String> = self
            .columns()
            .iter()
            .map(|c| {
                format!(
                    "{}<br><small>{}</small>",
                    escape(c.name()),
                    escape(&c.dtype().to_string())
                )
            })
            .collect();
        let n = self.height();
        let shown: Vec<Option<usize>> = if n <= MAX_ROWS {
            (0..n).map(Some).collect()
        } else {
            let half = MAX_ROWS / 2;
            (0..half)
                .map(Some)
                .chain([None])
                .chain((n - half..n).map(Some))
                .collect()
        };
        let rows: Vec<Vec<String>> = shown
            .into_iter()
            .map(|row| match row {
                Some(i) => self
                    .columns()
                    .iter()
                    .map(|c| c.get(i).map_or_else(|_| "?".to_owned(), cell))
                    .collect(),
                None => vec!["…".to_owned(); self.width()],
            })
            .collect();
        table(
            &header,
            &rows,
            &format!("{} rows × {} columns", n, self.width()),
        )
    }
}

impl NotebookDisplay for Scores {
    /// One row of regression scores, or accuracy and the confusion table.
    fn to_html(&self) -> String {
        match self {
            Scores::Regression(s) => table(
                &["R²", "RMSE", "MAE", "rows"].map(String::from),
                &[vec![
                    format!("{:.4}", s.r2),
                    format!("{:.4}", s.rmse),
                    format!("{:.4}", s.mae),
                    s.n.to_string(),
                ]],
                "regression scores",
            ),
            Scores::Classification(s) => {
                let mut header = vec!["true \\ predicted".to_owned()];
                header.extend(s.labels.iter().map(|l| escape(l)));
                let rows: Vec<Vec<String>> = s
                    .labels
                    .iter()
                    .zip(&s.confusion)
                    .map(|(label, counts)| {
                        std::iter::once(escape(label))
                            .chain(counts.iter().map(usize::to_string))
                            .collect()
                    })
                    .collect();
                table(
                    &header,
                    &rows,
                    &format!("accuracy {:.4} over {} rows", s.accuracy, s.n),
                )
            }
        }
    }
}

impl NotebookDisplay for JobReport {
    /// One row per partition: rows and milliseconds.
    fn to_html(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.index.to_string(),
                    p.rows.to_string(),
                    format!("{:.2}", p.seconds * 1e3),
                ]
            })
            .collect();
        table(
            &["partition", "rows", "ms"].map(String::from),
            &rows,
            &format!(
                "job {} ({}): {:.1} ms on {} threads{}",
                self.job,
                self.verb,
                self.seconds * 1e3,
                self.threads,
                if self.failed { ", failed" } else { "" }
            ),
        )
    }
}

impl NotebookDisplay for PartitionedFrame {
    /// Partition sizes and offsets.
    fn to_html(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .partition_sizes()
            .iter()
            .zip(self.offsets())
            .enumerate()
            .map(|(i, (size, offset))| vec![i.to_string(), size.to_string(), offset.to_string()])
            .collect();
        table(
            &["partition", "rows", "first row"].map(String::from),
            &rows,
            &format!(
                "{} rows in {} partitions",
                self.count(),
                self.num_partitions()
            ),
        )
    }
}

impl<T> NotebookDisplay for Broadcast<T> {
    /// The broadcast's id, value type and state.
    fn to_html(&self) -> String {
        table(
            &["broadcast", "type", "state"].map(String::from),
            &[vec![
                format!("#{}", self.id()),
                escape(std::any::type_name::<T>()),
                if self.is_destroyed() {
                    "destroyed"
                } else {
                    "live: one shared copy"
                }
                .to_owned(),
            ]],
            "broadcast variable",
        )
    }
}
