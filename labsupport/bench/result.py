"""A benchmark's result: every sample, the order they were taken in, and the machine.

It keeps raw samples, not just medians, so a saved result can be summarised
again, charted later or compared with another machine's. Summaries and
ratios are always computed from the samples; the JSON file also writes them
out for a human reader, and ignores them when it is read back.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labsupport.bench import machine
from labsupport.bench.stats import Ratio, Summary, ratio, summarize
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table

FORMAT = "labsupport-bench/1"


@dataclass(frozen=True)
class PeerInfo:
    """Who was measured: ``series`` (who does it) in ``group`` (what is done)."""

    name: str
    series: str
    group: str = ""


def number(value: float) -> str:
    """Three significant figures, never in exponent notation: 0.576, 3.45, 12.3, 1234."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


@dataclass
class BenchResult:
    """Samples per peer (in ``unit``), round by round, and the facts to read them by.

    ``baseline`` names a series: each peer is compared with the baseline
    series of its own group (e.g. the lab's runner against unshare(1) for
    the same namespace).
    """

    name: str
    title: str
    unit: str
    peers: list[PeerInfo]
    samples: dict[str, list[float]]
    order: list[list[str]]
    baseline: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    seconds: float = 0.0
    names_accelerator: bool = False
    higher_is_better: bool = False  # a throughput (MiB/s), not a time or a size

    # -- reading -------------------------------------------------------------

    def summary(self, name: str) -> Summary:
        if name not in self.samples:
            raise LabError(f"No peer is called {name!r}; the peers are: {', '.join(self.samples)}.")
        return summarize(self.samples[name])

    def groups(self) -> list[str]:
        return list(dict.fromkeys(p.group for p in self.peers))

    def series(self) -> list[str]:
        return list(dict.fromkeys(p.series for p in self.peers))

    def find(self, group: str, series: str) -> PeerInfo | None:
        return next((p for p in self.peers if p.group == group and p.series == series), None)

    def ratio(self, name: str, against: str) -> Ratio:
        """How many times ``name`` costs ``against`` (any two peers); for a throughput
        (``higher_is_better``), how many times as much it delivers."""
        self.summary(against)
        return ratio(self.samples[name], self.samples[against])

    def against_baseline(self, peer: PeerInfo) -> Ratio | None:
        """``peer`` over the baseline series of its group; None for the baseline itself."""
        base = self.find(peer.group, self.baseline)
        if base is None or base.name == peer.name:
            return None
        return self.ratio(peer.name, base.name)

    # -- showing -------------------------------------------------------------

    def caption(self) -> str:
        """The machine and the method, one line each: what a slide must not leave out."""
        rounds = self.settings.get("rounds", len(self.order))
        rss = self.settings.get("runner_rss_mib")
        # A benchmark that is not run in rounds (a batch) says how it was measured instead.
        method = self.settings.get("method") or (
            f"{rounds} interleaved rounds (order shuffled per round, seed {self.settings.get('seed', '?')})")
        return (f"{machine.describe(self.machine, self.names_accelerator)}\n{method}"
                + (f", measuring process {rss} MiB RSS" if rss is not None else "")
                + f", {self.started[:16].replace('T', ' ')} UTC"
                + (f"\n{self.settings['note']}" if self.settings.get("note") else ""))

    def table(self) -> Table:
        """One row per peer: median, spread and the ratio against its group's baseline."""
        grouped = any(p.group for p in self.peers)
        headers = (["group"] if grouped else []) + [
            "peer", "n", f"median ({self.unit}{', higher is better' if self.higher_is_better else ''})",
            "p25-p75", "MAD", "min"]
        if self.baseline:
            headers.append(f"ratio to {self.baseline} (p25-p75)")
        table = Table(headers, caption=self.title)
        for peer in self.peers:
            s = self.summary(peer.name)
            row: list[Any] = ([peer.group] if grouped else []) + [
                peer.series, s.n, number(s.median), f"{number(s.p25)}-{number(s.p75)}",
                number(s.mad), number(s.min)]
            if self.baseline:
                r = self.against_baseline(peer)
                row.append("" if r is None else f"{r.value:.2f} ({r.p25:.2f}-{r.p75:.2f})")
            table.rows.append(row)
        return table

    def __str__(self) -> str:
        return f"{self.table()}\n{self.caption()}"

    def _repr_html_(self) -> str:
        caption = html.escape(self.caption()).replace("\n", "<br>")
        return f'{self.table()._repr_html_()}<p style="font-size:smaller">{caption}</p>'

    # -- saving --------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = FORMAT
        data["summary"] = {p.name: asdict(self.summary(p.name)) for p in self.peers}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: str | os.PathLike) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_json() + "\n")
        return target

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchResult":
        if data.get("format") != FORMAT:
            raise LabError(f"This is not a lab benchmark result (format {data.get('format')!r}, "
                           f"expected {FORMAT!r}).")
        fields = {k: v for k, v in data.items() if k not in ("format", "summary")}
        fields["peers"] = [PeerInfo(**p) for p in data["peers"]]
        return cls(**fields)

    @classmethod
    def from_json(cls, text: str) -> "BenchResult":
        try:
            return cls.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as err:
            raise LabError(f"This benchmark result cannot be read ({err}): save it again.") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BenchResult":
        try:
            return cls.from_json(Path(path).read_text())
        except OSError as err:
            raise LabError(f"Cannot read the result {path} ({err.strerror}).") from None
