#!/usr/bin/env bash
# sparkbook against sklearn (brute, kd_tree, ball_tree), faiss (IndexFlatL2), linfa-nn
# (KdTree, BallTree) and the seed's PySpark job, on the same data in one run; writes
# the tables into BENCHMARKS.md and the chart to benches/compare.html.
#
#   bash benches/compare.sh                        # 2 threads, plus a 1-thread scaling pass
#   bash benches/compare.sh --big                  # adds 1,000,000 x 200,000 at d = 8 (one run
#                                                  # of each anchor there, up to 15 min each)
#   bash benches/compare.sh --cases diamonds --no-write
#
# Needs the Rust toolchain, Python 3 with venv/pip and Java 17 (Spark's local mode);
# installs the anchors into .venv-bench on first use. Options go to benches/compare.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c "import faiss, pyspark, sklearn, plotly, psutil" 2>/dev/null; then
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install --quiet scikit-learn pandas threadpoolctl faiss-cpu pyspark psutil plotly
fi
# A release build of its own: the benchmark measures what a user's `--release` gets.
cargo build --quiet --release --locked --example compare
exec .venv-bench/bin/python benches/compare.py "$@"
