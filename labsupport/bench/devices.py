"""Paravirtual (virtio) against emulated devices, measured inside one guest machine.

The machinery - the guest's /init, the disk images, the payload server -
lives with the other VM code in ``labsupport.vm.devices``; this name is what
``python -m labsupport bench devices`` looks up.
"""
from __future__ import annotations

from ..vm.devices import report, run

__all__ = ["report", "run"]
