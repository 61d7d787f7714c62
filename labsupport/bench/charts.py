"""Charts of benchmark results that a teacher can put on a slide as they are.

Each chart is a ``matplotlib.figure.Figure`` built without pyplot: library
code must not leave figures or settings behind in a learner's notebook.
A notebook shows the figure as a cell's value; ``save`` writes PNG or
SVG; ``export`` writes both at slide size, so exporting every benchmark is
one call per result.

matplotlib is imported only when a chart is drawn: a benchmark whose peers
fork this Python (the lab's runner does) would otherwise fork its ~40 MB
too, and measure that.
"""
from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from labsupport.bench.result import BenchResult, PeerInfo, number
from labsupport.kernel.errors import LabError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SLIDE_INCHES = (12.0, 6.75)  # 16:9
PNG_DPI = 150  # 1800 x 1012 pixels: sharp on a projector
FORMATS = (".png", ".svg")
CAPTION_WIDTH = 160  # characters of 9-point text across a 12-inch slide


def _label(result: BenchResult, peer: PeerInfo) -> str:
    """The median, and for a peer that is not the baseline its ratio to it."""
    ratio = result.against_baseline(peer)
    return (f" {number(result.summary(peer.name).median)}"
            + (f"  (×{ratio.value:.2f})" if ratio is not None else ""))


def _rows(result: BenchResult) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """Row labels, and each peer's bar position and thickness.

    Grouped results get one row per group, its peers side by side, the
    first series on top as in the legend; ungrouped ones one row per peer.
    """
    if not any(result.groups()):
        return result.series(), {p.name: (float(i), 0.7) for i, p in enumerate(result.peers)}
    groups, places = result.groups(), {}
    for row, group in enumerate(groups):
        members = [p for who in result.series() if (p := result.find(group, who))]
        height = 0.8 / len(members)  # a row's bars share 0.8 of it
        for slot, peer in enumerate(members):
            places[peer.name] = (row + (slot - (len(members) - 1) / 2) * height, height * 0.9)
    return groups, places


def bar_chart(result: BenchResult, log: bool = False,
              size: tuple[float, float] = SLIDE_INCHES) -> "Figure":
    """Horizontal bars of the medians, one colour per series; the whiskers span
    p25-p75; the caption names the machine and the method."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    labels, places = _rows(result)
    grouped = any(result.groups())
    with rc_context({"font.size": 13}):
        fig = Figure(figsize=size, layout="constrained")
        ax = fig.add_subplot()
        for k, who in enumerate(result.series()):
            peers = [p for p in result.peers if p.series == who]
            stats = [result.summary(p.name) for p in peers]
            bars = ax.barh([places[p.name][0] for p in peers], [s.median for s in stats],
                           height=[places[p.name][1] for p in peers],
                           xerr=[[s.median - s.p25 for s in stats], [s.p75 - s.median for s in stats]],
                           capsize=3, color=f"C{k}", label=who, error_kw={"elinewidth": 1})
            ax.bar_label(bars, [_label(result, p) for p in peers], padding=4, fontsize=10)
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        if log:
            # Plain numbers (2, 3, 5, 10), not 2x10^0: a slide is read from the back row.
            ax.set_xscale("log")
            plain = FuncFormatter(lambda value, _: number(value))
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(plain)
        ax.margins(x=0.15)
        if log:
            low, high = ax.get_xlim()
            if high > 10 * low:  # over a decade the minor labels (2, 3, ... 9) run into each other
                ax.xaxis.set_minor_formatter(NullFormatter())
        ratios = f"; (×N): ratio to {result.baseline}" if result.baseline else ""
        better = ", higher is better" if result.higher_is_better else ""
        ax.set_xlabel(f"median {result.unit} per trial{better} (whiskers: p25-p75{ratios})")
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        if grouped and len(result.series()) > 1:
            fig.legend(loc="outside right upper")
        ax.set_title(result.title, fontsize=15, loc="left")
        caption = [part for line in result.caption().splitlines()
                   for part in textwrap.wrap(line, CAPTION_WIDTH)]
        fig.text(0.005, 0.005, "\n".join(caption), fontsize=9, color="0.35", va="bottom")
        # Keep the caption's lines clear of the axis label.
        bottom = 0.03 * len(caption) + 0.01
        fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))
    # A Figure made without pyplot shows as "<Figure ...>" in a notebook whose
    # inline backend never loaded; this lets IPython draw it anyway.
    fig._repr_png_ = lambda: _png_bytes(fig)
    return fig


def _png_bytes(fig: "Figure") -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def chart_path(path: str | os.PathLike) -> Path:
    """``path`` if its suffix names a format a chart can be saved in (check it before a
    long benchmark, not after)."""
    target = Path(path)
    if target.suffix.lower() not in FORMATS:
        raise LabError(f"A chart is saved as {' or '.join(FORMATS)}, not "
                       f"{target.suffix or 'a file without a suffix'}: rename {target.name}.")
    return target


def save(fig: "Figure", path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG or SVG, chosen by the file's suffix."""
    target = chart_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=PNG_DPI)
    return target


def export(result: BenchResult, directory: str | os.PathLike, log: bool = False) -> list[Path]:
    """Write ``result``'s chart at slide size as DIRECTORY/<name>.png and .svg."""
    fig = bar_chart(result, log=log)
    return [save(fig, Path(directory) / f"{result.name}{suffix}") for suffix in FORMATS]
