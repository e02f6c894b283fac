#!/usr/bin/env bash
# sparkbook vs sklearn on diamonds (43k x 11k x 9) and King County (17k x 4k x 18), k = 100, in one run.
# Installs sklearn into .venv-bench on first use; needs Python 3 with pip.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-bench/bin/python ]; then
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install --quiet scikit-learn pandas threadpoolctl
fi
cargo run --quiet --example knn_timing
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow a current numpy; unset for the anchor only.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv-bench/bin/python benches/sklearn_anchor.py
