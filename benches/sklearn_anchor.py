"""sklearn on the data `cargo run --example knn_timing` prepared, in the same run.

Times KNeighborsRegressor(n_neighbors=100, n_jobs=-1) with brute, kd_tree and
ball_tree (median of 3 predicts), and checks every prediction against sparkbook's.
"""
import os
import statistics
import sys
import time

import numpy as np
import pandas as pd
import sklearn
from sklearn.neighbors import KNeighborsRegressor
from threadpoolctl import threadpool_info

data = os.path.join(os.path.dirname(__file__), "..", "target", "bench-data")
blas = ", ".join(f"{i['internal_api']} {i.get('threading_layer', '')} {i['num_threads']}t" for i in threadpool_info())
print(f"\nsklearn {sklearn.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}, {os.cpu_count()} cpus, {blas}")
for case in ["diamonds", "king_county"]:
    train = pd.read_csv(os.path.join(data, f"{case}_train.csv"))
    test = pd.read_csv(os.path.join(data, f"{case}_test.csv"))
    ours = pd.read_csv(os.path.join(data, f"{case}_sparkbook_pred.csv"))["pred"].to_numpy()
    X, y = train.drop(columns="price").to_numpy(), train["price"].to_numpy()
    Xt = test.drop(columns="price").to_numpy()
    print(f"\n{case}: {X.shape[0]} train x {Xt.shape[0]} test x {X.shape[1]} features")
    for algorithm in ["brute", "kd_tree", "ball_tree"]:
        model = KNeighborsRegressor(n_neighbors=100, algorithm=algorithm, n_jobs=-1)
        started = time.perf_counter()
        model.fit(X, y)
        fit_s = time.perf_counter() - started
        times = []
        for _ in range(3):
            started = time.perf_counter()
            pred = model.predict(Xt)
            times.append(time.perf_counter() - started)
        rel = np.abs(pred - ours) / np.maximum(np.abs(pred), 1e-300)
        agree = np.mean(rel <= 1e-9)
        print(f"{'sklearn ' + algorithm:<28} {fit_s:>9.3f} {statistics.median(times):>11.3f}   "
              f"equals sparkbook to 1e-9 on {agree:.2%} of rows (max rel diff {rel.max():.1e}; tests/sklearn_parity.rs explains the rest: k-th distance ties)")
