"""Is run storage reachable from every node? Refuse a node-local path on a multi-node cluster.

Ray Train writes checkpoints from the workers and reads them back on restore,
possibly on another node; the rank-0 worker logs metrics to MLflow from any
node. A plain local path (``/home/me/runs``) or a local sqlite tracking file is
then only on one machine: checkpoints go missing and resumes fail much later.

A location counts as shared when it is

- a URI (``s3://``, ``gs://``, ``hdfs://``, ...; an ``http(s)://`` MLflow server),
- on a network filesystem (NFS, CIFS, Lustre, CephFS, ... as listed in /proc/mounts),
- declared shared with ``checkpoint.shared=true`` (a mount every node has), or
- the cluster has one node.

Nodes are counted from Ray's alive nodes; several raylets on one machine
(``cluster/local-up.sh``) still count as several nodes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Mapping, Optional

from raysys.errors import ConfigError

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "glusterfs", "beegfs",
    "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs", "fuse.glusterfs", "fuse.cephfs", "9p", "virtiofs",
})


def alive_nodes(nodes: Optional[Iterable[Mapping]] = None) -> List[Mapping]:
    """Ray's alive nodes (``ray.nodes()`` entries), or those of ``nodes`` when given (tests)."""
    if nodes is None:
        import ray

        nodes = ray.nodes()
    return [n for n in nodes if n.get("Alive", n.get("alive", False))]


def filesystem_type(path: str, mounts_file: str = "/proc/mounts") -> str:
    """The filesystem type of the mount holding ``path`` ('' when unknown)."""
    target = Path(path).resolve()
    best, best_type = "", ""
    try:
        lines = Path(mounts_file).read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        if (target == Path(mount_point) or Path(mount_point) in target.parents) and len(mount_point) > len(best):
            best, best_type = mount_point, parts[2]
    return best_type


def is_shared_location(location: str, declared_shared: bool, mounts_file: str = "/proc/mounts") -> bool:
    if "://" in location and not location.startswith("file://"):
        return True
    if declared_shared:
        return True
    local = location.removeprefix("file://")
    return filesystem_type(local, mounts_file) in NETWORK_FILESYSTEMS


def check_shared_storage(
    storage_path: str, tracking_uri: str, declared_shared: bool, *,
    nodes: Optional[Iterable[Mapping]] = None, mounts_file: str = "/proc/mounts",
) -> None:
    """ConfigError when a multi-node cluster would write run storage or MLflow runs to one node's disk."""
    count = len(alive_nodes(nodes))
    if count <= 1:
        return
    if not is_shared_location(storage_path, declared_shared, mounts_file):
        raise ConfigError(
            f"checkpoint.storage_path={storage_path} is a local path, but the cluster has {count} nodes: "
            "use a path every node mounts (NFS) or a URI (s3://bucket/runs), "
            "or set checkpoint.shared=true if this path is shared"
        )
    if tracking_uri.startswith("sqlite:///") and not is_shared_location(
        tracking_uri.removeprefix("sqlite:///"), declared_shared, mounts_file
    ):
        raise ConfigError(
            f"tracking.uri={tracking_uri} is a local sqlite file, but the cluster has {count} nodes: "
            "run an MLflow server (docs/cluster.md) and set tracking.uri=http://<host>:5000"
        )
