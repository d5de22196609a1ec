"""The local Ray of one command (raysys.train.session.ensure_ray) is closed to the network
and to the machine's other Rays, and a failed start is one line.

Each test starts Ray in a subprocess (the suite's own in-process Ray, tests/conftest.py,
is untouched): the child checks from inside what only it can see (its processes'
sockets, its token) and writes the findings to a JSON file; it never prints the token.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

# The child: start the local Ray the way every raysys command does, then look at it.
CHILD = textwrap.dedent(r'''
    import json, os, sys, time, urllib.error, urllib.request
    from pathlib import Path

    import ray  # imported before ensure_ray, as raysys's commands do
    import ray.train  # noqa: F401
    import psutil  # Ray's own copy (ray/thirdparty_files)

    from raysys.train.session import ensure_ray

    out, peer = Path(sys.argv[1]), (Path(sys.argv[2]) if len(sys.argv) > 2 else None)

    def wait_for(path, seconds=240):
        deadline = time.time() + seconds
        while not path.exists():
            if time.time() > deadline:
                raise SystemExit(f"timed out waiting for {path}")
            time.sleep(0.2)

    ensure_ray(min_cpus=1)
    found = {}
    from ray._raylet import AuthenticationMode, get_authentication_mode
    found["token_mode"] = get_authentication_mode() == AuthenticationMode.TOKEN

    # Every TCP socket listening in this process or any process of its Ray.
    procs = [psutil.Process()] + psutil.Process().children(recursive=True)
    listening = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [
            [proc.name(), c.laddr.ip, c.laddr.port] for c in conns if c.status == psutil.CONN_LISTEN
        ]
    found["listening"] = listening

    # The dashboard / job API without and with the token.
    api = os.environ.get("RAY_API_SERVER_ADDRESS") or f"http://{ray._private.worker.get_dashboard_url()}"
    token = os.environ.get("RAY_AUTH_TOKEN", "")
    try:
        urllib.request.urlopen(f"{api}/api/v0/nodes", timeout=30)
        found["http_without_token"] = 200
    except urllib.error.HTTPError as exc:
        found["http_without_token"] = exc.code
    request = urllib.request.Request(f"{api}/api/v0/nodes", headers={"Authorization": "Bearer " + token})
    found["http_with_token"] = urllib.request.urlopen(request, timeout=30).status

    # The GCS over plain gRPC (no Ray interceptor adds the token).
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    gcs = ray._private.worker.global_worker.node.gcs_address
    stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(grpc.insecure_channel(gcs))
    try:
        stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=30)
        found["grpc_without_token"] = "OK"
    except grpc.RpcError as exc:
        found["grpc_without_token"] = exc.code().name
    stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=30,
                      metadata=(("authorization", "Bearer " + token),))
    found["grpc_with_token"] = "OK"

    if peer is not None:  # both Rays up at once before either asks for its state
        Path(f"{out}.up").touch()
        wait_for(Path(f"{peer}.up"))

    # What Ray Train's PlacementGroupCleaner does in its actor: ask the state API
    # (no address given) about an actor of this Ray.
    @ray.remote(num_cpus=0)
    class Probe:
        def ping(self):
            return 1

    @ray.remote(num_cpus=0)
    def ask_state(actor_id):
        from ray.util.state import get_actor, list_nodes
        try:
            actor = get_actor(actor_id, timeout=30)
            return {"actor_state": actor.state if actor else None, "nodes": [n.node_id for n in list_nodes(timeout=30)]}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    probe = Probe.remote()
    ray.get(probe.ping.remote())
    found["own_node"] = ray.get_runtime_context().get_node_id()
    found["from_worker"] = ray.get(ask_state.remote(probe._actor_id.hex()))
    out.write_text(json.dumps(found))
    if peer is not None:
        Path(f"{out}.done").touch()
        wait_for(Path(f"{peer}.done"))
    ray.shutdown()
''')

TOKEN_LIKE = re.compile(r"\b[0-9a-f]{64}\b")


def _child_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS", "RAY_API_SERVER"))}
    return {**env, "PYTHONPATH": str(REPO), "RAY_DATA_DISABLE_PROGRESS_BARS": "1", **extra}


def _start_child(tmp_path: Path, name: str, peer: str | None = None) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    args = [sys.executable, str(script), str(tmp_path / f"{name}.json")]
    if peer:
        args.append(str(tmp_path / f"{peer}.json"))
    return subprocess.Popen(args, cwd=tmp_path, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, tmp_path: Path, name: str, timeout: float = 300) -> dict:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, f"{name} failed:\n{stderr[-3000:]}"
    for stream in (stdout, stderr):
        assert not TOKEN_LIKE.search(stream), "something printed a 64-hex-digit token"
    found = json.loads((tmp_path / f"{name}.json").read_text())
    found["stderr"] = stderr
    return found


def _assert_closed(found: dict) -> None:
    assert found["token_mode"] is True
    assert found["listening"], "no listening socket found: the check itself is broken"
    exposed = [s for s in found["listening"] if s[1] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert exposed == [], f"listening beyond loopback: {exposed}"
    names = {s[0] for s in found["listening"]}
    assert {"gcs_server", "raylet"} <= names, names
    assert found["http_without_token"] == 401
    assert found["http_with_token"] == 200
    assert found["grpc_without_token"] == "UNAUTHENTICATED"
    assert found["grpc_with_token"] == "OK"


def test_local_ray_listens_on_loopback_only_and_requires_its_token(tmp_path):
    found = _finish(_start_child(tmp_path, "one"), tmp_path, "one")
    _assert_closed(found)
    assert found["from_worker"] == {"actor_state": "ALIVE", "nodes": [found["own_node"]]}


@pytest.mark.slow
def test_two_local_rays_side_by_side_each_talk_only_to_their_own(tmp_path):
    """Two commands at once: each worker's state API answers about its own Ray, quietly
    (before: "Found multiple active Ray instances" from Ray Train's PlacementGroupCleaner)."""
    a = _start_child(tmp_path, "a", peer="b")
    b = _start_child(tmp_path, "b", peer="a")
    found_a, found_b = _finish(a, tmp_path, "a"), _finish(b, tmp_path, "b")
    for found in (found_a, found_b):
        _assert_closed(found)
        assert found["from_worker"] == {"actor_state": "ALIVE", "nodes": [found["own_node"]]}
        assert "multiple active Ray instances" not in found["stderr"]
    assert found_a["own_node"] != found_b["own_node"]


FAIL_CHILD = textwrap.dedent('''
    import sys
    from raysys.errors import RaysysError
    from raysys.train.session import ensure_ray
    try:
        ensure_ray()
    except RaysysError as exc:  # as raysys.cli.main prints it
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
''')


def test_a_local_ray_that_does_not_start_is_one_line(tmp_path):
    """The dashboard not up in time (here: a 0 s limit) -> one ClusterError line naming the logs."""
    script = tmp_path / "fail.py"
    script.write_text(FAIL_CHILD)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=_child_env(RAY_DASHBOARD_STARTUP_TIMEOUT_S="0"),
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error: the local Ray did not start: its dashboard did not start within 0 s")
    logs = re.search(r"Ray's logs: (\S+)$", lines[0]).group(1)
    assert Path(logs).parent.name.startswith("session_"), logs
    assert proc.stdout == ""
