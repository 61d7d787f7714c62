"""Test-wide rules: run as root, and prove every test leaves the host as it found it."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

import labsupport
from labsupport import images, ownership
from labsupport.course.exercises import workdir
from labsupport.images import store
from labsupport.namespaces import chroot
from labsupport.process import residue

if os.geteuid() != 0:
    pytest.exit("The lab's tests create real namespaces, mounts and cgroups: run them as root "
                "(sudo ./lab test).", returncode=2)


@pytest.fixture(autouse=True)
def host_left_clean(request: pytest.FixtureRequest):
    """Snapshot the host before each test and fail the test if anything is left after it.

    What is left is then removed with the lab's own ``clean``, so one leaky
    test does not make every later test fail too.
    """
    before = residue.snapshot()
    yield
    leftover = residue.residue_since(before)
    if leftover:
        # Developers working side by side set this so one's failure does not clean the other's work.
        report = "skipped" if os.environ.get("LAB_TEST_NO_AUTOCLEAN") else labsupport.clean()
        pytest.fail("The test left this on the host:\n  " + "\n  ".join(leftover)
                    + f"\n(labsupport clean then said: {report})", pytrace=False)


@pytest.fixture()
def exercises(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch stand-in for /var/lib/labsupport/exercises, so a learner's work is never touched.

    Open to all (0755): notebook 07's exercises walk into it as a mapped, unprivileged user.
    """
    path = ownership.temp_dir("test-exercises")
    path.chmod(0o755)
    monkeypatch.setattr(workdir, "EXERCISES_DIR", path)
    yield path
    chroot.stop_processes_rooted_in(path)
    chroot.remove_scratch(path)


@pytest.fixture()
def name() -> str:
    """A fresh image name; whatever the test tagged with it is removed afterwards."""
    stem = f"labtest-{secrets.token_hex(3)}"
    yield stem
    for ref in list(store.refs()):
        if ref.startswith(stem):
            images.remove(ref)
