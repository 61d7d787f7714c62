"""Test-wide rules: run as root, and prove every test leaves the host as it found it."""
from __future__ import annotations

import os

import pytest

from labsupport import hoststate, ownership

if os.geteuid() != 0:
    pytest.exit("The lab's tests create real namespaces, mounts and cgroups: run them as root "
                "(sudo ./lab test).", returncode=2)


@pytest.fixture(autouse=True)
def host_left_clean(request: pytest.FixtureRequest):
    """Snapshot the host before each test and fail the test if anything is left after it.

    What is left is then removed with the lab's own ``clean``, so one leaky
    test does not make every later test fail too.
    """
    before = hoststate.snapshot()
    yield
    leftover = hoststate.residue_since(before)
    if leftover:
        # Developers working side by side set this so one's failure does not clean the other's work.
        report = "skipped" if os.environ.get("LAB_TEST_NO_AUTOCLEAN") else ownership.clean()
        pytest.fail("The test left this on the host:\n  " + "\n  ".join(leftover)
                    + f"\n(labsupport clean then said: {report})", pytrace=False)
