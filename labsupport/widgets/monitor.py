"""A live monitor of one cgroup: memory, CPU and process count, charted while a workload runs.

``top`` for one group: a thread samples the group's cgroup files (what the
kernel charges to it) and psutil (what its processes hold) every
``every`` seconds and redraws a three-panel chart in an image widget. A stop
button ends the watch - and, if asked, the workload - and a slider sets the
group's CPU quota live, so the CPU panel answers the knob within a second.

The thread only reads and writes cgroup files and widget values, which is
safe beside a Jupyter kernel's own threads; no namespace work happens here.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import psutil

from labsupport.cgroups.api import CGroup
from labsupport.cgroups.experiments import drawable, png
from labsupport.kernel.errors import LabError

if TYPE_CHECKING:
    import ipywidgets
    from matplotlib.figure import Figure

MiB = 1 << 20


@dataclass(frozen=True)
class Sample:
    """One look at the group."""

    seconds: float
    memory_mib: float      # charged by the kernel (memory.usage_in_bytes / memory.current)
    pss_mib: float         # the sum of its processes' PSS, as psutil reads /proc
    cpu_percent: float     # of one core, from the group's CPU time over the last interval
    pids: int              # running processes in the group (zombies left out)
    quota_percent: Optional[float]


def _pss(pids: list[int]) -> int:
    """The processes' proportional set size: each page they map, split between everyone
    mapping it. RSS would count a page shared by ten forks ten times; USS not at all."""
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except psutil.Error:
            pass  # it ended between the listing and the look
    return total


class GroupMonitor:
    """Watch ``group`` until stopped, until ``seconds`` pass, or until its workload ends."""

    def __init__(self, group: CGroup, every: float = 0.5, seconds: float = 60.0,
                 on_stop: Optional[Callable[[], None]] = None) -> None:
        self.group = group
        self.every = every
        self.seconds = seconds
        self.on_stop = on_stop
        self.samples: list[Sample] = []
        self.quota: Optional[float] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._widgets: dict[str, "ipywidgets.Widget"] = {}

    # -- the view -------------------------------------------------------------
    def show(self) -> "ipywidgets.Widget":
        """Build the widget and start watching; display the returned box."""
        import ipywidgets as widgets

        # The first drawing loads matplotlib and its fonts (a second or two): do it
        # here, so the watch thread's redraws are quick from its first sample on.
        image = widgets.Image(value=png(self.chart(), dpi=80), format="png",
                              layout=widgets.Layout(width="760px"))
        status = widgets.HTML("starting ...")
        stop = widgets.Button(description="Stop", button_style="danger", icon="stop")
        stop.on_click(lambda _button: self.stop())
        controls: list[widgets.Widget] = [stop]
        if "cpu" in self.group.homes:
            # % of ONE core, as the CPU panel counts; the top of the scale (every core) is no quota.
            quota = widgets.IntSlider(value=self.all_cores, min=5, max=self.all_cores, step=5,
                                      description=f"CPU quota, % of one core ({self.all_cores} = none)",
                                      continuous_update=False, style={"description_width": "initial"})
            quota.observe(lambda change: self.set_quota(change["new"]), names="value")
            controls.append(quota)
        self._widgets = {"image": image, "status": status, "stop": stop}
        self._thread = threading.Thread(target=self._watch, name="lab-cgroup-monitor", daemon=True)
        self._thread.start()
        return widgets.VBox([widgets.HBox(controls), status, image])

    @property
    def all_cores(self) -> int:
        """Every core of this machine, in % of one core: the most a group can use at all."""
        return 100 * (os.cpu_count() or 1)

    def set_quota(self, percent: float) -> None:
        """The slider's action: the top of the scale lifts the quota, anything lower caps the group
        (150 lets it use one and a half cores)."""
        share = None if percent >= self.all_cores else f"{percent}%"
        try:
            self.group.limit_cpu(share)
            self.quota = None if share is None else percent
        except LabError as err:
            self._show_status(f"quota not set: {err}")

    def _show_status(self, text: str) -> None:
        if "status" in self._widgets:
            self._widgets["status"].value = text  # type: ignore[attr-defined]

    # -- the watch ------------------------------------------------------------
    def _sample(self, start: float, last: tuple[float, float]) -> tuple[Sample, tuple[float, float]]:
        usage = self.group.usage()
        pids = self.group.running()
        now = time.monotonic()
        cpu = usage.cpu_seconds or 0.0
        percent = 100 * (cpu - last[1]) / max(now - last[0], 1e-6) if last[0] else 0.0
        sample = Sample(now - start, (usage.memory_bytes or 0) / MiB, _pss(pids) / MiB,
                        max(percent, 0.0), len(pids), self.quota)
        return sample, (now, cpu)

    def _watch(self) -> None:
        start = time.monotonic()
        last = (0.0, 0.0)
        drawn = 0.0
        seen_busy = False
        ending = "stopped"
        try:
            while not self._stop.is_set() and time.monotonic() - start < self.seconds:
                sample, last = self._sample(start, last)
                self.samples.append(sample)
                seen_busy = seen_busy or sample.pids > 0
                if seen_busy and sample.pids == 0:
                    ending = "the workload ended"
                    break
                # Drawing takes a few hundred ms: sample on time, redraw about once a second.
                if time.monotonic() - drawn >= 1.0:
                    self._redraw(sample)
                    drawn = time.monotonic()
                self._stop.wait(self.every)
        except LabError as err:  # the group was removed under us
            ending = f"stopped ({err})"
        self._stop.set()
        if self.samples:
            self._redraw(self.samples[-1])
            self._show_status(f"{ending} after {time.monotonic() - start:.1f} s")

    def _redraw(self, sample: Sample) -> None:
        if "image" not in self._widgets:
            return
        self._widgets["image"].value = png(self.chart(), dpi=80)  # type: ignore[attr-defined]
        quota = "no quota" if sample.quota_percent is None else f"quota {sample.quota_percent:.0f}%"
        self._show_status(f"<tt>{sample.seconds:5.1f} s  memory {sample.memory_mib:6.1f} MiB  "
                          f"CPU {sample.cpu_percent:5.1f}% ({quota})  processes {sample.pids}</tt>")

    def stop(self) -> None:
        """End the watch (the button does this), and the workload if ``on_stop`` was given."""
        self._stop.set()
        if self.on_stop is not None:
            self.on_stop()

    def wait(self, timeout: Optional[float] = None) -> list[Sample]:
        """Block until the watch ends; returns every sample taken."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.samples

    # -- the chart ------------------------------------------------------------
    def chart(self) -> "Figure":
        """Memory, CPU and processes over time, as recorded so far."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9.5, 2.8), layout="constrained")
        mem, cpu, pids = fig.subplots(1, 3)
        t = [s.seconds for s in self.samples]
        mem.plot(t, [s.memory_mib for s in self.samples], label="charged (cgroup)")
        mem.plot(t, [s.pss_mib for s in self.samples], ls="--", label="its processes' PSS (psutil)")
        mem.set_title("memory, MiB", fontsize=9)
        mem.legend(fontsize=7, loc="upper left")
        cpu.plot(t, [s.cpu_percent for s in self.samples], color="C1")
        # The quota line only where a quota is set; without one the ceiling is every core.
        cpu.plot(t, [float("nan") if s.quota_percent is None else s.quota_percent for s in self.samples],
                 color="C3", ls=":", label="quota")
        cpu.axhline(self.all_cores, color="0.6", lw=0.8, ls="--", label=f"all {self.all_cores // 100} cores")
        cpu.set_ylim(0, max([self.all_cores * 1.1] + [s.cpu_percent * 1.1 for s in self.samples]))
        cpu.set_title("CPU, % of one core", fontsize=9)
        cpu.legend(fontsize=7, loc="upper left")
        pids.step(t, [s.pids for s in self.samples], where="post", color="C2")
        pids.set_ylim(0, max([s.pids for s in self.samples] + [1]) + 2)
        pids.set_title("processes", fontsize=9)
        for ax in (mem, cpu, pids):
            ax.set_xlabel("seconds", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.suptitle(f"lab group {self.group.name}", fontsize=9, x=0.01, ha="left")
        return drawable(fig)
