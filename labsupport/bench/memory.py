"""What an idle instance costs the host: memory (PSS and RSS) and disk, container vs VMs.

The seed says a VM cannot hand its idle resources back (유휴자원을 사용할 수
없다) and a container needs no guest OS (게스트os ㄴㄴ). Here that is
measured: each round starts one idle instance of each kind (in a shuffled
order), lets it settle, reads the memory of all its processes, and removes
it. The groups:

* idle PSS - the fair share of memory, what adds up across many instances;
* idle RSS - every page touched, shared ones counted again per instance;
* on disk - what must be stored to start one (image layers vs kernel,
  initramfs and disk image).

The full Debian VM (systemd, sshd; about 25 s to boot under TCG) is left
out in quick mode.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

from labsupport.bench import instances
from labsupport.bench.instances import Memory
from labsupport.bench.result import BenchResult, PeerInfo
from labsupport.bench.runner import Peer, run_peers

ROUNDS, QUICK_ROUNDS = 3, 1
PSS, RSS, DISK = "idle PSS", "idle RSS", "on disk"
CONTAINER, SHIM = "lab container (busybox sleep)", "lab container + its shim"
MICROVM, FULL = "microVM (idle at its shell)", "full Debian VM (idle after SSH)"


class Companions:
    """Figures a trial reads besides the one it returns (its RSS, its shim), kept per peer."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], list[float]] = {}

    def note(self, group: str, series: str, value: float) -> None:
        self.seen.setdefault((group, series), []).append(round(value, 2))

    def add_to(self, result: BenchResult, after: dict[str, str]) -> None:
        """Append each companion as a peer of ``result``: its last ``rounds`` figures
        (warm-up trials come first), placed in each round right after the peer that read it."""
        rounds = len(result.order)
        for (group, series), values in self.seen.items():
            peer = PeerInfo(f"{group} / {series}", series, group)
            result.peers.append(peer)
            result.samples[peer.name] = values[-rounds:]
            for one_round in result.order:
                one_round.insert(one_round.index(after[peer.name]) + 1, peer.name)
        # A chart draws groups and series in the order of the peers.
        groups, series = [PSS, RSS, DISK], [CONTAINER, SHIM, MICROVM, FULL]
        result.peers.sort(key=lambda p: (groups.index(p.group), series.index(p.series)))


def _memory_peer(series: str, measure: Callable[[], Memory], companions: Companions) -> Peer:
    def trial() -> float:
        memory = measure()
        companions.note(RSS, series, memory.rss)
        return memory.pss
    return Peer(series, trial, PSS)


def _container_peer(companions: Companions) -> Peer:
    def trial() -> float:
        own, shim = instances.idle_container_memory()
        companions.note(RSS, CONTAINER, own.rss)
        companions.note(PSS, SHIM, own.pss + shim.pss)
        companions.note(RSS, SHIM, own.rss + shim.rss)
        return own.pss
    return Peer(CONTAINER, trial, PSS)


def _disk_peer(series: str, size: Callable[[], Optional[float]]) -> Optional[Peer]:
    if size() is None:
        return None
    return Peer(series, size, DISK)


def run(rounds: Optional[int] = None, quick: bool = False, progress: Optional[bool] = None) -> BenchResult:
    quick = quick or bool(os.environ.get("LAB_FAST"))
    rounds = rounds or (QUICK_ROUNDS if quick else ROUNDS)
    companions = Companions()
    peers = [_container_peer(companions),
             _memory_peer(MICROVM, instances.idle_microvm_memory, companions)]
    if not quick:
        peers.append(_memory_peer(FULL, instances.idle_full_vm_memory, companions))
    disks = [_disk_peer(CONTAINER, instances.container_disk),
             _disk_peer(MICROVM, instances.microvm_disk),
             _disk_peer(FULL, instances.full_vm_disk)]
    peers += [p for p in disks if p is not None]
    result = run_peers(peers, rounds, name="memory", unit="MiB", baseline=CONTAINER,
                       title="What an idle instance costs: memory (PSS, RSS) and disk",
                       warmup=0 if quick else 1, progress=progress, names_accelerator=True)
    owner = {f"{RSS} / {CONTAINER}": f"{PSS} / {CONTAINER}", f"{PSS} / {SHIM}": f"{PSS} / {CONTAINER}",
             f"{RSS} / {SHIM}": f"{PSS} / {CONTAINER}", f"{RSS} / {MICROVM}": f"{PSS} / {MICROVM}",
             f"{RSS} / {FULL}": f"{PSS} / {FULL}"}
    companions.add_to(result, owner)
    result.settings.update(quick=quick, microvm_memory_mb=instances.MICROVM_MEMORY_MB,
                           settle_seconds={"container": instances.CONTAINER_SETTLE,
                                           "vm": instances.VM_SETTLE})
    return result


def report(result: BenchResult) -> str:
    return (f"{result}\nPSS splits shared pages among their users (it adds up across "
            "instances); RSS counts them again for every instance. A microVM's disk is only "
            "its kernel and initramfs: its root is the host's own, shared over 9p.")
