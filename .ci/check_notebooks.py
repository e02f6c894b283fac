"""Executes every notebook in notebooks/ in the evcxr kernel and fails on any error.

evcxr reports a failed cell without an error name or value, so a plain
`nbconvert --execute` stops with an empty CellExecutionError. This runs with
allow_errors, then prints each failing cell with its message; cells tagged
`raises-exception` are expected to fail. Outputs are saved into the notebooks so
they read on GitHub.
"""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

root = Path(__file__).resolve().parent.parent
failed = False
for path in sorted((root / "notebooks").glob("*.ipynb")):
    nb = nbformat.read(path, as_version=4)
    _, nb = nbformat.validator.normalize(nb)
    nb = nbformat.from_dict(nb)
    started = time.time()
    NotebookClient(nb, timeout=1800, kernel_name="rust", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.time() - started
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        expected = "raises-exception" in cell.metadata.get("tags", [])
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"
                  or (o.get("output_type") == "stream" and o.get("name") == "stderr" and "error" in o.get("text", "").lower()
                      and not expected and "[sparkbook]" not in o.get("text", ""))]
        if errors and not expected:
            text = "\n".join(o.get("text", "") or "\n".join(o.get("traceback", [])) or o.get("evalue", "") for o in errors)
            problems.append(f"  cell {index}:\n{cell.source}\n  --> {text.strip()}")
        if expected and not errors:
            problems.append(f"  cell {index} is tagged raises-exception but did not fail:\n{cell.source}")
    nbformat.write(nb, path)
    status = "ok" if not problems else "FAILED"
    print(f"{path.name}: {status} ({seconds:.0f} s)")
    for p in problems:
        print(p)
    failed |= bool(problems)
sys.exit(1 if failed else 0)
