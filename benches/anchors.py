"""The anchors' half of the comparison harness: one system on one prepared case.

    python benches/anchors.py --case target/bench-data/diamonds --system sklearn_kd_tree --threads 2

Systems: sklearn_brute, sklearn_kd_tree, sklearn_ball_tree (KNeighborsRegressor, k = 100,
n_jobs = threads), faiss_flat (IndexFlatL2, mean of the k neighbours' targets) and
pyspark (the seed's job: sc.broadcast(model), parallelize(X_test, n).zipWithIndex(),
mapPartitions(predict), collect, in local[threads]). Prints one JSON line with the
same fields as `examples/compare.rs run` and writes the predictions beside the data.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np


def load(case):
    meta = json.load(open(os.path.join(case, "meta.json")))
    read = lambda name: np.fromfile(os.path.join(case, f"{name}.f64"), dtype="<f8")
    d = meta["dim"]
    return (read("train_x").reshape(-1, d), read("train_y"),
            read("test_x").reshape(-1, d), read("test_y"), meta["k"])


MAX_RUNS = 15


def repeat(runs, predict):
    """Times `predict` `repeats` times, fewer once the runs add up to more than
    `long_run_s`, more (up to MAX_RUNS) while they add up to less than `fill_s`:
    compare.rs's rule, so both sides of a ratio are sampled alike."""
    repeats, long_run_s, fill_s = runs
    times, pred = [], None
    while True:
        started = time.perf_counter()
        pred = predict()
        times.append(time.perf_counter() - started)
        more = len(times) < max(repeats, 1) or (sum(times) < fill_s and len(times) < MAX_RUNS)
        if sum(times) > long_run_s or not more:
            return times, pred


def sklearn_system(algorithm, X, y, Xt, k, threads, runs):
    from sklearn.neighbors import KNeighborsRegressor
    started = time.perf_counter()
    model = KNeighborsRegressor(n_neighbors=k, algorithm=algorithm, n_jobs=threads).fit(X, y)
    fit_s = time.perf_counter() - started
    return 0.0, fit_s, *repeat(runs, lambda: model.predict(Xt))


def faiss_system(X, y, Xt, k, threads, runs):
    import faiss
    faiss.omp_set_num_threads(threads)
    started = time.perf_counter()
    index = faiss.IndexFlatL2(X.shape[1])
    index.add(np.ascontiguousarray(X, dtype="float32"))
    fit_s = time.perf_counter() - started
    queries = np.ascontiguousarray(Xt, dtype="float32")

    def predict():
        _, found = index.search(queries, k)
        return y[found].mean(axis=1)
    return 0.0, fit_s, *repeat(runs, predict)


def pyspark_system(X, y, Xt, k, threads, runs):
    from pyspark import SparkConf, SparkContext
    from sklearn.neighbors import KNeighborsRegressor
    started = time.perf_counter()
    conf = (SparkConf().setMaster(f"local[{threads}]").setAppName("seed")
            .set("spark.ui.enabled", "false").set("spark.driver.memory", "8g")
            .set("spark.driver.maxResultSize", "0"))
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    startup_s = time.perf_counter() - started
    started = time.perf_counter()
    model = KNeighborsRegressor(n_neighbors=k).fit(X, y)  # the seed's model
    fit_s = time.perf_counter() - started

    def predict_partition(rows):
        rows = list(rows)
        if not rows:
            return []
        index = [i for _, i in rows]
        return zip(index, b_model.value.predict(np.vstack([r for r, _ in rows])))

    def job():
        global b_model
        b_model = sc.broadcast(model)
        out = sc.parallelize(Xt, 10).zipWithIndex().mapPartitions(predict_partition).collect()
        b_model.destroy()
        pred = np.empty(len(Xt))
        for i, p in out:
            pred[i] = p
        return pred
    try:
        return startup_s, fit_s, *repeat(runs, job)
    finally:
        sc.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True)
    parser.add_argument("--system", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-run-s", type=float, default=60.0)
    parser.add_argument("--fill-s", type=float, default=0.0)
    a = parser.parse_args()
    X, y, Xt, _, k = load(a.case)
    common = (X, y, Xt, k, a.threads, (a.repeats, a.long_run_s, a.fill_s))
    if a.system.startswith("sklearn_"):
        result = sklearn_system(a.system.removeprefix("sklearn_"), *common)
    elif a.system == "faiss_flat":
        result = faiss_system(*common)
    elif a.system == "pyspark":
        result = pyspark_system(*common)
    else:
        sys.exit(f"unknown system {a.system}")
    startup_s, fit_s, times, pred = result
    np.asarray(pred, dtype="<f8").tofile(os.path.join(a.case, f"pred_{a.system}_t{a.threads}.f64"))
    print(json.dumps({
        "system": a.system, "threads": a.threads, "startup_s": startup_s, "fit_s": fit_s,
        "predict_s": statistics.median(times), "runs": times,
        # ru_maxrss is in KiB on Linux; for PySpark the driver sums the process tree.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
