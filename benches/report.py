"""Tables and chart of one comparison run (`benches/compare.py` calls this).

    python benches/report.py            # re-renders from target/bench-data/results.json
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"
NAMES = {
    "sparkbook_auto": "**sparkbook `Auto`**", "sparkbook_kd_tree": "sparkbook `KdTree`",
    "sparkbook_brute": "sparkbook `Brute`", "linfa_nn_kdtree": "linfa-nn `KdTree` (direct)",
    "linfa_nn_balltree": "linfa-nn `BallTree` (direct)", "sklearn_brute": "sklearn `brute`",
    "sklearn_kd_tree": "sklearn `kd_tree`", "sklearn_ball_tree": "sklearn `ball_tree`",
    "faiss_flat": "faiss `IndexFlatL2`", "pyspark": "PySpark seed job (sklearn in `mapPartitions`)",
}


def data_bytes(meta):
    """train + test + output (true, pred) as float64."""
    d = meta["dim"]
    return 8 * (meta["n_train"] * (d + 1) + meta["n_test"] * (d + 1) + 2 * meta["n_test"])


def fmt_ratio(x):
    return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def runs(r):
    """The runs of the pass that counts, and each pass's median where there were more."""
    medians = r.get("pass_medians", [])
    return f"{len(r['runs'])}" + (f" ({' / '.join(f'{m:.3f}' for m in medians)})" if len(medians) > 1 else "")


def markdown(info, results, growth):
    main = info["threads"]
    stopped = [r for r in results if "stopped_after_s" in r]
    results = [r for r in results if "stopped_after_s" not in r]
    by = {(r["case"], r["system"], r["threads"]): r for r in results}
    halted = {(r["case"], r["system"], r["threads"]): r["stopped_after_s"] for r in stopped}
    cases = list(dict.fromkeys(r["case"] for r in results))
    gemm = info["gemm"]
    out = [f"Run of {info['date']}: {info['cpus']} cpus ({info['cpu']}), {main} threads per system unless noted; "
           f"{info['versions']}. GEMM rate on this machine ({gemm['threads']} threads, "
           f"matrixmultiply): f32 {gemm['sgemm_gflops']} GFLOP/s, f64 {gemm['dgemm_gflops']} GFLOP/s"
           + (f"; bf16 dot-product peak (`vdpbf16ps`, all threads): {gemm['bf16_dot_gflops']} GFLOP/s."
              if gemm.get("bf16_dot_gflops") else "."),
           "", "### Summary",
           "", "Predict times (median of the runs; every system runs in turn with the others twice, and "
           "the faster pass counts, as a busy moment of a shared host only ever slows a pass); ratio = the other system's time / sparkbook `Auto`'s, "
           "so above 1x means sparkbook is faster. The seed job rows time broadcast -> parallelize -> "
           "map_partitions -> collect; \"with start-up\" adds the engine's start (Session / SparkContext) "
           "and the model's fit. Memory: the whole run's peak, from the process's start, with the frames "
           "read straight from the case's files and the training frame drained into the model "
           "(`fit_frame_drain`: each column freed once copied, so the fit holds the data about once); "
           "the predict phase is the seed job's own peak, after the fit.", "",
           "| case | n_train x n_test x d | sparkbook `Auto` (s) | fastest sklearn (s) | ratio | faiss flat (s) | ratio "
           "| PySpark job (s) | ratio | with start-up: sparkbook / PySpark (s) | ratio | sparkbook peak RSS / (train + test + output): whole run / predict phase |",
           "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for case in cases:
        ours = by.get((case, "sparkbook_auto", main))
        if not ours:
            continue
        meta = ours["meta"]
        t = ours["predict_s"]
        sk = [by[(case, s, main)] for s in ("sklearn_brute", "sklearn_kd_tree", "sklearn_ball_tree")
              if (case, s, main) in by]
        best = min(sk, key=lambda r: r["predict_s"]) if sk else None
        fa, ps = by.get((case, "faiss_flat", main)), by.get((case, "pyspark", main))
        # A system stopped at the limit has no time, only "more than the limit"
        # (fit and start-up included), so it gets no ratio.
        gone = lambda *systems: next((f"stopped at {halted[(case, s, main)]:.0f}" for s in systems
                                      if (case, s, main) in halted), "-")
        cell = lambda r, s: (f"{r['predict_s']:.3f}", fmt_ratio(r["predict_s"] / t)) if r else (gone(s), "-")
        sk_cell = (f"{best['predict_s']:.3f} ({best['system'].removeprefix('sklearn_')})",
                   fmt_ratio(best["predict_s"] / t)) if best else (
                       gone("sklearn_brute", "sklearn_kd_tree", "sklearn_ball_tree"), "-")
        total = lambda r: r["startup_s"] + r["fit_s"] + r["predict_s"]
        start = (f"{total(ours):.3f} / {total(ps):.1f}", fmt_ratio(total(ps) / total(ours))) if ps else ("-", "-")
        mem = ours["peak_rss_bytes"] / data_bytes(meta)
        mem_predict = ours.get("predict_peak_rss_bytes", ours["peak_rss_bytes"]) / data_bytes(meta)
        out.append(f"| {case} | {meta['n_train']:,} x {meta['n_test']:,} x {meta['dim']} | **{t:.3f}** | "
                   f"{' | '.join(sk_cell)} | {' | '.join(cell(fa, 'faiss_flat'))} | {' | '.join(cell(ps, 'pyspark'))} | "
                   f"{' | '.join(start)} | {mem:.2f}x / {mem_predict:.2f}x |")
    for case in cases:
        rows = [r for r in results if r["case"] == case and r["threads"] == main]
        if not rows:
            continue
        meta = rows[0]["meta"]
        ours = by.get((case, "sparkbook_auto", main))
        out += ["", f"### {case}: {meta['description']}",
                f"{meta['n_train']:,} train x {meta['n_test']:,} test x {meta['dim']} features, k = {meta['k']}; "
                f"train + test + output = {data_bytes(meta) / 1e6:.0f} MB.", "",
                "| system | fit (s) | predict (s) | runs (each pass's median, s) | peak RSS (MB) | time / sparkbook `Auto` | sampled rows equal to the exact oracle (1e-9) |",
                "|---|--:|--:|--:|--:|--:|--:|"]
        for r in rows:
            ratio = fmt_ratio(r["predict_s"] / ours["predict_s"]) if ours else "-"
            rss = f"{r['peak_rss_bytes'] / 1e6:.0f}"
            if "predict_peak_rss_bytes" in r:
                rss += f" ({r['predict_peak_rss_bytes'] / 1e6:.0f} predicting)"
            out.append(f"| {NAMES.get(r['system'], r['system'])} | {r['fit_s']:.3f} | {r['predict_s']:.3f} | "
                       f"{runs(r)} | {rss} | {ratio} | "
                       f"{r['oracle_agree']:.1%} (max rel. diff {r['oracle_max_rel']:.0e}) |")
        brute = by.get((case, "sparkbook_brute", main))
        if brute and meta["dim"] >= 32:
            flops = 2 * meta["n_train"] * meta["n_test"] * meta["dim"] / brute["predict_s"] / 1e9
            line = (f"sparkbook `Brute` here: {flops:.1f} GFLOP/s of distance work "
                    f"({flops / gemm['sgemm_gflops']:.0%} of the f32 GEMM rate, "
                    f"{flops / gemm['dgemm_gflops']:.0%} of the f64 one).")
            if gemm.get("bf16_dot_gflops"):
                floor = 2 * meta["n_train"] * meta["n_test"] * meta["dim"] / gemm["bf16_dot_gflops"] / 1e9
                line += (f" That is {flops / gemm['bf16_dot_gflops']:.0%} of the bf16 peak, the ceiling of "
                         f"its products: a predict that computes every product takes at least {floor:.2f} s here.")
            out += ["", line]
    scaling = sorted({r["threads"] for r in results})
    if len(scaling) > 1:
        out += ["", "### Threads", "",
                "| case | system | " + " | ".join(f"{t} thread{'s' if t > 1 else ''} (s)" for t in scaling)
                + f" | speed-up {scaling[0]} -> {scaling[-1]} |",
                "|---|---|" + "--:|" * (len(scaling) + 1)]
        for case in cases:
            for system in ("sparkbook_auto", "sklearn_kd_tree", "faiss_flat"):
                ts = [by.get((case, system, t)) for t in scaling]
                if all(ts):
                    out.append(f"| {case} | {NAMES[system]} | " + " | ".join(f"{r['predict_s']:.3f}" for r in ts)
                               + f" | {ts[0]['predict_s'] / ts[-1]['predict_s']:.2f}x |")
    if growth:
        out += ["", f"### Cost growth: sparkbook `Auto`, uniform data, {growth[0]['n_test']:,} queries, k = 100", "",
                "| n_train | d | index | predict (s) | ns per (query, training row) |", "|--:|--:|---|--:|--:|"]
        for g in growth:
            ns = g["predict_s"] / (g["n_train"] * g["n_test"]) * 1e9
            out.append(f"| {g['n_train']:,} | {g['dim']} | {g['algorithm']} | {g['predict_s']:.3f} | {ns:.3f} |")
    for r in stopped:
        out += ["", f"{NAMES.get(r['system'], r['system'])} on {r['case']} ({r['threads']} threads) was stopped "
                    f"after {r['stopped_after_s']:.0f} s without finishing one predict."]
    out += ["", "Chart: [benches/compare.html](benches/compare.html) (predict time per system and case, log scale; "
                "cost growth)."]
    return "\n".join(out)


def chart(results, growth, main):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    cases = list(dict.fromkeys(r["case"] for r in results))
    systems = list(dict.fromkeys(r["system"] for r in results))
    fig = make_subplots(rows=2, cols=1, subplot_titles=(
        "predict time, k = 100 (log scale, lower is better)", "sparkbook Auto: time against n_train and d"))
    for s in systems:
        rs = {r["case"]: r["predict_s"] for r in results
              if r["system"] == s and r["threads"] == main and "predict_s" in r}
        fig.add_trace(go.Bar(name=NAMES.get(s, s).replace("*", "").replace("`", ""), x=cases,
                             y=[rs.get(c) for c in cases]), row=1, col=1)
    fig.update_yaxes(type="log", title_text="seconds", row=1, col=1)
    labels = [f"n={g['n_train']:,} d={g['dim']}" for g in growth]
    fig.add_trace(go.Scatter(name="sparkbook Auto (growth)", x=labels, y=[g["predict_s"] for g in growth],
                             mode="lines+markers"), row=2, col=1)
    fig.update_yaxes(type="log", title_text="seconds", row=2, col=1)
    fig.update_layout(barmode="group", height=900, title="sparkbook vs the anchors")
    fig.write_html(ROOT / "benches" / "compare.html", include_plotlyjs="cdn")


def write(text, info, results, growth):
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    path.write_text(doc)
    chart(results, growth, info["threads"])


if __name__ == "__main__":
    saved = json.load(open(ROOT / "target" / "bench-data" / "results.json"))
    text = markdown(saved["info"], saved["results"], saved.get("growth", []))
    print(text)
    if "--write" in sys.argv:
        write(text, saved["info"], saved["results"], saved.get("growth", []))
