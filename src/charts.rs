//! plotly charts of predictions and jobs, shown inline in notebooks.
//!
//! Each function returns a [`Chart`]: a [`plotly::Plot`] that displays itself in
//! evcxr as both plotly's JSON (JupyterLab draws it interactively) and an HTML
//! fragment (the classic notebook, nbconvert's HTML export and VS Code draw that).
//! plotly's own `evcxr_display` emits only the JSON, which a saved notebook exported
//! to HTML shows as nothing.
//!
//! Charts of large frames stay small: a scatter shows at most [`MAX_POINTS`] rows
//! (evenly spaced, so the same rows every run) and histograms are binned here, not
//! in the browser, so a 10-million-row prediction does not put 10 million points
//! into the notebook file.
//!
//! The HTML fragment draws with `window.Plotly` when the page has it and otherwise
//! loads plotly.js from its CDN. For a notebook that must render offline, show
//! [`plotly_js`] once near its top: it inlines plotly.js (4.6 MB) into the page, as
//! Python plotly's `init_notebook_mode(connected=False)` does.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use plotly::common::{Marker, Mode, Title};
use plotly::layout::Axis;
use plotly::{Bar, HeatMap, Layout, Plot, Scatter};
use polars::prelude::DataFrame;

use crate::display::NotebookDisplay;
use crate::error::{Error, Result};
use crate::knn::features::finite_values;
use crate::metrics::{Scores, TruePred, pair};
use crate::session::JobReport;

/// Most rows a scatter chart draws; larger frames are sampled evenly.
///
/// ```
/// use sparkbook::charts;
/// use sparkbook::polars::prelude::*;
///
/// let n = 3 * charts::MAX_POINTS;
/// let preds = df!("true" => vec![1.0; n], "pred" => vec![2.0; n])?;
/// let json = charts::true_vs_pred(&preds)?.to_json();
/// let points = json.split("\"x\":[").nth(1).unwrap().split(']').next().unwrap();
/// assert_eq!(points.split(',').count(), charts::MAX_POINTS);
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub const MAX_POINTS: usize = 5_000;

/// Bins of [`residuals`]' histogram.
const BINS: usize = 40;

/// Height of every chart, in pixels; the width follows the notebook.
const HEIGHT: usize = 420;

/// The CDN copy of the plotly.js version the `plotly` crate bundles.
const PLOTLY_CDN: &str = "https://cdn.plot.ly/plotly-3.0.1.min";

/// A plotly chart that renders in notebooks and saved notebook exports.
///
/// Build one with the functions of this module, or from any [`plotly::Plot`] with
/// `Chart::from(plot)` to give a hand-made plot the same display.
///
/// ```
/// use sparkbook::charts::Chart;
/// use sparkbook::prelude::*;
///
/// let mut plot = sparkbook::plotly::Plot::new();
/// plot.add_trace(sparkbook::plotly::Scatter::new(vec![1, 2], vec![3, 4]));
/// let chart = Chart::from(plot);
/// let shown = chart.evcxr_content();
/// assert!(shown.contains("EVCXR_BEGIN_CONTENT application/vnd.plotly.v1+json"));
/// assert!(shown.contains("EVCXR_BEGIN_CONTENT text/html"));
/// assert!(chart.to_html().contains(".newPlot(\"sparkbook-chart-"));
/// ```
#[derive(Clone)]
pub struct Chart {
    plot: Plot,
}

impl Chart {
    /// The plotly figure, to restyle before showing it.
    ///
    /// ```
    /// use sparkbook::charts;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let preds = df!("true" => [1.0, 2.0], "pred" => [1.5, 2.0])?;
    /// let chart = charts::true_vs_pred(&preds)?;
    /// assert_eq!(chart.plot().data().len(), 2); // the points and the identity line
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn plot(&self) -> &Plot {
        &self.plot
    }

    /// The plotly figure, to keep editing it or write it with plotly's own methods.
    ///
    /// ```
    /// use sparkbook::charts;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let preds = df!("true" => [1.0, 2.0], "pred" => [1.5, 2.0])?;
    /// let plot = charts::residuals(&preds)?.into_plot();
    /// assert!(plot.to_html().contains("<html"));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn into_plot(self) -> Plot {
        self.plot
    }

    /// The figure as plotly JSON (`data`, `layout`, `config`).
    ///
    /// ```
    /// use sparkbook::charts;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let preds = df!("true" => [1.0, 2.0], "pred" => [1.5, 2.0])?;
    /// let json: serde_json::Value = serde_json::from_str(&charts::true_vs_pred(&preds)?.to_json()).unwrap();
    /// assert_eq!(json["data"][0]["x"], serde_json::json!([1.0, 2.0]));
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn to_json(&self) -> String {
        self.plot.to_json()
    }
}

impl From<Plot> for Chart {
    fn from(plot: Plot) -> Chart {
        Chart { plot }
    }
}

impl fmt::Debug for Chart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chart")
            .field("traces", &self.plot.data().len())
            .finish()
    }
}

/// A page id no other chart of the notebook has. evcxr links each cell with its own
/// copy of this crate's statics, so a counter alone would restart at every cell:
/// the clock separates cells, the counter charts shown by one cell.
fn next_div_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "sparkbook-chart-{nanos:x}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl NotebookDisplay for Chart {
    /// A `div` and a script that draws the figure into it.
    fn to_html(&self) -> String {
        let id = next_div_id();
        // `</` cannot end the script early once escaped; JSON allows `<\/`.
        let figure = self.plot.to_json().replace("</", "<\\/");
        format!(
            r#"<div id="{id}" style="width:100%;height:{HEIGHT}px;"></div>
<script type="text/javascript">
(function () {{
  var figure = {figure};
  function draw(P) {{ P.newPlot("{id}", figure); }}
  if (window.Plotly) {{ draw(window.Plotly); }}
  else if (typeof require === "function") {{ require(["{PLOTLY_CDN}"], draw); }}
  else {{
    var s = document.createElement("script");
    s.src = "{PLOTLY_CDN}.js";
    s.onload = function () {{ draw(window.Plotly); }};
    document.head.appendChild(s);
  }}
}})();
</script>"#
        )
    }

    /// plotly's JSON for JupyterLab, then the HTML for every other front end.
    fn evcxr_content(&self) -> String {
        format!(
            "EVCXR_BEGIN_CONTENT application/vnd.plotly.v1+json\n{}\nEVCXR_END_CONTENT\n\
             EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT\n",
            self.to_json(),
            self.to_html()
        )
    }
}

/// plotly.js itself, to show once in a notebook that must render offline.
///
/// ```
/// use sparkbook::prelude::*;
///
/// let html = sparkbook::charts::plotly_js().to_html();
/// assert!(html.starts_with("<script") && html.contains("plotly.js v3"));
/// assert!(html.len() > 1_000_000);
/// ```
#[must_use = "a notebook shows it as a cell's last value"]
pub fn plotly_js() -> PlotlyJs {
    PlotlyJs
}

/// plotly.js as a displayable script; see [`plotly_js`].
///
/// ```
/// use sparkbook::prelude::*;
///
/// let shown = sparkbook::charts::plotly_js().evcxr_content();
/// assert!(shown.starts_with("EVCXR_BEGIN_CONTENT text/html\n<script"));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PlotlyJs;

impl NotebookDisplay for PlotlyJs {
    /// plotly.js inlined in a script tag, with a line saying it is loaded.
    fn to_html(&self) -> String {
        // plotly bundles plotly.js and MathJax; only the first script is plotly.js.
        let sources = Plot::offline_js_sources();
        let end = sources.find("</script>").map_or(sources.len(), |i| i + 9);
        format!(
            "{}\n<small>plotly.js 3.0.1 is inlined in this notebook: its charts render offline.</small>",
            &sources[..end]
        )
    }
}

fn layout(title: String, x: &str, y: &str) -> Layout {
    Layout::new()
        .title(Title::with_text(title))
        .height(HEIGHT)
        .x_axis(Axis::new().title(Title::with_text(x)))
        .y_axis(Axis::new().title(Title::with_text(y)))
}

/// The rows a scatter draws: all of them, or [`MAX_POINTS`] evenly spaced ones.
fn sample(n: usize) -> Vec<usize> {
    if n <= MAX_POINTS {
        (0..n).collect()
    } else {
        (0..MAX_POINTS).map(|i| i * n / MAX_POINTS).collect()
    }
}

fn regression_pair(preds: &DataFrame) -> Result<(Vec<f64>, Vec<f64>)> {
    pair(preds)?;
    Ok((finite_values(preds, "true")?, finite_values(preds, "pred")?))
}

/// Predicted against true values, with the identity line a perfect model would
/// sit on; the title carries R² and RMSE.
///
/// ```
/// use sparkbook::charts;
/// use sparkbook::polars::prelude::*;
///
/// let preds = df!("true" => [1.0, 2.0, 4.0], "pred" => [1.0, 3.0, 4.0])?;
/// let json: serde_json::Value = serde_json::from_str(&charts::true_vs_pred(&preds)?.to_json()).unwrap();
/// assert_eq!(json["data"][0]["y"], serde_json::json!([1.0, 3.0, 4.0]));
/// assert_eq!(json["data"][1]["x"], serde_json::json!([1.0, 4.0])); // identity, min to max
/// assert!(json["layout"]["title"]["text"].as_str().unwrap().contains("R² 0.7857"));
///
/// let labels = df!("true" => ["a"], "pred" => ["a"])?;
/// assert!(matches!(charts::true_vs_pred(&labels), Err(sparkbook::Error::NotNumeric { .. })));
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub fn true_vs_pred(preds: &DataFrame) -> Result<Chart> {
    let (t, p) = regression_pair(preds)?;
    let rows = sample(t.len());
    let xs: Vec<f64> = rows.iter().map(|&i| t[i]).collect();
    let ys: Vec<f64> = rows.iter().map(|&i| p[i]).collect();
    let lo = t.iter().chain(&p).copied().fold(f64::INFINITY, f64::min);
    let hi = t
        .iter()
        .chain(&p)
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let scores = preds.scores()?;
    let s = scores.regression().ok_or_else(|| Error::NotNumeric {
        column: "pred".to_owned(),
        dtype: "labels".to_owned(),
    })?;
    let shown = if rows.len() < t.len() {
        format!(", {} of {} rows shown", rows.len(), t.len())
    } else {
        String::new()
    };
    let mut plot = Plot::new();
    plot.add_trace(
        Scatter::new(xs, ys)
            .mode(Mode::Markers)
            .name("rows")
            .marker(Marker::new().size(4).opacity(0.4)),
    );
    plot.add_trace(
        Scatter::new(vec![lo, hi], vec![lo, hi])
            .mode(Mode::Lines)
            .name("pred = true"),
    );
    plot.set_layout(layout(
        format!(
            "Predicted vs true: R² {:.4}, RMSE {:.4}{shown}",
            s.r2, s.rmse
        ),
        "true",
        "pred",
    ));
    Ok(Chart::from(plot))
}

/// Histogram of the residuals `pred - true`, binned into 40 equal bins.
///
/// ```
/// use sparkbook::charts;
/// use sparkbook::polars::prelude::*;
///
/// let preds = df!("true" => [0.0, 0.0, 0.0, 0.0], "pred" => [-1.0, 0.0, 0.0, 3.0])?;
/// let json: serde_json::Value = serde_json::from_str(&charts::residuals(&preds)?.to_json()).unwrap();
/// let counts: Vec<u64> = serde_json::from_value(json["data"][0]["y"].clone()).unwrap();
/// assert_eq!(counts.len(), 40);
/// assert_eq!(counts.iter().sum::<u64>(), 4);
/// assert_eq!((counts[0], counts[10], counts[39]), (1, 2, 1)); // -1, 0 (twice), 3
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub fn residuals(preds: &DataFrame) -> Result<Chart> {
    let (t, p) = regression_pair(preds)?;
    let r: Vec<f64> = p.iter().zip(&t).map(|(p, t)| p - t).collect();
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = if hi > lo {
        (hi - lo) / BINS as f64
    } else {
        1.0
    };
    let mut counts = vec![0u64; BINS];
    for v in &r {
        let bin = (((v - lo) / width) as usize).min(BINS - 1);
        counts[bin] += 1;
    }
    let centers: Vec<f64> = (0..BINS).map(|b| lo + (b as f64 + 0.5) * width).collect();
    let n = r.len() as f64;
    let mean = r.iter().sum::<f64>() / n;
    let sd = (r.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    let mut plot = Plot::new();
    plot.add_trace(Bar::new(centers, counts).width(width).name("rows"));
    plot.set_layout(
        layout(
            format!("Residuals (pred − true): mean {mean:.4}, sd {sd:.4}, {n} rows"),
            "pred − true",
            "rows",
        )
        .bar_gap(0.0),
    );
    Ok(Chart::from(plot))
}

/// Milliseconds per partition of a job, from [`Session::last_job`](crate::Session::last_job):
/// Spark UI's task timeline, as bars. A partition much taller than the others is a
/// straggler; many tiny ones mean too many partitions.
///
/// ```
/// use sparkbook::charts;
/// use sparkbook::prelude::*;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// sc.parallelize((0..100).collect::<Vec<u32>>(), 4)?.map(|x| x * 2)?;
/// let chart = charts::partition_timings(&sc.last_job().unwrap());
/// let json: serde_json::Value = serde_json::from_str(&chart.to_json()).unwrap();
/// assert_eq!(json["data"][0]["x"], serde_json::json!(["0", "1", "2", "3"]));
/// assert_eq!(json["data"][0]["text"], serde_json::json!(["25 rows", "25 rows", "25 rows", "25 rows"]));
/// # Ok::<(), Error>(())
/// ```
pub fn partition_timings(report: &JobReport) -> Chart {
    let ids: Vec<String> = report
        .partitions
        .iter()
        .map(|p| p.index.to_string())
        .collect();
    let ms: Vec<f64> = report.partitions.iter().map(|p| p.seconds * 1e3).collect();
    let rows: Vec<String> = report
        .partitions
        .iter()
        .map(|p| format!("{} rows", p.rows))
        .collect();
    let mut plot = Plot::new();
    plot.add_trace(Bar::new(ids, ms).text_array(rows).name("ms"));
    plot.set_layout(layout(
        format!(
            "Job {} ({}): {:.1} ms on {} threads{}",
            report.job,
            report.verb,
            report.seconds * 1e3,
            report.threads,
            if report.failed { ", failed" } else { "" }
        ),
        "partition",
        "ms",
    ));
    Chart::from(plot)
}

/// The confusion table of a classifier's true/pred frame as a heat map: rows are
/// true labels, columns predicted ones, the diagonal is what it got right.
///
/// ```
/// use sparkbook::charts;
/// use sparkbook::polars::prelude::*;
///
/// let preds = df!("true" => ["a", "b", "b"], "pred" => ["a", "a", "b"])?;
/// let json: serde_json::Value = serde_json::from_str(&charts::confusion(&preds)?.to_json()).unwrap();
/// // Drawn top-down: the last true label is plotly's first (bottom) row.
/// assert_eq!(json["data"][0]["y"], serde_json::json!(["b", "a"]));
/// assert_eq!(json["data"][0]["z"], serde_json::json!([[1, 1], [1, 0]]));
///
/// let numbers = df!("true" => [1.0], "pred" => [1.0])?;
/// assert!(matches!(charts::confusion(&numbers), Err(sparkbook::Error::InvalidParameter { .. })));
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub fn confusion(preds: &DataFrame) -> Result<Chart> {
    let Scores::Classification(s) = preds.scores()? else {
        return Err(Error::InvalidParameter {
            name: "preds",
            reason: "a confusion table needs label predictions; `pred` is a float column \
                     (use true_vs_pred for regression)"
                .to_owned(),
        });
    };
    // plotly draws the first row at the bottom; reversed, the table reads top-down.
    let true_labels: Vec<String> = s.labels.iter().rev().cloned().collect();
    let counts: Vec<Vec<usize>> = s.confusion.iter().rev().cloned().collect();
    let mut plot = Plot::new();
    plot.add_trace(HeatMap::new(s.labels.clone(), true_labels, counts).name("rows"));
    plot.set_layout(layout(
        format!("Confusion: accuracy {:.4} over {} rows", s.accuracy, s.n),
        "predicted",
        "true",
    ));
    Ok(Chart::from(plot))
}
