"""Vagrant on the lab's own libvirt: the comparison VM of notebook 13, booted, timed, removed.

Why the lab runs its own libvirtd instead of the host's: PID 1 here is not
systemd, so nobody else would start one; and a stock libvirtd writes all over
the host (/etc/libvirt, /var/lib/libvirt, cgroups under the caller's own
group). The lab's libvirtd runs in a private mount namespace where libvirt's
five directories are bind mounts of lab directories, in a lab cgroup that
the QEMU processes it starts inherit, so ``ownership.clean`` finds them all::

    from labsupport.vm import vagrant
    vagrant.ensure_box()                     # built offline, cached
    with vagrant.Libvirt.start():
        print(vagrant.up())                  # vagrant up compare --provider libvirt: 66.9 s (TCG)
        print(vagrant.ssh("sudo systemd-analyze").output)
        vagrant.destroy()

Nothing of the lab lands outside its directories except four empty mount
points (/var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and
/run/libvirt, made once, as libvirt's own package would; /etc/libvirt exists). The box stays cached under /var/cache/labsupport/vagrant.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from labsupport import ownership, process
from labsupport.cgroups import CGroup, open_group
from labsupport.cgroups import create as create_cgroup
from labsupport.kernel import syscalls
from labsupport.kernel.errors import LabError, require_root
from labsupport.vm import debian_image
from labsupport.vm.qemu import host_tsc_khz, usable_accelerator

REPO = Path(os.environ.get("LAB_REPO", Path(__file__).resolve().parents[2]))
VAGRANT_DIR = REPO / "vagrant"
BOX_NAME = "lab/debian12"
BOX_DIR_NAME = BOX_NAME.replace("/", "-VAGRANTSLASH-")   # how Vagrant and libvirt's pool spell it
MACHINE = "compare"

CACHE = ownership.CACHE_DIR / "vagrant"
BOX_FILE = CACHE / "lab-debian12.box"
VAGRANT_HOME = CACHE / "home"                    # Vagrant's own box cache
STATE = ownership.WORK_DIR / "vagrant"
DOTFILE = STATE / "dot"                          # Vagrant's per-project machine state
LIBVIRT_STATE = STATE / "libvirt"
RUN_DIR = ownership.STATE_DIR / "libvirt"
SOCKET = RUN_DIR / "libvirt-sock"
URI = f"qemu:///system?socket={SOCKET}"
CGROUP_NAME = "libvirt"

#: libvirt's directories (fixed when libvirt is built) -> where the lab keeps them.
LIBVIRT_DIRS = {
    Path("/etc/libvirt"): LIBVIRT_STATE / "etc",
    Path("/var/lib/libvirt"): LIBVIRT_STATE / "lib",
    Path("/var/log/libvirt"): LIBVIRT_STATE / "log",
    Path("/var/cache/libvirt"): LIBVIRT_STATE / "cache",
    Path("/run/libvirt"): RUN_DIR,
}

# QEMU runs as root with no cgroups of libvirt's making (the lab cgroup it
# inherits is enough) and no private /dev: nothing here has SELinux or
# AppArmor, and stdio_handler "file" leaves virtlogd out altogether.
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
LIBVIRTD_CONF = """\
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


# -- the daemon ---------------------------------------------------------------

#: libvirt insists that its build-time QEMU user exists, even when qemu.conf
#: says "root"; its package would add it to the host. The lab's libvirtd sees
#: copies of /etc/passwd and /etc/group that have it, the host never does.
QEMU_ACCOUNT = {"passwd": "libvirt-qemu:x:64055:64055:libvirt:/var/lib/libvirt:/usr/sbin/nologin",
                "group": "libvirt-qemu:x:64055:"}


def _binds() -> dict[Path, Path]:
    """Path the daemon sees -> the lab's file or directory mounted there."""
    accounts = {Path("/etc") / name: LIBVIRT_STATE / name for name in QEMU_ACCOUNT}
    return {**LIBVIRT_DIRS, **accounts}


def _write_accounts() -> None:
    """Copies of the host's /etc/passwd and /etc/group with libvirt's QEMU user added."""
    for name, entry in QEMU_ACCOUNT.items():
        text = (Path("/etc") / name).read_text()
        if not any(line.startswith("libvirt-qemu:") for line in text.splitlines()):
            text = text.rstrip("\n") + "\n" + entry + "\n"
        (LIBVIRT_STATE / name).write_text(text)


def _write_config() -> None:
    for target, source in LIBVIRT_DIRS.items():
        source.mkdir(parents=True, exist_ok=True)
        target.mkdir(parents=True, exist_ok=True)   # an empty mount point, see the docstring
    etc = LIBVIRT_DIRS[Path("/etc/libvirt")]
    (etc / "qemu.conf").write_text(QEMU_CONF)
    (etc / "libvirtd.conf").write_text(LIBVIRTD_CONF)
    _write_accounts()


def _serve() -> None:
    """Runs in the child, in its own mount namespace: bind libvirt's directories, become libvirtd."""
    for target, source in _binds().items():
        syscalls.mount(source, target, None, syscalls.MS_BIND)
    log = os.open(LIBVIRT_DIRS[Path("/var/log/libvirt")] / "libvirtd.stderr",
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    syscalls.set_parent_death_signal(0)   # outlive a short-lived caller such as the CLI
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.execve("/usr/sbin/libvirtd", ["libvirtd", "--pid-file", "/run/libvirt/libvirtd.pid"],
              process.command_env())


@dataclass
class Libvirt:
    """The lab's running libvirtd: its PID and the cgroup that holds it and its QEMUs."""

    pid: int
    group: CGroup
    child: Optional[process.Child] = None   # set when this process started it

    @classmethod
    def running(cls) -> Optional["Libvirt"]:
        """The lab's libvirtd if one runs (started by this process or another)."""
        try:
            pid = int((RUN_DIR / "libvirtd.pid").read_text())
            group = open_group(CGROUP_NAME)
        except (OSError, ValueError, LabError):
            return None
        return cls(pid, group) if pid in group.running() else None

    @classmethod
    def start(cls, timeout: float = 30) -> "Libvirt":
        """Start libvirtd (or return the one running) and wait until it answers."""
        require_root("Starting libvirtd")
        if not Path("/usr/sbin/libvirtd").exists():
            raise LabError("libvirtd is not installed: run sudo ./lab install (it adds "
                           "libvirt-daemon and vagrant-libvirt).")
        found = cls.running()
        if found:
            return found
        _write_config()
        (RUN_DIR / "libvirtd.pid").unlink(missing_ok=True)
        try:
            group = open_group(CGROUP_NAME)
        except LabError:
            group = create_cgroup(CGROUP_NAME, controllers=["memory", "pids"])
        child = group.start_function(_serve, namespaces=["mnt"])
        daemon = cls(child.pid, group, child)
        deadline = time.monotonic() + timeout
        while not _answers():
            if child.pid not in group.running() or time.monotonic() > deadline:
                daemon.stop()
                raise LabError("libvirtd did not start: see "
                               f"{LIBVIRT_DIRS[Path('/var/log/libvirt')]}/libvirtd.stderr.")
            time.sleep(0.2)
        remove_domains()   # a fresh daemon: any domain is a leftover of one that was killed
        return daemon

    def stop(self, timeout: float = 15) -> None:
        """Remove every domain, end libvirtd by its PID, then whatever is left in its cgroup.

        libvirtd leaves running guests alone when it exits (by design: a
        daemon restart must not kill VMs), so the domains go first.
        """
        if _answers():
            remove_domains()
        shutil.rmtree(DOTFILE, ignore_errors=True)   # Vagrant's record of the machines just removed
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if self.child is not None:
            try:
                self.child.wait(timeout)   # collects it
            except LabError:
                pass  # it hung, and wait() killed it: the cgroup below takes the rest
        else:
            deadline = time.monotonic() + timeout
            while self.pid in self.group.running() and time.monotonic() < deadline:
                time.sleep(0.1)
        self.group.kill()
        self.group.remove()
        ownership.unregister_process(self.pid)

    def __enter__(self) -> "Libvirt":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def virsh(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True,
                          timeout=timeout, env=process.command_env())


def _answers() -> bool:
    return SOCKET.exists() and virsh("version", timeout=10).returncode == 0


def domains() -> list[str]:
    """Names of every domain the lab's libvirt knows, running or not."""
    listed = virsh("list", "--all", "--name")
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()]


def remove_domains() -> list[str]:
    """Destroy and undefine every domain, with the disks vagrant-libvirt made for them."""
    names = domains()
    for name in names:
        virsh("destroy", name)
        virsh("undefine", name, "--remove-all-storage", "--nvram")
    return names


# -- Vagrant ------------------------------------------------------------------

@dataclass(frozen=True)
class Timed:
    """One Vagrant command: how long it took and what it printed."""

    command: str
    seconds: float
    output: str

    def __str__(self) -> str:
        return f"{self.command}: {self.seconds:.1f} s"


def vagrant_env(dotfile: Path = DOTFILE) -> dict[str, str]:
    """What the Vagrantfile needs to use the lab's libvirt, box cache and accelerator."""
    env = dict(os.environ)
    env.update({
        "VAGRANT_HOME": str(VAGRANT_HOME),
        "VAGRANT_DOTFILE_PATH": str(dotfile),
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
        "LAB_LIBVIRT_URI": URI,
        "LAB_LIBVIRT_DRIVER": "kvm" if usable_accelerator() == "kvm" else "qemu",
        "LAB_KERNEL_ARGS": f"tsc_early_khz={host_tsc_khz()}",
        ownership.MARKER_ENV: "1",
    })
    return env


def vagrant(*args: str, timeout: float = 600, dotfile: Path = DOTFILE) -> Timed:
    """Run one Vagrant command in vagrant/ and time it; a failure becomes one LabError."""
    if shutil.which("vagrant") is None:
        raise LabError("Vagrant is not installed: run sudo ./lab install.")
    started = time.monotonic()
    try:
        done = subprocess.run(["vagrant", *args], cwd=VAGRANT_DIR, env=vagrant_env(dotfile),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"`vagrant {' '.join(args)}` took longer than {timeout:.0f} s: "
                       "run it by hand in vagrant/ to watch it.") from None
    took = time.monotonic() - started
    if done.returncode != 0:
        # Ruby prints a backtrace after the message: keep the message.
        said = [line for line in (done.stderr + done.stdout).splitlines()
                if line.strip() and not line.lstrip().startswith("from ")]
        raise LabError(f"`vagrant {' '.join(args)}` failed: " + " | ".join(said[-4:]))
    return Timed(f"vagrant {' '.join(args)}", took, done.stdout)


def validate() -> Timed:
    """Check the Vagrantfile alone: with no machine state, Vagrant asks no provider anything."""
    empty = ownership.temp_dir("vagrant-validate")
    try:
        return vagrant("validate", timeout=60, dotfile=empty)
    finally:
        shutil.rmtree(empty, ignore_errors=True)


def up(machine: str = MACHINE) -> Timed:
    """Boot the machine and wait until Vagrant can log in over SSH."""
    return vagrant("up", machine, "--provider", "libvirt")


def ssh(command: str, machine: str = MACHINE, timeout: float = 120) -> Timed:
    return vagrant("ssh", machine, "-c", command, timeout=timeout)


def destroy(machine: str = MACHINE) -> Timed:
    return vagrant("destroy", "-f", machine, timeout=120)


def cleanup() -> None:
    """Leave nothing running: domains, libvirtd and its QEMUs, Vagrant's machine state.

    The box (cached) and libvirt's copy of it in the lab's pool stay, so
    the next ``up`` is not a first one.
    """
    daemon = Libvirt.running()
    if daemon:
        daemon.stop()
    shutil.rmtree(DOTFILE, ignore_errors=True)


# -- the box ------------------------------------------------------------------

def insecure_public_key() -> Path:
    """Vagrant's well-known public key, shipped inside the vagrant package's gem."""
    listed = subprocess.run(["dpkg", "-L", "vagrant"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        if line.endswith("/keys/vagrant.pub"):
            return Path(line)
    raise LabError("Vagrant's public key (keys/vagrant.pub) is missing: run sudo ./lab install.")


def box_added() -> bool:
    return (VAGRANT_HOME / "boxes" / BOX_DIR_NAME).is_dir()


def ensure_box(rebuild: bool = False) -> Path:
    """Build the box if it is not cached yet, and add it to Vagrant's box list.

    ``rebuild`` packs the box again from the Debian image (itself cached by
    ``debian_image``: remove its ``vagrant-*`` directory to rebuild that too).
    """
    if rebuild or not BOX_FILE.exists():
        build_box()
        if Libvirt.running() is None:   # libvirt's copies of the old box: now orphans
            for old in (LIBVIRT_STATE / "lib" / "images").glob(f"{BOX_DIR_NAME}_*"):
                old.unlink()
    if rebuild or not box_added():
        vagrant("box", "add", "--force", "--name", BOX_NAME, str(BOX_FILE), timeout=300)
    return BOX_FILE


#: What the box adds to the lab's Debian image: the agent vagrant-libvirt asks
#: for the guest's address, and rsync for the `lab` machine's synced folder.
EXTRA_PACKAGES = ("qemu-guest-agent", "iproute2", "rsync")
LAB_NIC_MAC = "52:54:00:1a:b0:01"          # the same two as in vagrant/Vagrantfile
PLACEHOLDER_NIC_MAC = "52:54:00:1a:b0:0f"

BOX_VAGRANTFILE = """\
# Written by labsupport.vm.vagrant: boot the box's own kernel directly (the disk
# is one ext4 filesystem with no boot loader), from this box's directory.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    box = File.dirname(__FILE__)
    libvirt.kernel = File.join(box, "vmlinuz")
    libvirt.initrd = File.join(box, "initrd.img")
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 quiet #{ENV.fetch('LAB_KERNEL_ARGS', '')}".strip
    libvirt.disk_bus = "virtio"
  end
end
"""

# networkd takes the first file (by name) that matches a link: these two come
# before the image's catch-all DHCP file.
NETWORK_FILES = {
    "10-lab.network": f"[Match]\nMACAddress={LAB_NIC_MAC}\n\n[Network]\nDHCP=ipv4\n",
    # Only there to carry an address the guest agent can report for its MAC;
    # no gateway, so it leads nowhere.
    "20-placeholder.network": (f"[Match]\nMACAddress={PLACEHOLDER_NIC_MAC}\n\n[Network]\n"
                               "Address=10.0.9.15/24\nLinkLocalAddressing=no\n"),
}


def _make_vagrant_ready(root: Path) -> None:
    """What Vagrant expects of a box: user vagrant with Vagrant's public key, passwordless sudo."""
    debian_image.add_user(root, "vagrant", insecure_public_key().read_text(), sudo=True)
    for name, text in NETWORK_FILES.items():
        (root / "etc/systemd/network" / name).write_text(text)
    (root / "etc/resolv.conf").write_text("nameserver 10.0.3.3\n")   # QEMU's DNS on net 10.0.3.0/24


def build_box() -> Path:
    """Build the libvirt box offline from the lab's Debian image, packed as a .box.

    A .box is a plain tar: metadata.json names the provider and the disk
    format, box.img is the disk, and the box's own Vagrantfile adds what this
    box needs (here: boot its own kernel, shipped alongside, directly).
    """
    image = debian_image.build(extra_packages=EXTRA_PACKAGES, customize=_make_vagrant_ready,
                               variant="vagrant", show_progress=False)
    metadata = {"provider": "libvirt", "format": image.format,
                "virtual_size": image.virtual_size >> 30}
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = BOX_FILE.with_suffix(".partial")
    with tarfile.open(partial, "w") as box:
        for name, text in (("metadata.json", json.dumps(metadata)), ("Vagrantfile", BOX_VAGRANTFILE)):
            data = text.encode()
            entry = tarfile.TarInfo(name)
            entry.size, entry.mtime = len(data), int(time.time())
            box.addfile(entry, io.BytesIO(data))
        for name, path in (("box.img", image.path), ("vmlinuz", image.kernel),
                           ("initrd.img", image.initrd)):
            box.add(path, arcname=name)
    partial.rename(BOX_FILE)
    return BOX_FILE
