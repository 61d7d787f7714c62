"""The full Debian guest booted under QEMU: time to the SSH banner, QEMU's memory, a clean poweroff.

Unlike the microVM (a kernel and a tiny initramfs), this guest runs a whole
distribution: systemd starts udev, networkd and sshd from its own disk. The
boot is *direct* (QEMU loads the image's kernel and initrd; no firmware boot
loader), the disk is virtio-blk, and the only way in is QEMU's user-mode
network with one forwarded port on 127.0.0.1 - ``restrict=on`` keeps the guest
from reaching anything else, so no route leaves the machine::

    with fullvm.boot() as guest:
        print(guest.ssh_ready)           # Reached: 31.2 s (TCG): SSH-2.0-OpenSSH_9.2p1 ...
        print(guest.vm.memory())         # RSS / PSS / USS of QEMU, labelled
        print(guest.ssh("uname -r"))
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Optional

from labsupport.kernel.errors import LabError
from labsupport.vm import debian_image, platforms
from labsupport.vm.debian_image import DiskImage
from labsupport.vm.qemu import VM, Reached, VMConfig

SSH_TIMEOUT = 180.0
SSH_POLL_SECONDS = 0.25


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config(image: DiskImage, port: int, memory_mb: int = 1024, cpus: int = 2,
           accelerator: Optional[str] = None) -> VMConfig:
    """QEMU's settings for the full guest: PCI virtio disk and NIC, SSH forwarded to ``port``.

    The disk is opened read-only with ``snapshot=on``: every boot starts from
    the cached image and the guest's writes go to a temporary overlay that
    QEMU drops at exit - so boots stay comparable and the image stays clean.
    """
    devices = ("-drive", f"file={image.path},format={image.format},if=none,id=root,snapshot=on",
               "-device", "virtio-blk-pci,drive=root",
               "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
               "-device", "virtio-net-pci,netdev=net0")
    # x86: the PC machine, as an installed Debian expects; ARM: virt, which is all there is.
    machine = "pc" if platforms.of().arch == "x86_64" else None
    return VMConfig(kernel=image.kernel, initrd=image.initrd, machine=machine,
                    tcg_options="thread=multi,tb-size=128",
                    kernel_args=("root=/dev/vda", "rw"), memory_mb=memory_mb, cpus=cpus,
                    accelerator=accelerator, extra_args=devices)


def ssh_banner(port: int, timeout: float = 2.0) -> Optional[str]:
    """The server's first line if an SSH server answers on ``port``, else None.

    QEMU's forwarder accepts every connection at once, even before the guest
    listens, and closes it when the guest refuses: only the banner proves sshd.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            data = conn.recv(256)
    except OSError:
        return None
    line = data.split(b"\r\n")[0].decode(errors="replace")
    return line if line.startswith("SSH-") else None


@dataclass
class FullGuest:
    """A running full Debian guest."""

    vm: VM
    image: DiskImage
    port: int
    ssh_ready: Optional[Reached] = None

    def __enter__(self) -> "FullGuest":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def wait_for_ssh(self, timeout: float = SSH_TIMEOUT) -> Reached:
        """Poll 127.0.0.1:port until sshd's banner comes; seconds are counted from QEMU's start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.vm.is_running():
                raise LabError("QEMU exited before the guest's SSH server answered; "
                               + self.vm._describe_tail())
            banner = ssh_banner(self.port)
            if banner is not None:
                self.ssh_ready = Reached(banner, time.monotonic() - self.vm.started,
                                         self.vm.accelerator)
                return self.ssh_ready
            time.sleep(SSH_POLL_SECONDS)
        raise LabError(f"The guest's SSH server did not answer within {timeout:g} s "
                       f"({self.vm.accelerator.upper()}); " + self.vm._describe_tail())

    def ssh(self, command: str, timeout: float = 60) -> str:
        """Run ``command`` as root in the guest over SSH, with the image's own key."""
        argv = ["ssh", "-i", str(self.image.ssh_key), "-p", str(self.port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "root@127.0.0.1", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise LabError(f"`{command}` over SSH failed (exit {done.returncode}): "
                           f"{done.stderr.strip()[-300:]}")
        return done.stdout

    def shutdown(self, timeout: float = 60) -> float:
        """Power the guest off from inside (systemd stops its services); seconds taken.

        Falls back to ending QEMU if the guest cannot be asked or does not stop.
        """
        if not self.vm.is_running():
            self.vm.stop()
            return 0.0
        began = time.monotonic()
        try:
            if self.ssh_ready is not None:
                with contextlib.suppress(LabError):  # the guest may drop the link as it goes
                    self.ssh("systemctl poweroff", timeout=20)
                self.vm.wait(timeout)
        except (LabError, subprocess.TimeoutExpired):
            pass  # stop() below pulls the plug
        finally:
            self.vm.stop()
        return time.monotonic() - began


def boot(image: Optional[DiskImage] = None, memory_mb: int = 1024, cpus: int = 2,
         accelerator: Optional[str] = None, wait: bool = True,
         timeout: float = SSH_TIMEOUT) -> FullGuest:
    """Start the full guest (building the image first if needed) and, by default, wait for SSH."""
    image = image or debian_image.build()
    port = free_port()
    vm = VM.start(config(image, port, memory_mb, cpus, accelerator))
    guest = FullGuest(vm, image, port)
    if wait:
        try:
            guest.wait_for_ssh(timeout)
        except BaseException:
            vm.stop()
            raise
    return guest
