"""The benchmark core: exact statistics, truly interleaved rounds, results that survive
JSON, charts that are real image files, and the namespaces benchmark end to end.

Nothing here asserts that anything is fast: speed is a benchmark's finding, not a
test's. The tests check that the figures are computed, ordered and saved correctly.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labsupport import process
from labsupport.bench import BenchResult, Peer, benchmark, charts, namespaces, run_peers
from labsupport.bench.runner import schedule
from labsupport.bench.stats import percentile, ratio, summarize
from labsupport.kernel.errors import LabError

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- statistics ----------------------------------------------------------------

def test_summary_of_known_data_is_exact() -> None:
    s = summarize([4, 1, 100, 3, 2])
    assert (s.n, s.median, s.p25, s.p75, s.min, s.max) == (5, 3, 2, 4, 1, 100)
    assert s.mad == 1  # deviations 0, 1, 1, 2, 97
    assert s.iqr == 2


def test_quartiles_interpolate_between_ranks() -> None:
    s = summarize([1, 2, 3, 4])
    assert (s.median, s.p25, s.p75) == (2.5, 1.75, 3.25)
    assert percentile([7], 25) == 7 and summarize([7]).mad == 0


def test_ratio_of_medians_with_per_round_quartiles() -> None:
    r = ratio([2, 4, 6], [1, 2, 2])  # per-round ratios 2, 2, 3
    assert (r.value, r.p25, r.p75) == (2.0, 2.0, 2.5)


@pytest.mark.parametrize("call", [
    lambda: summarize([]),
    lambda: percentile([1, 2], 101),
    lambda: ratio([1, 2], [1, 2, 3]),
    lambda: ratio([1, 2], [0, 0]),
])
def test_impossible_statistics_are_refused_in_words(call) -> None:
    with pytest.raises(LabError):
        call()


# -- the runner ----------------------------------------------------------------

def _recording_peers(log: list[str], names: str = "abcd") -> list[Peer]:
    """Peers that note each call and return the number of calls before it."""
    def peer(name: str) -> Peer:
        def trial() -> float:
            log.append(name)
            return float(len(log) - 1)
        return Peer(name, trial)
    return [peer(n) for n in names]


def test_rounds_interleave_every_peer_in_a_fresh_order() -> None:
    log: list[str] = []
    result = run_peers(_recording_peers(log), 12, name="t", title="t", unit="calls",
                       warmup=2, seed=3, progress=False)
    assert log[:8] == list("abcd" * 2)  # warm-up, thrown away
    rounds = [log[i:i + 4] for i in range(8, len(log), 4)]
    assert len(rounds) == 12 and all(sorted(r) == list("abcd") for r in rounds)
    assert rounds == result.order
    assert len({tuple(r) for r in rounds}) > 1 and len({r[0] for r in rounds}) > 1
    for name in "abcd":  # the i-th sample of every peer was taken in round i
        positions = [8 + 4 * i + rounds[i].index(name) for i in range(12)]
        assert result.samples[name] == [float(p) for p in positions]


def test_the_schedule_is_repeatable_by_its_seed() -> None:
    assert schedule(5, 20, seed=1) == schedule(5, 20, seed=1)
    assert schedule(5, 20, seed=1) != schedule(5, 20, seed=2)


def test_an_untimed_trial_is_timed_in_the_unit_asked() -> None:
    result = run_peers([Peer("nap", lambda: time.sleep(0.003))], 3, name="t", title="t",
                       unit="ms", warmup=0, progress=False)
    assert all(3 <= v < 3000 for v in result.samples["nap"])  # ms, not ns or s


def test_bad_benchmarks_are_refused_before_running() -> None:
    ran: list[int] = []
    peer = Peer("x", lambda: ran.append(1))
    for kwargs in ({"rounds": 0}, {"rounds": 2, "baseline": "nobody"}):
        with pytest.raises(LabError):
            run_peers([peer], name="t", title="t", progress=False, **kwargs)
    with pytest.raises(LabError, match="unit of time"):
        run_peers([peer], 1, name="t", title="t", unit="MB", warmup=0, progress=False)
    with pytest.raises(LabError, match="share a name"):
        run_peers([peer, peer], 1, name="t", title="t", progress=False)
    assert ran == [1]  # only the trial that found the unit wrong


# -- results -------------------------------------------------------------------

@pytest.fixture(scope="module")
def grouped() -> BenchResult:
    """Two groups, two series, known values: 'fast' is the baseline."""
    values = {("a", "fast"): [1, 2, 2], ("a", "slow"): [2, 4, 6],
              ("b", "fast"): [10, 10, 10], ("b", "slow"): [30, 30, 40]}
    peers = []
    for (group, series), samples in values.items():
        feed = iter(samples)
        peers.append(Peer(series, lambda feed=feed: float(next(feed)), group))
    return run_peers(peers, 3, name="grouped", title="Known values", unit="ms",
                     baseline="fast", warmup=0, progress=False)


def test_ratios_compare_each_peer_with_its_own_groups_baseline(grouped: BenchResult) -> None:
    slow_a = grouped.find("a", "slow")
    assert grouped.against_baseline(slow_a).value == 2.0
    assert grouped.against_baseline(grouped.find("b", "slow")).value == 3.0
    assert grouped.against_baseline(grouped.find("a", "fast")) is None
    rows = {(row[0], row[1]): row for row in grouped.table().rows}
    assert rows[("a", "slow")][3] == "4" and rows[("a", "slow")][-1] == "2.00 (2.00-2.50)"


def test_a_result_names_its_machine(grouped: BenchResult) -> None:
    assert grouped.machine["kernel"] == platform.release()
    assert grouped.machine["cores"] == os.cpu_count()
    assert grouped.machine["accelerator"] in ("kvm", "tcg")
    html = grouped._repr_html_()
    assert "<table" in html and platform.release() in html
    assert platform.release() in str(grouped)


def test_json_round_trip_keeps_every_sample(grouped: BenchResult) -> None:
    again = BenchResult.from_json(grouped.to_json())
    assert again == grouped
    assert again.summary("a / slow") == grouped.summary("a / slow")
    with pytest.raises(LabError):
        BenchResult.from_json('{"format": "something else"}')


# -- charts --------------------------------------------------------------------

def test_charts_are_real_png_and_svg_files(grouped: BenchResult, tmp_path: Path) -> None:
    png, svg = charts.export(grouped, tmp_path)
    assert png.read_bytes().startswith(PNG_SIGNATURE) and png.stat().st_size > 10_000
    assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert charts.bar_chart(grouped)._repr_png_().startswith(PNG_SIGNATURE)  # shown w/o pyplot
    log_chart = charts.save(charts.bar_chart(grouped, log=True), tmp_path / "log.svg")
    assert "Known values" in log_chart.read_text()
    with pytest.raises(LabError, match="png or .svg"):
        charts.save(charts.bar_chart(grouped), tmp_path / "chart.jpg")


def test_an_ungrouped_result_draws_one_row_per_peer() -> None:
    peers = [Peer(name, lambda value=value: value) for name, value in (("one", 1.0), ("two", 2.0))]
    result = run_peers(peers, 2, name="t", title="t", unit="MB", warmup=0, progress=False)
    ax = charts.bar_chart(result).axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["one", "two"]
    assert [bar.get_width() for bar in ax.patches] == [1.0, 2.0]


# -- the namespaces benchmark --------------------------------------------------

@pytest.mark.parametrize("kind", namespaces.KINDS)
def test_both_launchers_create_the_namespace_they_are_named_for(kind: str) -> None:
    """The peers must do the same work: each kind is new inside, from both launchers."""
    host = os.readlink(f"/proc/self/ns/{kind}")
    show = ["readlink", f"/proc/self/ns/{kind}"]
    by_unshare = subprocess.run(namespaces.unshare_argv([kind], show), capture_output=True,
                                text=True, check=True).stdout.strip()
    by_lab = process.run_command(show, namespaces=[kind]).stdout.strip()
    assert by_unshare.startswith(f"{kind}:[") and by_lab.startswith(f"{kind}:[")
    assert host not in (by_unshare, by_lab)
    assert os.readlink(f"/proc/self/ns/{kind}") == host


def test_unshare_gets_each_flag_once() -> None:
    argv = namespaces.unshare_argv(namespaces.KINDS)
    assert argv[0] == "unshare" and argv[-1] == namespaces.PROGRAM
    assert argv.count("--fork") == 1 and len(argv) == len(set(argv))


def test_bench_namespaces_quick_via_the_cli(tmp_path: Path) -> None:
    saved, chart = tmp_path / "ns.json", tmp_path / "ns.svg"
    done = subprocess.run([sys.executable, "-m", "labsupport", "bench", "namespaces", "--quick",
                           "--json", str(saved), "--chart", str(chart)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = BenchResult.load(saved)
    expected = ["none", *namespaces.KINDS, namespaces.ALL]
    assert result.groups() == expected
    for group in expected:
        for series in (namespaces.LAB, namespaces.UNSHARE):
            peer = result.find(group, series)
            assert peer is not None, (group, series)
            s = result.summary(peer.name)
            assert s.n == namespaces.QUICK_ROUNDS and s.median > 0
        assert group in done.stdout
    assert namespaces.kind_table(result).column("namespace") == expected
    assert result.machine["kernel"] == platform.release()
    assert ET.parse(chart).getroot().tag.endswith("svg")


def test_cli_refuses_a_chart_format_before_measuring(tmp_path: Path) -> None:
    saved = tmp_path / "ns.json"
    done = subprocess.run([sys.executable, "-m", "labsupport", "bench", "namespaces",
                           "--json", str(saved), "--chart", str(tmp_path / "ns.jpg")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert not saved.exists()


def test_benchmarks_are_found_by_name() -> None:
    assert benchmark("namespaces") is namespaces
    with pytest.raises(LabError, match="namespaces"):
        benchmark("nothing")
