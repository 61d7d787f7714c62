"""The VM launcher's parts: the guest kernel, the initramfs, QEMU's command line, bad input.

Most tests here boot nothing: they read what the lab built (the cached
kernel, the initramfs archive - also through busybox's own cpio reader) and
the command line it would run. The few that boot a guest are marked slow.
"""
from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from labsupport import ownership
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.vm import guest_tests, initramfs, qemu
from labsupport.vm.guest_kernel import GuestKernel, fetch_kernel, unpacked_elf
from labsupport.vm.kvm import probe_accelerator
from labsupport.vm.qemu import VM, Share, VMConfig


@pytest.fixture(scope="module")
def kernel() -> GuestKernel:
    return fetch_kernel()


@pytest.fixture(scope="module")
def archive(kernel: GuestKernel) -> dict[str, initramfs.Entry]:
    data = initramfs.build(kernel).read_bytes()
    return {entry.name: entry for entry in initramfs.read_newc(data)}


@pytest.fixture
def scratch():
    path = ownership.temp_dir("vmtest")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- the guest kernel -------------------------------------------------------------

def test_the_kernel_is_unpacked_in_the_lab_cache_not_installed(kernel: GuestKernel) -> None:
    assert ownership.is_lab_path(kernel.root)
    assert kernel.vmlinuz.read_bytes()[0x202:0x206] == b"HdrS"  # a bzImage's setup header
    assert (kernel.modules / "modules.dep").stat().st_size > 0  # depmod ran in the cache
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", f"linux-image-{kernel.release}"],
                            capture_output=True, text=True).stdout
    if status != "install ok installed":  # (a Debian 12 host may run this very kernel itself)
        assert not Path(f"/boot/vmlinuz-{kernel.release}").exists()
        assert not Path(f"/lib/modules/{kernel.release}").exists()


def test_the_unpacked_elf_is_the_bzimage_payload(kernel: GuestKernel) -> None:
    assert kernel.boot_image == kernel.vmlinux  # Debian's kernel has CONFIG_PVH
    head = kernel.vmlinux.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[18] == 0x3E  # EM_X86_64
    assert unpacked_elf(b"not a kernel" * 100) is None


# -- the initramfs ----------------------------------------------------------------

def test_init_loads_each_module_after_the_ones_it_needs(kernel: GuestKernel,
                                                        archive: dict[str, initramfs.Entry]) -> None:
    init = archive["init"].data.decode()
    assert archive["init"].mode & 0o111 and init.startswith("#!/bin/sh")
    loaded = re.search(r"for module in (.*); do", init).group(1).split()
    names = [Path(m).name.removesuffix(".ko") for m in loaded]
    for before, after in [("virtio", "virtio_mmio"), ("virtio_ring", "9pnet_virtio"),
                          ("9pnet", "9pnet_virtio"), ("netfs", "9p"), ("fscache", "9p")]:
        assert names.index(before) < names.index(after)
    assert len(set(names)) == len(names)
    for module in loaded:  # each one is in the archive, as a plain ELF object
        assert archive[f"lib/modules/{module}"].data[:4] == b"\x7fELF"


def test_the_archive_holds_a_console_busybox_and_both_stages(archive: dict[str, initramfs.Entry]) -> None:
    console = archive["dev/console"]
    assert stat.S_ISCHR(console.mode) and console.rdev == (5, 1)
    assert archive["bin/busybox"].data == Path("/bin/busybox").read_bytes()
    assert stat.S_ISLNK(archive["bin/sh"].mode) and archive["bin/sh"].data == b"/bin/busybox"
    for marker in (initramfs.READY_MARKER, initramfs.EXIT_MARKER, initramfs.FAILED_MARKER):
        assert marker in archive["init"].data.decode() + archive["stage2"].data.decode()
    assert "@" not in archive["stage2"].data.decode().replace("$@", "")  # every placeholder filled


def test_busybox_cpio_reads_the_archive_the_same_way(kernel: GuestKernel,
                                                     archive: dict[str, initramfs.Entry]) -> None:
    listing = subprocess.run(["busybox", "cpio", "-t"], capture_output=True, check=True,
                             input=gzip.decompress(initramfs.build(kernel).read_bytes())).stdout
    assert listing.decode().split() == list(archive)


def test_the_archive_is_deterministic_and_cached(kernel: GuestKernel, scratch: Path) -> None:
    first = initramfs.build(kernel, cache=scratch)
    stamp = first.stat().st_mtime_ns
    assert initramfs.build(kernel, cache=scratch) == first and first.stat().st_mtime_ns == stamp
    assert first.read_bytes() == initramfs.build(kernel).read_bytes()
    other = initramfs.build(kernel, modules=("loop",), cache=scratch)
    assert other != first and not first.exists()  # new inputs, new archive; the old one goes
    assert "loop.ko" in [Path(e.name).name for e in initramfs.read_newc(other.read_bytes())]


def test_load_order_on_a_made_up_modules_dep() -> None:
    deps = initramfs.read_modules_dep("a/x.ko: a/y.ko.xz a/z.ko\na/y.ko.xz: a/z.ko\na/z.ko:\n")
    assert initramfs.load_order(deps, ["x", "y"]) == ["a/z.ko", "a/y.ko.xz", "a/x.ko"]
    with pytest.raises(LabError, match="no module 'nosuch'"):
        initramfs.load_order(deps, ["nosuch"])


def test_newc_round_trip_and_garbage() -> None:
    entries = [initramfs.directory("d"), initramfs.file("d/f", b"abc", 0o700),
               initramfs.symlink("l", "d/f"), initramfs.char_device("c", 1, 3)]
    assert list(initramfs.read_newc(initramfs.write_newc(entries))) == entries
    with pytest.raises(LabError, match="not a cpio archive"):
        list(initramfs.read_newc(b"garbage" * 20))


# -- QEMU's command line ------------------------------------------------------------

def test_tcg_command_line_follows_the_measured_recipe(kernel: GuestKernel, scratch: Path) -> None:
    config = initramfs.guest_config(kernel, run=Path("/mnt/s/run.sh"),
                                    shares=[Share("out", scratch, writable=True, guest_path=Path("/mnt/s"))])
    argv = config.argv("tcg", scratch / "console.log")
    joined = " ".join(argv)
    assert argv[:3] == [qemu.QEMU, "-M", "microvm"]
    assert "-accel tcg,thread=multi" in joined and "-no-reboot" in joined and "-nodefaults" in joined
    append = argv[argv.index("-append") + 1].split()
    assert {"console=ttyS0", "panic=-1", f"tsc_early_khz={qemu.host_tsc_khz()}",
            "lab.mount=out:/mnt/s", "lab.run=/mnt/s/run.sh"} <= set(append)
    fsdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-fsdev"]
    assert fsdevs[0].startswith("local,id=fs0,path=/,") and fsdevs[0].endswith(",readonly=on")
    assert f"path={scratch}," in fsdevs[1] and "readonly" not in fsdevs[1]
    assert "virtio-9p-device,fsdev=fs0,mount_tag=hostroot" in argv


def test_kvm_command_line_differs_only_in_the_accelerator(kernel: GuestKernel, scratch: Path) -> None:
    config = initramfs.guest_config(kernel)
    tcg, kvm = config.argv("tcg", scratch / "c"), config.argv("kvm", scratch / "c")
    assert kvm[kvm.index("-accel") + 1] == "kvm" and kvm[kvm.index("-cpu") + 1] == "host"
    assert "tsc_early_khz" not in " ".join(kvm)  # only TCG needs the TSC rate spelt out

    def common(argv: list[str]) -> list[str]:
        return [re.sub(r" tsc_early_khz=\d+", "", a) for a in argv
                if a not in ("tcg,thread=multi", "kvm", "-cpu", "host")]

    assert common(tcg) == common(kvm)


def test_commas_in_paths_are_doubled_for_qemu(scratch: Path) -> None:
    odd = scratch / "a,b"
    odd.mkdir()
    assert f"path={scratch}/a,,b," in Share("t", odd).qemu_args(0)[1]


def test_host_tsc_frequency_comes_from_the_kernel_log_or_cpuinfo() -> None:
    assert qemu.tsc_khz_from_kernel_log("[0.1] tsc: Detected 2596.134 MHz processor\n"
                                        "[1.2] tsc: Refined TSC clocksource calibration: "
                                        "2595.999 MHz\n") == 2595999
    assert qemu.tsc_khz_from_kernel_log("nothing here") is None
    assert qemu.tsc_khz_from_cpuinfo("processor\t: 0\ncpu MHz\t\t: 1999.5\n") == 1999500
    khz = qemu.host_tsc_khz()
    from_cpuinfo = qemu.tsc_khz_from_cpuinfo(Path("/proc/cpuinfo").read_text())
    assert 100_000 < khz < 10_000_000
    assert abs(khz - from_cpuinfo) / khz < 0.05


# -- bad input: one sentence each, nothing started -------------------------------------

def _sentence(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text.endswith((".", ")")) and "Traceback" not in text
    return text


def test_qemu_not_installed(kernel: GuestKernel) -> None:
    with pytest.raises(LabError) as err:
        VM.start(VMConfig(kernel=kernel.boot_image, qemu="qemu-system-lab-missing"))
    assert "not installed" in _sentence(err) and "qemu-system-x86" in str(err.value)


def test_kernel_missing(scratch: Path) -> None:
    with pytest.raises(LabError) as err:
        VM.start(VMConfig(kernel=scratch / "vmlinuz-none"))
    assert "does not exist" in _sentence(err) and "setup" in str(err.value)


@pytest.mark.parametrize("change, words", [
    ({"shares": (Share("bad tag!", Path("/")),)}, "share tag"),
    ({"kernel_args": ("a b",)}, "holds a space"),
    ({"accelerator": "xen"}, "Unknown accelerator"),
    ({"memory_mb": 8}, "at least 64 MiB"),
])
def test_bad_settings_are_refused_before_qemu_starts(kernel: GuestKernel, change: dict,
                                                     words: str) -> None:
    with pytest.raises(LabError) as err:
        VM.start(VMConfig(kernel=kernel.boot_image, **change))
    assert words in _sentence(err)


def test_a_missing_test_module_is_refused_before_booting() -> None:
    with pytest.raises(LabError) as err:
        guest_tests.run_pytest_in_guest("tests/test_no_such_module.py")
    assert "no test module" in _sentence(err)


def test_qemu_refusing_its_options_says_why(kernel: GuestKernel) -> None:
    with VM.start(VMConfig(kernel=kernel.boot_image, cpus=1000, accelerator="tcg")) as vm:
        with pytest.raises(LabError) as err:
            vm.wait_for("anything", timeout=30)
    assert re.search(r"QEMU exited \(code 1\) before .*CPUs", str(err.value))
    assert not vm.is_running() and not vm.console_path.exists()


# -- real boots ---------------------------------------------------------------------

@pytest.mark.slow
def test_a_guest_that_never_prints_the_marker_times_out_showing_its_console(kernel: GuestKernel) -> None:
    with VM.start(initramfs.guest_config(kernel)) as vm:
        vm.wait_for(initramfs.READY_MARKER, timeout=120)
        with pytest.raises(LabError) as err:
            vm.wait_for("NEVER-PRINTED", timeout=1)
        assert vm.is_running()  # a timeout reports; the with block ends QEMU
    text = str(err.value)
    assert text.startswith("The guest did not print 'NEVER-PRINTED' within 1 s (")
    assert "last console lines:" in text and initramfs.READY_MARKER in text
    assert hoststate.read_process(vm.pid) is None and not vm.console_path.parent.exists()


@pytest.mark.slow
def test_boot_to_marker_and_qemu_memory_are_labelled_with_the_accelerator(kernel: GuestKernel) -> None:
    with VM.start(initramfs.guest_config(kernel)) as vm:
        ready = vm.wait_for(initramfs.READY_MARKER, timeout=120)
        memory = vm.memory()
        console = vm.console()
        assert vm.pid in ownership.lab_processes()  # clean() would find it
    assert ready.accelerator == memory.accelerator == vm.accelerator == probe_accelerator().accelerator
    assert initramfs.READY_MARKER in ready.line and f"{initramfs.READY_MARKER} {kernel.release}" in console
    assert 0.5 < ready.seconds < 120
    assert 32 << 20 < memory.uss <= memory.pss <= memory.rss
    assert vm.accelerator.upper() in str(memory) and vm.accelerator.upper() in str(ready)
    assert hoststate.read_process(vm.pid) is None


@pytest.mark.slow
def test_the_guest_writes_only_to_its_share_and_its_own_tmpfs(kernel: GuestKernel) -> None:
    probe = f"/etc/lab-guest-probe-{os.getpid()}"
    script = "\n".join([
        f"echo inside > {probe} && cat {probe} > {guest_tests.GUEST_SHARE}/etc",
        f"echo work > /var/lib/labsupport/probe && cat /var/lib/labsupport/probe > {guest_tests.GUEST_SHARE}/work",
        f"uname -r > {guest_tests.GUEST_SHARE}/uname",
        f"hostname > {guest_tests.GUEST_SHARE}/hostname",
        "exit 7",
    ])
    run = guest_tests.run_in_guest(script)
    assert run.exit_code == 7
    assert run.file("etc") == "inside" and run.file("work") == "work"  # writable inside...
    assert not Path(probe).exists() and not Path("/var/lib/labsupport/probe").exists()  # ...not outside
    assert run.file("uname") == kernel.release and run.file("hostname") == "labguest"
    assert run.accelerator in ("kvm", "tcg")
