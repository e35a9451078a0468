"""Ray started on a loaded machine, for the tests' and benchmark's clusters only.

`ray._private.node` gives the raylet a hard-coded 30 s to register with the GCS, and the raylet registers
only once its agents (Python processes importing aiohttp, grpc, opentelemetry, ...) have written their
ports: on 2 cores shared by several test runs that alone can take 40 s or more, and the node is torn
down. `patience()` stretches the clock of that one module (its waits only) by `factor`;
`python -m workbench.testing.ray_patient start ...` is `ray start` with that patience. The raylet's own
wait for its agents is `RAY_agent_register_timeout_ms` (set by `clusters.RayCluster`).
"""

from __future__ import annotations

import sys
import time
import types

FACTOR = 6


def patience(factor: float = FACTOR) -> None:
    import ray._private.node as node

    clock = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("__")})
    clock.monotonic = lambda: time.monotonic() / factor
    node.time = clock


if __name__ == "__main__":
    patience()
    from ray.scripts.scripts import main

    sys.argv[0] = "ray"
    sys.exit(main())
