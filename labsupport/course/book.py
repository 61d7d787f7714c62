"""The course as a static book: every notebook run on this host, written as HTML pages.

A class can read the course before anyone runs it - on a phone, without root,
without the lab. ``python -m labsupport book DIR`` runs each notebook top to
bottom in a fresh Jupyter kernel (as ``tests/test_notebooks.py`` does), then
writes DIR/index.html and one page per notebook with its outputs and charts.
Each page names the machine it ran on, since every figure in it is that
machine's; the index carries the doctor's table.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from labsupport.kernel.errors import LabError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO / "notebooks"
CELL_TIMEOUT = 300


def notebooks(chosen: Sequence[str] = ()) -> list[Path]:
    """The course's notebooks in course order; ``chosen`` picks some by prefix ("03", "A")."""
    found = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    if not chosen:
        return found
    picked = [p for p in found if any(p.stem.split("_")[0] == c for c in chosen)]
    unknown = [c for c in chosen if not any(p.stem.split("_")[0] == c for p in found)]
    if unknown:
        raise LabError(f"There is no notebook {', '.join(unknown)}: choose from "
                       f"{', '.join(p.stem.split('_')[0] for p in found)}.")
    return picked


def execute(path: Path, fast: bool = True):  # -> nbformat.NotebookNode
    """Run one notebook top to bottom in a fresh kernel, as root, as a learner would."""
    import nbformat
    from nbclient import NotebookClient

    saved = {key: os.environ.get(key) for key in ("LAB_FAST", "PYTHONPATH")}
    os.environ["PYTHONPATH"] = str(REPO)
    if fast:
        os.environ["LAB_FAST"] = "1"
    try:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        return nb
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def errors_in(nb) -> list[str]:
    """The error outputs of an executed notebook, one line each."""
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def _title(nb, path: Path) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


@dataclass(frozen=True)
class Page:
    notebook: str
    title: str
    file: Path
    errors: tuple[str, ...]


def _banner(machine_line: str) -> str:
    return ('<div style="font:14px sans-serif;background:#eef3f8;border:1px solid #9bb;'
            'padding:8px 12px;margin:8px 0">Run on: ' + html.escape(machine_line)
            + ' - every figure on this page is this machine\'s. <a href="index.html">Contents</a></div>')


def write(directory: str | os.PathLike, chosen: Sequence[str] = (), fast: bool = True,
          progress: bool | None = None) -> list[Page]:
    """Run the chosen notebooks (all by default) and write the book into ``directory``."""
    from nbconvert import HTMLExporter

    from labsupport.bench import machine
    from labsupport.bench.runner import _progress_bar
    from labsupport.course import doctor

    paths = notebooks(chosen)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    machine_line = machine.describe(machine.facts(), with_accelerator=True)
    exporter = HTMLExporter(template_name="lab")
    pages = []
    bar = _progress_bar()(total=len(paths), desc="Running the course", unit="notebook",
                          disable=None if progress is None else not progress, leave=False)
    try:
        for path in paths:
            bar.set_postfix_str(path.stem)
            nb = execute(path, fast)
            body, _ = exporter.from_notebook_node(nb)
            marker = body.find(">", body.find("<body")) + 1
            body = body[:marker] + _banner(machine_line) + body[marker:]
            target = out / f"{path.stem}.html"
            target.write_text(body)
            pages.append(Page(path.stem, _title(nb, path), target, tuple(errors_in(nb))))
            bar.update()
    finally:
        bar.close()
    rows = "".join(f'<li><a href="{p.file.name}">{html.escape(p.title)}</a>'
                   + (f' <b>({len(p.errors)} errors)</b>' if p.errors else "") + "</li>"
                   for p in pages)
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>The virtualization lab</title>"
        "<body style='font:16px sans-serif;max-width:60em;margin:2em auto'>"
        "<h1>The virtualization lab, as run on one machine</h1>"
        f"<p>{html.escape(machine_line)}</p><ol>{rows}</ol>"
        f"<h2>The doctor's findings on this machine</h2>{doctor.render_html(doctor.run_checks())}"
        "</body>")
    return pages
