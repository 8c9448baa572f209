"""Keep the garbage collector's full collections off the save path.

CPython's cyclic collector now and then runs a full (generation 2) collection, which walks
every tracked object while holding the GIL: in the daemon, about 48,000 objects (the
imported modules: psycopg, rich, yaml, structlog, watchdog...) and 10-17 ms on the
benchmark machine, two to three times that when its two cores are busy. It starts on
whichever thread allocates at that moment, so about one save in 75 waited for it
(bench/outside.py --trace: a 36 ms collection inside a 115 ms save).

After each full reconcile (at start, then the periodic safety reconcile) the writer
collects once and freezes what is left (``gc.freeze``): those objects are never walked
again, so the collections that come later only walk what was made since. Reference
counting still frees frozen objects as usual; only a reference cycle among frozen objects
could outlive its last reference, so each freeze first unfreezes and collects everything:
such a cycle lives until the next reconcile at most."""

from __future__ import annotations

import gc


def collect_and_freeze() -> int:
    """Collect everything (frozen objects included), then freeze what is left; returns the
    number of objects frozen. Run off the save path: it is one full collection."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
