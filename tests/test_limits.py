"""Parsing what a learner types as a limit: pure functions, no kernel involved.

Device rules and the eBPF program built from them are pure too, so their
shape is checked here; tests/test_cgroups.py proves them on a kernel.
"""
from __future__ import annotations

import re

import pytest

from labsupport.cgroups import devices_bpf, limits
from labsupport.cgroups.devices import DevicePolicy, DeviceRule, parse_rule
from labsupport.kernel.errors import LabError


@pytest.mark.parametrize("text, size", [
    ("512M", 512 << 20), ("512m", 512 << 20), ("512MiB", 512 << 20), ("512MB", 512 << 20),
    ("1.5G", 3 << 29), ("64k", 64 << 10), ("4096", 4096), (4096, 4096), (" 2 G ", 2 << 30),
])
def test_sizes_are_binary_as_in_docker(text: object, size: int) -> None:
    assert limits.parse_size(text) == size


@pytest.mark.parametrize("word", ["max", "MAX", "unlimited", None])
def test_no_limit_words(word: object) -> None:
    assert limits.parse_size(word) is None
    assert limits.parse_cpu(word) is None
    assert limits.parse_count(word) is None


@pytest.mark.parametrize("text, words", [
    ("-5M", "cannot be negative"),
    ("12 parsecs", "'12 parsecs' is not a size"),
    ("M512", "is not a size"),
    ("0", "would allow nothing"),
    ("", "is not a size"),
])
def test_bad_sizes_get_one_sentence(text: str, words: str) -> None:
    with pytest.raises(LabError) as caught:
        limits.parse_size(text)
    message = str(caught.value)
    assert words in message
    assert message.endswith(".") and "\n" not in message
    assert not re.search(r"\. [A-Z]", message)  # one sentence ("e.g. 512M" is fine)


def test_disk_rates() -> None:
    assert limits.parse_rate("10M") == limits.parse_rate("10MB/s") == 10 << 20
    assert limits.parse_rate("512kps") == 512 << 10
    assert limits.parse_rate(None) is None
    with pytest.raises(LabError, match="is not a disk rate"):
        limits.parse_rate("fast")


def test_link_rates_are_decimal_bits_as_in_tc() -> None:
    assert limits.parse_bitrate("8mbit") == 8_000_000
    assert limits.parse_bitrate("800kbit") == 800_000
    assert limits.parse_bitrate("1gbit") == 10 ** 9
    assert limits.parse_bitrate(100_000) == 100_000
    with pytest.raises(LabError, match="the unit must be bit, kbit, mbit or gbit"):
        limits.parse_bitrate("8MB")
    with pytest.raises(LabError, match="too slow"):
        limits.parse_bitrate("10bit")
    with pytest.raises(LabError, match="cannot be negative"):
        limits.parse_bitrate("-1mbit")


@pytest.mark.parametrize("text, cores", [("20%", 0.2), ("150%", 1.5), ("0.5", 0.5), (2, 2.0),
                                         ("1 core", 1.0)])
def test_cpu_shares(text: object, cores: float) -> None:
    assert limits.parse_cpu(text) == pytest.approx(cores)


@pytest.mark.parametrize("text, words", [("0.1%", "below 1%"), ("-20%", "cannot be negative"),
                                         ("20 parsecs", "is not a CPU share"), (True, "is not a CPU share")])
def test_bad_cpu_shares(text: object, words: str) -> None:
    with pytest.raises(LabError, match=words):
        limits.parse_cpu(text)


def test_weights_and_their_v1_shares() -> None:
    assert limits.parse_weight("300") == 300
    assert limits.weight_to_shares(100) == 1024  # both versions' defaults line up
    assert limits.weight_to_shares(300) == 3072
    assert limits.weight_to_shares(1) == 10
    for bad in (0, 10001, "heavy", "1.5"):
        with pytest.raises(LabError, match="CPU weight"):
            limits.parse_weight(bad)


def test_counts() -> None:
    assert limits.parse_count("20") == 20
    with pytest.raises(LabError, match="at least 1"):
        limits.parse_count(0, "a pids maximum")
    with pytest.raises(LabError, match="is not a pids maximum"):
        limits.parse_count("lots", "a pids maximum")


def test_human_size() -> None:
    assert limits.human_size(64 << 20) == "64.0 MiB"
    assert limits.human_size(None) == "no limit"


# -- device rules ----------------------------------------------------------------

def test_rules_parse_like_v1_lines() -> None:
    assert parse_rule("c 1:3 rwm") == DeviceRule("c", 1, 3, "rwm")
    assert parse_rule("b 7:* r") == DeviceRule("b", 7, None, "r")
    assert parse_rule("c 1:3 wr").access == "rw"  # normalised order
    assert parse_rule("a") is None
    assert parse_rule("/dev/null") == DeviceRule("c", 1, 3, "rwm")
    assert parse_rule("/dev/null r") == DeviceRule("c", 1, 3, "r")
    assert str(DeviceRule("c", None, None, "m")) == "c *:* m"


@pytest.mark.parametrize("spec, words", [("x 1:3", "is not a device rule"), ("c 1 rw", "is not a device rule"),
                                         ("/dev/nosuch", "no device node"), ("/etc/passwd", "not a device node"),
                                         ("/dev/null q", "not a device access")])
def test_bad_rules(spec: str, words: str) -> None:
    with pytest.raises(LabError, match=words):
        parse_rule(spec)


def test_policy_changes_follow_v1s_rules() -> None:
    policy = DevicePolicy()
    policy.deny(parse_rule("c 1:3 rw"))          # against the default: an exception
    policy.deny(parse_rule("c 1:3 m"))           # merged into it
    assert policy.exceptions == [DeviceRule("c", 1, 3, "rwm")]
    policy.allow(parse_rule("c 1:3 w"))          # with the default: takes 'w' out
    assert policy.exceptions == [DeviceRule("c", 1, 3, "rm")]
    policy.deny(None)                             # "a": deny all, forget exceptions
    assert (policy.default_allow, policy.exceptions) == (False, [])
    policy.allow(parse_rule("c 1:5 rw"))
    assert policy.describe() == ["default: deny every device", "allow c 1:5 rw"]


def test_the_device_program_has_one_block_per_exception() -> None:
    policy = DevicePolicy(default_allow=False, exceptions=[DeviceRule("c", 1, 3, "rw"),
                                                           DeviceRule("b", 7, None, "r")])
    program = devices_bpf.assemble(policy)
    raw = b"".join(insn.encode() for insn in program)
    assert len(raw) == 8 * len(program)
    assert program[-1].code == 0x95 and program[-2].imm == 0  # default: deny
    # Every jump lands inside the program, on the start of the next block or the default.
    for n, insn in enumerate(program):
        if insn.code in (0x15, 0x55):
            target = n + 1 + insn.off
            assert 0 < target < len(program)
            assert program[target - 1].code == 0x95  # just after a "return"
    listing = devices_bpf.listing(program)
    assert "ctx->major" in listing and listing.count("return r0") == 3
