"""Executes every notebook in notebooks/ in the evcxr kernel and fails on any error.

evcxr reports a failed cell without an error name or value, so a plain
`nbconvert --execute` stops with an empty CellExecutionError. This runs with
allow_errors, then prints each failing cell with its message; cells tagged
`raises-exception` are expected to fail. A kernel that dies stops the run with
nbclient's DeadKernelError. Outputs are saved into the notebooks so they read on
GitHub.

    python .ci/check_notebooks.py [PREFIX ...]   # all notebooks, or those named so (02 03)
"""
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

PANIC_REPORT = re.compile(r"^thread '.*' .*panicked at .*:$")
BACKTRACE_LINE = re.compile(r"^(\s+\d+: |\s+at |stack backtrace:$|note: (Some details are omitted|run with `RUST_BACKTRACE))")


def failure(cell):
    """The error a cell's outputs report, or "" when it ran cleanly.

    evcxr reports compile errors and unhandled panics as `error` outputs, but an
    `Err` returned through `?` only as text on stderr. So stderr counts as a failure
    too, except sparkbook's progress lines and the report Rust's panic hook prints
    for a panic that sparkbook caught and returned as an `Err` value.
    """
    found = [("\n".join(o.get("traceback", [])) or o.get("evalue", ""))
             for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    # evcxr sends stderr line by line, one output each: join them first.
    stderr = "".join(o.get("text", "") for o in cell.get("outputs", [])
                     if o.get("output_type") == "stream" and o.get("name") == "stderr")
    in_panic, message_next = False, False
    for line in re.sub(r"\x1b\[[0-9;]*m", "", stderr).splitlines():
        if PANIC_REPORT.match(line):
            in_panic, message_next = True, True
        elif message_next:
            message_next = False  # the panic's message
        elif (in_panic and (line.startswith((" ", "stack backtrace:", "note: ")) or not line.strip())) \
                or BACKTRACE_LINE.match(line):
            pass  # its backtrace (evcxr sets RUST_BACKTRACE), even if it arrived a cell late
        else:
            in_panic = False
            if line.strip() and not line.startswith("[sparkbook]"):
                found.append(line)
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(found)).strip()


root = Path(__file__).resolve().parent.parent
failed = False
wanted = set(sys.argv[1:])
for path in sorted((root / "notebooks").glob("*.ipynb")):
    if wanted and not any(path.name.startswith(w) for w in wanted):
        continue
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
        text = failure(cell)
        if text and not expected:
            problems.append(f"  cell {index}:\n{cell.source}\n  --> {text}")
        if expected and not text:
            problems.append(f"  cell {index} is tagged raises-exception but did not fail:\n{cell.source}")
    nbformat.write(nb, path)
    status = "ok" if not problems else "FAILED"
    print(f"{path.name}: {status} ({seconds:.0f} s)")
    for p in problems:
        print(p)
    failed |= bool(problems)
sys.exit(1 if failed else 0)
