"""`ray start ...` as cluster/local-up.sh needs it: no Ray Client server; loopback kept loopback.

- `ray start --head` starts a Ray Client server (port 10001, `ray://`, arbitrary code for
  whoever connects) whenever grpc is importable, and has no flag to turn it off
  (`--ray-client-server-port 0` is refused). raysys submits jobs through the job API and
  never needs it: this wrapper tells `ray start` that the client's dependencies are
  missing, and it starts no client server.
- `ray start` "resolves" 127.0.0.1 (in `--node-ip-address` and in `--address`) to the
  machine's outward address, so that other machines could join, and Ray then listens on
  every interface. With RAYSYS_RAY_LOOPBACK=1 a loopback address stays what it is. (The
  head gets Ray's own switch for that, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which also
  covers its child processes; a joining node cannot use it: `ray start --address` then
  refuses to run.)

Everything else is `ray start` unchanged:

    python cluster/ray_start.py start --head ...
"""
from __future__ import annotations

import os
import sys

import ray.scripts.scripts as ray_cli
from ray._private import services


def _no_ray_client() -> ImportError:
    return ImportError("the Ray Client server is not started (cluster/ray_start.py)")


def _keep_host(host: str) -> str:
    return host


if __name__ == "__main__":
    ray_cli.get_ray_client_dependency_error = _no_ray_client
    if os.environ.get("RAYSYS_RAY_LOOPBACK") == "1":
        services.resolve_ip_for_localhost = _keep_host
    sys.exit(ray_cli.cli(args=sys.argv[1:], prog_name="ray"))
