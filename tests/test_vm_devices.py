"""Paravirtual vs emulated devices: the guest's drivers, its markers, and a run that leaves nothing.

The figures themselves come from the benchmark (``devices.run``); the slow
test runs it once and checks its shape and that the host is left as found.
"""
from __future__ import annotations

import gzip
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from labsupport import ownership
from labsupport.bench import devices, latest
from labsupport.bench.result import BenchResult, PeerInfo
from labsupport.course.exercises import check, workdir
from labsupport.kernel.errors import LabError
from labsupport.vm import initramfs
from labsupport.vm.guest_kernel import fetch_kernel


def _lab_processes_naming(*words: str) -> list[str]:
    """Lab processes whose command line holds one of ``words`` (other helpers' VMs hold neither)."""
    found = []
    for pid in ownership.lab_processes():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
        if any(word in cmdline for word in words):
            found.append(f"{pid} {cmdline[:60]}")
    return found


def test_the_initramfs_holds_each_driver_after_what_it_needs() -> None:
    archive = devices.build_initramfs(fetch_kernel())
    members = {e.name: e for e in initramfs.read_newc(gzip.decompress(archive.read_bytes()))}
    modules = [n.split("/")[-1] for n in members if n.endswith(".ko")]
    for needed in ("virtio_pci.ko", "virtio_blk.ko", "virtio_net.ko", "libata.ko", "ata_piix.ko",
                   "scsi_mod.ko", "sd_mod.ko", "e1000.ko"):
        assert needed in modules, needed
    init = members["init"].data.decode()
    order = init.split("for module in ")[1].split(";")[0].split()
    assert order.index("libata.ko") < order.index("ata_piix.ko")
    assert order.index("virtio_ring.ko") < order.index("virtio_blk.ko")
    # busybox insmod cannot unpack a module: every one is stored as a plain ELF file.
    assert all(members[f"lib/modules/{m}"].data[:4] == b"\x7fELF" for m in modules)


def test_a_device_that_does_not_exist_is_refused_in_one_sentence() -> None:
    setup = devices.Bench(fetch_kernel(), Path("/nonexistent"), Path("/nonexistent"), 1, 1, 1)
    with pytest.raises(LabError, match="no device 'floppy'.*virtio-blk, IDE, virtio-net, e1000"):
        setup.config("floppy")


def test_the_guest_marker_becomes_mib_per_second() -> None:
    assert devices.parse_marker("LAB-DEVICE e1000 8388608 4.50 6.50") == pytest.approx(4.0)
    with pytest.raises(LabError, match="not a measurement"):
        devices.parse_marker("LAB-DEVICE-FAILED no block device /dev/sda")


def test_every_trial_boots_the_same_machine_and_only_the_workload_differs() -> None:
    setup = devices.Bench(fetch_kernel(), Path("/nonexistent"), Path("/scratch"), 8080, 4, 2)
    configs = {name: setup.config(name) for name in devices.DEVICES}
    assert len({c.extra_args for c in configs.values()}) == 1
    argv = " ".join(configs["IDE"].argv("tcg", Path("/console")))
    assert "-M pc" in argv and "if=ide" in argv and "if=virtio" in argv
    assert "-device e1000," in argv and "-device virtio-net-pci," in argv and "tap" not in argv
    assert "lab.mib=4" in argv and "lab.mib=2" in " ".join(configs["e1000"].kernel_args)


def _kept_result(disk: tuple[float, float], nic: tuple[float, float]) -> BenchResult:
    """A devices result with these (virtio, emulated) MiB/s, as a run would keep it."""
    peers, samples = [], {}
    for group, figures in ((devices.DISK_GROUP, disk), (devices.NIC_GROUP, nic)):
        for series, value in zip((devices.PARAVIRTUAL, devices.EMULATED), figures):
            peers.append(PeerInfo(f"{group} / {series}", series, group))
            samples[f"{group} / {series}"] = [value]
    return BenchResult("devices", "t", "MiB/s", peers, samples, [list(samples)],
                       baseline=devices.EMULATED, machine={"accelerator": "tcg"},
                       names_accelerator=True, higher_is_better=True)


def test_exercise_3_sets_the_prediction_beside_a_result_measured_after_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from labsupport.course import predict

    scratch = ownership.temp_dir("ex12devices")
    try:
        monkeypatch.setattr(latest, "RESULTS_DIR", scratch / "bench")
        monkeypatch.setattr(workdir, "EXERCISES_DIR", scratch / "exercises")
        assert "Predict first" in check("12", 3).message
        predict("12", 3, "virtio wins")
        assert "holds 0 number(s)" in check("12", 3).message
        predict("12", 3, "disk x3, nic x4")  # the first answer stays the one read
        assert "holds 0 number(s)" in check("12", 3).message
        (scratch / "exercises" / "12" / "predictions.json").unlink()
        predict("12", 3, "disk x3, nic x4")
        assert "keeps no devices benchmark" in check("12", 3).message
        old = _kept_result(disk=(120.0, 60.0), nic=(30.0, 3.0))  # x2 and x10
        old.started = "2020-01-01T00:00:00+00:00"
        latest.keep(old)
        assert "before you recorded your prediction" in check("12", 3).message
        new = _kept_result(disk=(120.0, 60.0), nic=(30.0, 3.0))
        time.sleep(1.1)  # the result's start has whole seconds: one later than the prediction
        new.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        latest.keep(new)
        verdict = check("12", 3)
        assert verdict.passed, verdict.message
        assert "disk x2.00 (you: x3)" in verdict.message and "nic x10.00 (you: x4)" in verdict.message
        assert "TCG" in verdict.message
    finally:
        shutil.rmtree(scratch)


@pytest.mark.slow
def test_a_quick_run_measures_all_four_devices_and_leaves_nothing() -> None:
    result = devices.run(quick=True, progress=False)
    assert result.names_accelerator and result.machine.get("accelerator") in ("kvm", "tcg")
    assert result.unit == "MiB/s" and result.higher_is_better
    assert len(result.samples) == 4
    assert all(len(s) == 1 and s[0] > 0 for s in result.samples.values()), result.samples
    report = devices.report(result)
    assert report.count("virtio delivers") == 2 and result.machine["accelerator"].upper() in report
    # Each trial's QEMU boots the devices initramfs; the server serves the scratch directory.
    assert not _lab_processes_naming(str(devices.DEVICES_CACHE), "lab-devices-")
    assert not list(ownership.TEMP_DIR.glob("lab-devices-*"))
