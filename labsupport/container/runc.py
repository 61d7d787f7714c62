"""runc, the runtime under Docker, run side by side with the lab's own.

Docker hands a container to containerd, which writes an OCI bundle - a root
directory and a config.json - and runs runc on it. Every field of that file
names something the notebooks did by hand; which step each field asks for is
in the lab's own plan of the container (labsupport.container.plan).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from labsupport import ownership
from labsupport.kernel import hoststate
from labsupport.kernel.errors import LabError
from labsupport.kernel.tables import Table
from labsupport.namespaces import rootfs
from labsupport.process import CommandResult, run_command


def available() -> bool:
    return shutil.which("runc") is not None


def _require_runc() -> str:
    path = shutil.which("runc")
    if path is None:
        raise LabError("runc is not installed: `apt-get install runc` (./lab up installs it).")
    return path


def new_bundle() -> Path:
    """A lab scratch directory with runc's default config.json (``runc spec``) and a busybox rootfs."""
    bundle = ownership.temp_dir("runc")
    bundle.chmod(0o755)  # a remapped root (uid 100000 on the host) must be able to reach its root
    result = run_command([_require_runc(), "spec", "--bundle", str(bundle)])
    if not result.ok:
        raise LabError(f"`runc spec` failed: {result.stderr.strip()}")
    shutil.copytree(rootfs.busybox_root(), bundle / "rootfs", symlinks=True)
    return bundle


def config(bundle: str | Path) -> dict[str, Any]:
    return json.loads((Path(bundle) / "config.json").read_text())


def lookup(spec: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path such as ``linux.namespaces``; None where runc's default has none."""
    value: Any = spec
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


#: The fields Appendix A shows side by side with the lab's own choices.
SHOWN = {
    "root": "notebook 01/05: a root directory, read-only",
    "hostname": "notebook 02: the UTS namespace's name",
    "linux.namespaces": "notebooks 02-06: one entry per namespace",
    "process.args": "notebook 04: PID 1",
    "process.capabilities.bounding": "notebook 07: what root inside may do",
    "process.noNewPrivileges": "notebook 10: no gaining privileges by exec",
    "linux.maskedPaths": "what a container may not read in /proc",
    "linux.resources": "notebook 08: limits (none by default)",
}


def _short(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict) and "type" in value[0]:
        return ", ".join(v["type"] for v in value)
    if isinstance(value, list):
        return ", ".join(map(str, value[:6])) + (f" ... ({len(value)})" if len(value) > 6 else "")
    return json.dumps(value)


def fields_table(bundle: str | Path) -> Table:
    spec = config(bundle)
    return Table(["config.json field", "runc spec's default", "where this lab does it"],
                 [(f, _short(lookup(spec, f)), why) for f, why in SHOWN.items()],
                 "runc's default container, field by field")


def _run_spec(bundle: Path, argv: list[str], cgroup: str, network: bool) -> dict[str, Any]:
    """The bundle's config for running ``argv``: no terminal, an absolute lab cgroup, and a
    network namespace (with only lo) if asked for.

    Without an absolute cgroupsPath runc makes its group next to its own -
    under the machine's group on this host - which the lab never touches.
    The learner's config.json itself is left as written.
    """
    spec = config(bundle)
    spec["process"].update(args=argv, terminal=False)
    spec["root"]["path"] = str((bundle / spec["root"]["path"]).resolve())
    spec["linux"]["cgroupsPath"] = f"/{ownership.PREFIX}/{cgroup}"
    if not network:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
    return spec


def bundle_for(bundle: str | Path, argv: list[str], network: bool = False) -> Path:
    """A lab scratch bundle that runs ``argv`` with ``bundle``'s config and root, for
    ``runc run``; remove it with :func:`remove_bundle`."""
    scratch = ownership.temp_dir("runcrun")
    spec = _run_spec(Path(bundle), argv, scratch.name, network)
    (scratch / "config.json").write_text(json.dumps(spec))
    return scratch


def lab_cgroup_parents_missing() -> list[Path]:
    """The lab's parent groups that do not exist yet: runc makes them and ``delete`` leaves them."""
    return [root / ownership.PREFIX for root in hoststate.cgroup_mounts()
            if not (root / ownership.PREFIX).exists()]


def run(bundle: str | Path, argv: list[str]) -> CommandResult:
    """``runc run`` the bundle's container with ``argv``; a lab-owned id, state dir and cgroup, all removed."""
    name = ownership.owned_name("runc")
    state = ownership.STATE_DIR / "runc"
    runc = _require_runc()
    parents = lab_cgroup_parents_missing()
    scratch = bundle_for(bundle, argv)
    try:
        return run_command([runc, "--root", str(state), "run", "--bundle", str(scratch), name], timeout=30)
    finally:
        run_command([runc, "--root", str(state), "delete", "--force", name], timeout=30)
        shutil.rmtree(state, ignore_errors=True)
        remove_bundle(scratch)
        remove_empty(parents)


def remove_empty(groups: list[Path]) -> None:
    """Remove the lab parent groups runc made for its group (runc delete leaves parents)."""
    for group in groups:
        try:
            group.rmdir()
        except OSError:
            pass  # not made by runc after all, or someone else's group is in it now


def why_it_failed(result: CommandResult) -> str:
    """One sentence for a failed run on this host."""
    text = (result.stderr or result.stdout).strip().splitlines()
    last = text[-1] if text else f"exit {result.returncode}"
    if "cgroup" in last.lower():
        return (f"runc could not set up its cgroups here ({last}): this host mixes cgroup v1 "
                "with a v2 mount, a layout runc handles only in part.")
    return f"runc stopped with: {last}"


def remove_bundle(bundle: str | Path) -> None:
    shutil.rmtree(bundle, ignore_errors=True)
