"""One spool directory per exposure replica on a shared data volume.

Replicas scaled out by docker-compose share one volume, and a spool directory belongs to one
process at a time (its `spool.lock`). With `ASSAY_SPOOL_SLOTS=N` a replica takes the first
free slot: slot 0 is the spool directory itself (where a single instance always spooled) and
slot n its subdirectory `replica-<n>`. A slot's lock is released when its process exits, so a
restarted or recreated replica takes a slot back and replays what the previous one left.
"""

from __future__ import annotations

from pathlib import Path

from services.exposure.spool import Spool, SpoolLocked


def slot_directory(root: Path, slot: int) -> Path:
    return root if slot == 0 else root / f"replica-{slot}"


def claim_spool(root: Path, slots: int, *, max_bytes: int, segment_bytes: int) -> Spool:
    """The spool of the first free slot; SpoolLocked when all `slots` are taken."""
    for slot in range(slots):
        try:
            return Spool(slot_directory(root, slot), max_bytes=max_bytes, segment_bytes=segment_bytes)
        except SpoolLocked:
            continue
    raise SpoolLocked(f"all {slots} spool slots under {root} are taken; raise ASSAY_SPOOL_SLOTS")
