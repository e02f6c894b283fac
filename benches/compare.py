"""Drives the comparison: every system on the same data in one run, then the tables.

Run through `bash benches/compare.sh` (it builds the Rust side and the Python venv).
Each system runs in a process of its own, so its peak memory is its own: the driver
samples the resident set of the whole process tree (for PySpark: the driver JVM plus
its Python workers) every 20 ms and also reads the process's own high-water mark.
Every system's predictions are checked against an exact float64 oracle written here
in numpy (all distances, sorted by distance then training row) on sampled test rows.
Writes target/bench-data/results.json, the tables between the `compare` markers in
BENCHMARKS.md and the chart benches/compare.html.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "target" / "bench-data"
RUST = ROOT / "target" / "release" / "examples" / "compare"
# Our names for the Rust systems, and the example's `--system` values.
RUST_SYSTEMS = {"sparkbook_auto": "auto", "sparkbook_kd_tree": "kd-tree", "sparkbook_brute": "brute",
                "linfa_nn_kdtree": "linfa-kdtree", "linfa_nn_balltree": "linfa-balltree"}
PY_SYSTEMS = ["sklearn_brute", "sklearn_kd_tree", "sklearn_ball_tree", "faiss_flat", "pyspark"]
# linfa-nn's trees answer one query at a time with no early hand-off; in 32
# uniform dimensions they visit nearly every row, so they are left out there by
# default to keep the harness's run bounded.
LINFA_NOTE = "linfa-nn is not run at d >= 32 unless --linfa-everywhere is given (its trees visit nearly every row there)."
CASES = ["diamonds", "king_county", "uniform_1m_20k_d8", "uniform_1m_20k_d32"]
BIG = "uniform_1m_200k_d8"
# Anchors need OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset (they slow a current numpy);
# Spark's workers must use the venv's python; Spark binds loopback only.
ANCHOR_ENV = {k: v for k, v in os.environ.items()
              if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
ANCHOR_ENV.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
                  SPARK_LOCAL_IP="127.0.0.1")


def measured(cmd, env=None, limit_s=None):
    """Runs cmd; returns its last stdout line as JSON, with the peak RSS of its process
    tree. A run past limit_s is stopped and reported as {"stopped_after_s": limit_s}."""
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        env=env, cwd=ROOT, start_new_session=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            try:
                tree = [proc] + proc.children(recursive=True)
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.02)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        for p in [proc] + proc.children(recursive=True):
            p.kill()
        proc.communicate()
        sampler.join()
        return {"stopped_after_s": limit_s, "peak_rss_bytes": peak[0]}
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_bytes"] = max(result["peak_rss_bytes"], peak[0])
    return result


def run_system(case, system, threads, runs, limit_s):
    """`runs`: (repeats, fill_s), as compare.rs and anchors.py take them."""
    path = DATA / case
    repeats, fill_s = runs
    flags = ["--threads", str(threads), "--repeats", str(repeats), "--fill-s", str(fill_s)]
    if system in RUST_SYSTEMS:
        cmd = [RUST, "run", "--case", path, "--system", RUST_SYSTEMS[system]] + flags
        return measured([str(c) for c in cmd], limit_s=limit_s)
    cmd = [sys.executable, ROOT / "benches" / "anchors.py", "--case", path, "--system", system] + flags
    return measured([str(c) for c in cmd], env=ANCHOR_ENV, limit_s=limit_s)


def merged(passes):
    """One system's passes as one result: the pass with the least median (a
    busy host only ever slows a pass down), with every pass's median kept,
    the largest peak memory and the worst agreement with the oracle."""
    done = [r for r in passes if "stopped_after_s" not in r]
    if not done:
        return passes[0]
    best = dict(min(done, key=lambda r: r["predict_s"]))
    best["pass_medians"] = [r["predict_s"] for r in done]
    for key in ("peak_rss_bytes", "predict_peak_rss_bytes"):
        if key in best:
            best[key] = max(r[key] for r in done)
    best["oracle_agree"] = min(r["oracle_agree"] for r in done)
    best["oracle_max_rel"] = max(r["oracle_max_rel"] for r in done)
    return best


def cpu_description():
    """The CPU's model and the vector units the kernels choose between: the
    bf16 products (AMX tiles, AVX-512 BF16) change brute force's speed most."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")),
                 platform.machine())
    flags = set(next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), []))
    units = [name for flag, name in [("avx2", "AVX2"), ("avx512f", "AVX-512"),
                                     ("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX")]
             if flag in flags]
    return f"{model}; {', '.join(units) or 'no AVX2'}"


def load(case):
    path = DATA / case
    meta = json.load(open(path / "meta.json"))
    read = lambda name: np.fromfile(path / f"{name}.f64", dtype="<f8")
    d = meta["dim"]
    return meta, read("train_x").reshape(-1, d), read("train_y"), read("test_x").reshape(-1, d), read("test_y")


def oracle(X, y, Xt, k, rows):
    """Exact predictions for the given test rows: every distance in float64, sorted
    by (distance, training row), the mean of the first k targets."""
    out = []
    for i in rows:
        dist = np.sqrt(((X - Xt[i]) ** 2).sum(axis=1))
        order = np.lexsort((np.arange(len(X)), dist))
        out.append(y[order[:k]].mean())
    return np.array(out)


def agreement(pred, want, rows):
    got = pred[rows]
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
    return float(np.mean(rel <= 1e-9)), float(rel.max())


def gemm_peak(threads):
    return json.loads(subprocess.run([str(RUST), "gemm", "--threads", str(threads)], check=True,
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1])


def anchor_versions(systems):
    """Versions of the anchors this run uses: a machine without Java or faiss (a lent
    many-core one, say) still runs the others."""
    import sklearn
    out = [f"sklearn {sklearn.__version__}", f"numpy {np.__version__}"]
    if "faiss_flat" in systems:
        import faiss
        out.append(f"faiss-cpu {faiss.__version__}")
    if "pyspark" in systems:
        import pyspark
        out.append(f"pyspark {pyspark.__version__}")
    return ", ".join(out + [f"python {platform.python_version()}"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scaling-threads", default="1", help="extra thread counts for the scaling table")
    parser.add_argument("--scaling-systems", default="sparkbook_auto,sklearn_kd_tree,faiss_flat",
                        help="the systems also run at the scaling thread counts")
    parser.add_argument("--scaling-repeats", type=int, help="runs per scaling point (default: --repeats)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fill-s", type=float, default=3.0,
                        help="short predicts run again until their runs add up to this (15 at most)")
    parser.add_argument("--passes", type=int, default=2,
                        help="times every system runs, in turn with the others (the --big case: once)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--systems", default=",".join(list(RUST_SYSTEMS) + PY_SYSTEMS))
    parser.add_argument("--big", action="store_true", help="add 1,000,000 x 200,000 at d = 8")
    parser.add_argument("--linfa-everywhere", action="store_true", help="run linfa-nn at d >= 32 too")
    parser.add_argument("--limit-s", type=float, default=150.0,
                        help="stop a system's process after this long (sklearn's trees at d = 32)")
    parser.add_argument("--big-limit-s", type=float, default=900.0,
                        help="the same limit on the --big case, where sklearn needs ~5 minutes")
    parser.add_argument("--oracle-rows", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    parser.add_argument("--no-growth", action="store_true", help="skip the cost-growth series")
    a = parser.parse_args()
    cases = list(dict.fromkeys([c for c in a.cases.split(",") if c] + ([BIG] if a.big else [])))
    systems = a.systems.split(",")
    subprocess.run([str(RUST), "prepare", "--out", str(DATA)] + (["--big"] if BIG in cases else []), check=True)

    scaling_systems = a.scaling_systems.split(",")
    info = {
        "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
        "cpu": cpu_description(),
        "versions": anchor_versions(systems),
        "threads": a.threads, "gemm": gemm_peak(a.threads),
    }
    print(json.dumps(info), flush=True)
    results = []
    for case in cases:
        meta, X, y, Xt, _ = load(case)
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(len(Xt), size=min(a.oracle_rows, len(Xt)), replace=False))
        want = oracle(X, y, Xt, meta["k"], rows)
        del X, y, Xt
        for threads in [a.threads] + [int(t) for t in a.scaling_threads.split(",") if t]:
            jobs = [s for s in systems
                    if (threads == a.threads or s in scaling_systems)
                    # see LINFA_NOTE
                    and not (s.startswith("linfa_nn") and meta["dim"] >= 32 and not a.linfa_everywhere)]
            runs = {s: [] for s in jobs}
            # Every system once, then every system again: a busy moment of the
            # shared host then slows one pass of each, not one system's only one.
            for _ in range(1 if case == BIG else a.passes):
                for system in jobs:
                    if any("stopped_after_s" in r for r in runs[system]):
                        continue  # once past the limit, not run again
                    repeats = a.repeats if threads == a.threads else (a.scaling_repeats or a.repeats)
                    limit_s = a.limit_s
                    if case == BIG:
                        # One run of each anchor there: one is minutes long.
                        limit_s = a.big_limit_s
                        repeats = repeats if system in RUST_SYSTEMS and system.startswith("sparkbook") else 1
                    r = run_system(case, system, threads, (repeats, a.fill_s), limit_s)
                    r.update(system=system, threads=threads, case=case, meta=meta)
                    if "stopped_after_s" not in r:
                        pred = np.fromfile(DATA / case / f"pred_{system}_t{threads}.f64", dtype="<f8")
                        r["oracle_agree"], r["oracle_max_rel"] = agreement(pred, want, rows)
                    runs[system].append(r)
                    print(json.dumps(r), flush=True)
            results += [merged(runs[s]) for s in jobs]
        json.dump({"info": info, "results": results}, open(DATA / "results.json", "w"), indent=1)
    growth = [] if a.no_growth else [json.loads(line) for line in subprocess.run(
        [str(RUST), "growth", "--threads", str(a.threads)], check=True, capture_output=True,
        text=True).stdout.splitlines() if line.startswith("{")]
    json.dump({"info": info, "results": results, "growth": growth}, open(DATA / "results.json", "w"), indent=1)
    import report
    text = report.markdown(info, results, growth) + ("" if a.linfa_everywhere else "\n\n" + LINFA_NOTE)
    print(text)
    if not a.no_write:
        report.write(text, info, results, growth)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
