"""A memory budget a learner turns: how many idle containers and VMs fit in it, from measured PSS.

The density benchmark measured each instance once; this widget only divides,
so turning the knob is instant and touches nothing on the host.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from labsupport.bench import density
from labsupport.bench.result import BenchResult

if TYPE_CHECKING:
    import ipywidgets


def budget_explorer(result: BenchResult, start_gib: int = 4, max_gib: int = 64) -> "ipywidgets.Widget":
    """A slider (GiB) over a table and a chart of how many instances fit."""
    import ipywidgets as widgets
    from IPython.display import display

    slider = widgets.IntSlider(value=start_gib, min=1, max=max_gib, step=1,
                               description="memory budget (GiB)", continuous_update=False,
                               style={"description_width": "initial"},
                               layout=widgets.Layout(width="520px"))
    out = widgets.Output()

    def draw(gib: int) -> None:
        with out:
            out.clear_output(wait=True)
            display(density.fit_table(result, gib))
            display(density.fit_chart(result, gib))

    slider.observe(lambda change: draw(change["new"]), names="value")
    draw(start_gib)
    return widgets.VBox([slider, out])
