"""The tuned microVM: each step changes one thing, and the tuned boot beats the untuned one.

The speed claim itself comes from the benchmark (``tuning.run``); the slow
test here runs it with two interleaved rounds and checks the goal's shape.
"""
from __future__ import annotations

import gzip

import pytest

from labsupport import ownership
from labsupport.bench import tuning
from labsupport.kernel import hoststate
from labsupport.vm import initramfs
from labsupport.vm.guest_kernel import fetch_kernel


@pytest.fixture(scope="module")
def steps():
    return tuning.steps()


def test_each_step_changes_exactly_one_thing(steps) -> None:
    labels = [label for label, _ in steps]
    assert labels[0] == tuning.UNTUNED and len(set(labels)) == len(labels)
    for (_, before), (label, after) in zip(steps, steps[1:]):
        fields = ("machine", "kernel", "initrd", "base_kernel_args", "cpus", "tcg_options")
        changed = [f for f in fields if getattr(before, f) != getattr(after, f)]
        assert len(changed) == 1, (label, changed)


def test_untuned_is_plain_pc_and_tuned_is_microvm(steps) -> None:
    untuned, tuned = steps[0][1], steps[-1][1]
    assert untuned.argv("tcg", untuned.kernel)[1:3] == ["-M", "pc"]
    assert tuned.argv("tcg", tuned.kernel)[1:3] == ["-M", "microvm"]
    assert "quiet" not in untuned.kernel_command_line("tcg")
    assert "quiet" in tuned.kernel_command_line("tcg")


def test_the_small_initramfs_holds_busybox_only_and_the_generic_one_drivers() -> None:
    kernel = fetch_kernel()
    small = tuning.build_initramfs(kernel, generic=False)
    generic = tuning.build_initramfs(kernel, generic=True)
    names = [e.name for e in initramfs.read_newc(gzip.decompress(small.read_bytes()))]
    assert "init" in names and not any(n.endswith(".ko") for n in names)
    big = [e.name for e in initramfs.read_newc(gzip.decompress(generic.read_bytes()))]
    assert sum(n.endswith(".ko") for n in big) > 50
    assert generic.stat().st_size > 5 * small.stat().st_size


@pytest.mark.slow
def test_tuned_boot_reaches_user_space_in_at_most_070_of_untuned() -> None:
    result = tuning.run(rounds=2, progress=False)
    assert result.names_accelerator and result.machine.get("accelerator")
    assert all(len(s) == 2 and min(s) > 0 for s in result.samples.values())
    assert tuning.tuned_ratio(result) <= 0.7, tuning.report(result)
    left = [p for p in ownership.lab_processes() if hoststate.read_process(p) is not None
            and hoststate.read_process(p).name.startswith("qemu-system")]
    assert not left, left
