//! HTML display for notebooks: what evcxr receives for frames, scores, jobs and
//! broadcasts.

use polars::prelude::*;
use sparkbook::MAX_ROWS;
use sparkbook::prelude::*;

fn cells(html: &str) -> Vec<Vec<String>> {
    html.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td>")
                .skip(1)
                .map(|c| c.split("</td>").next().unwrap().to_owned())
                .collect()
        })
        .filter(|r: &Vec<String>| !r.is_empty())
        .collect()
}

#[test]
fn long_frames_show_head_and_tail_around_an_ellipsis() {
    let df = df!("i" => (0..25).collect::<Vec<i64>>(), "s" => (0..25).map(|i| format!("r{i}")).collect::<Vec<_>>()).unwrap();
    let html = df.to_html();
    assert!(
        html.contains("<caption>25 rows × 2 columns</caption>"),
        "{html}"
    );
    assert!(html.contains("<th>i<br><small>i64</small></th>"), "{html}");
    let rows = cells(&html);
    assert_eq!(rows.len(), MAX_ROWS + 1);
    assert_eq!(rows[0], vec!["0", "r0"]);
    assert_eq!(rows[MAX_ROWS / 2], vec!["…", "…"]);
    assert_eq!(rows[MAX_ROWS], vec!["24", "r24"]);
    assert!(!html.contains(">12<"), "a middle row leaked: {html}");
}

#[test]
fn text_is_escaped_and_nulls_are_shown() {
    let df = df!("x" => [Some("<script>alert('x')</script>"), None]).unwrap();
    let html = df.to_html();
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{html}"
    );
    assert_eq!(cells(&html)[1], vec!["null"]);
}

#[test]
fn evcxr_receives_html_between_its_markers() {
    let df = df!("x" => [1.5]).unwrap();
    let content = df.evcxr_content();
    assert!(content.starts_with("EVCXR_BEGIN_CONTENT text/html\n<table"));
    assert!(content.ends_with("</table>\nEVCXR_END_CONTENT\n"));
}

#[test]
fn scores_jobs_partitions_and_broadcasts_render() {
    let reg = df!("true" => [1.0, 2.0], "pred" => [1.0, 3.0])
        .unwrap()
        .scores()
        .unwrap();
    let html = reg.to_html();
    assert_eq!(
        cells(&html)[0],
        vec!["-1.0000", "0.7071", "0.5000", "2"],
        "{html}"
    );

    let cls = df!("true" => ["a", "b", "b"], "pred" => ["a", "a", "b"])
        .unwrap()
        .scores()
        .unwrap();
    let html = cls.to_html();
    assert!(html.contains("accuracy 0.6667 over 3 rows"), "{html}");
    assert_eq!(cells(&html), vec![vec!["a", "1", "0"], vec!["b", "1", "1"]]);

    let sc = Session::builder()
        .threads(2)
        .progress(false)
        .build()
        .unwrap();
    let parts = sc.parallelize(&df!("x" => [1, 2, 3]).unwrap(), 2).unwrap();
    assert_eq!(
        cells(&parts.to_html()),
        vec![vec!["0", "1", "0"], vec!["1", "2", "1"]]
    );
    parts.map_partitions(|p| p).unwrap();
    let job = sc.last_job().unwrap().to_html();
    assert!(job.contains("(map_partitions)"), "{job}");
    assert_eq!(cells(&job).len(), 2);

    let b = sc.broadcast(vec![1u8]);
    assert!(b.to_html().contains("live"));
    b.destroy();
    assert!(b.to_html().contains("destroyed"));
}
