"""Bad input, one table: each case's command line, its exit code and its exact one-line message.

Every case runs ``python -m raysys``'s ``main`` and then checks the bar every bad
input must meet: the exact one-line error on stderr, a non-zero exit, no MLflow run
left RUNNING, every file written before the command still there and unchanged, and
no half-written checkpoint. Cases with ``ray=False`` must fail before Ray starts
(``ensure_ray`` is replaced by a tripwire); ``ray=True`` cases share the session
Ray. ``docs/bad-input.md`` is generated from this table (``python -m
tests.test_bad_input > docs/bad-input.md``) and a test keeps the two in sync.

Placeholders in argv and messages: ``{tmp}`` the case's scratch folder, ``{shards}``
the data folder of the case (good Fashion-MNIST shards, or a damaged copy),
``{P}`` the tiny preset. ``…`` in a message matches any text (lists that grow as
presets are added, a loss value).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import pytest

P = "cifar-resnet/fashion-mnist-resnet20"
DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
TEST_SHARD = "test-00000-of-00001.parquet"
TINY = ("data.limit=256", "data.test_limit=128", "train.batch_size=64", "scaling.num_workers=1", "failure.max_failures=0")


# -- setups: each prepares the case's folder and returns the data folder -------------------
def good_shards(tmp: Path, shards: Path) -> Path:
    return shards


def _clone(tmp: Path, shards: Path, *, copy_test_shard: bool = False) -> Path:
    """The manifest copied, the shards hard-linked (the test shard copied when it will be damaged).

    Hard links, not symlinks: a shard that resolves outside its folder is refused.
    """
    out = tmp / "shards"
    out.mkdir()
    shutil.copy(shards / "manifest.json", out / "manifest.json")
    for shard in shards.glob("*.parquet"):
        if copy_test_shard and shard.name == TEST_SHARD:
            shutil.copy(shard, out / shard.name)
        else:
            try:
                os.link(shard, out / shard.name)
            except OSError:  # another filesystem
                shutil.copy(shard, out / shard.name)
    return out


def _edit_manifest(out: Path, edit: Callable[[dict], None]) -> None:
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))


def no_folder(tmp: Path, shards: Path) -> Path:
    return tmp / "nowhere"


def empty_folder(tmp: Path, shards: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def invalid_manifest(tmp: Path, shards: Path) -> Path:
    out = _clone(tmp, shards)
    (out / "manifest.json").write_text('{"format": "raysys-shards", ')
    return out


def missing_shard(tmp: Path, shards: Path) -> Path:
    out = _clone(tmp, shards)
    (out / TEST_SHARD).unlink()
    return out


def truncated_shard(tmp: Path, shards: Path) -> Path:
    out = _clone(tmp, shards, copy_test_shard=True)
    data = (out / TEST_SHARD).read_bytes()
    (out / TEST_SHARD).write_bytes(data[: len(data) // 2])
    return out


def manifest_row_count_differs(tmp: Path, shards: Path) -> Path:
    out = _clone(tmp, shards)
    def edit(manifest: dict) -> None:
        manifest["splits"]["test"]["count"] = 9999
        manifest["splits"]["test"]["shards"][0]["rows"] = 9999

    _edit_manifest(out, edit)
    return out


def manifest_size_differs(tmp: Path, shards: Path) -> Path:
    out = _clone(tmp, shards)
    _edit_manifest(out, lambda m: m["splits"]["test"]["shards"][0].update(bytes=123))
    return out


def flipped_bytes(tmp: Path, shards: Path) -> Path:
    """Same size, same footer, different image bytes: only the sha256 notices."""
    out = _clone(tmp, shards, copy_test_shard=True)
    with open(out / TEST_SHARD, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 64)
    return out


def broken_page_header(tmp: Path, shards: Path) -> Path:
    """A damaged data page header: the footer still reads, the rows do not."""
    out = _clone(tmp, shards, copy_test_shard=True)
    with open(out / TEST_SHARD, "r+b") as handle:
        handle.seek(4)
        handle.write(b"\xff" * 32)
    return out


def a_file(tmp: Path, shards: Path) -> Path:
    (tmp / "notes.txt").write_text("not shards\n")
    return tmp / "notes.txt"


def manifest_escapes(tmp: Path, shards: Path) -> Path:
    """A manifest naming a shard file outside its folder."""
    out = _clone(tmp, shards)
    _edit_manifest(out, lambda m: m["splits"]["test"]["shards"][0].update(file="../../../../etc/passwd"))
    return out


def shard_symlink_escapes(tmp: Path, shards: Path) -> Path:
    """A shard that is a symlink to a file outside the folder (here: the same shard elsewhere)."""
    out = _clone(tmp, shards)
    (out / TEST_SHARD).unlink()
    (out / TEST_SHARD).symlink_to(shards / TEST_SHARD)
    return out


def space_file(text: str) -> Callable[[Path, Path], Path]:
    def setup(tmp: Path, shards: Path) -> Path:
        (tmp / "space.yaml").write_text(text)
        return shards

    return setup


def trained_run(tmp: Path, shards: Path) -> Path:
    """A finished 1-epoch run named 'ckpt' in {tmp}/runs, {tmp}/mlflow.db."""
    from raysys.cli.main import main

    argv = ["train", P, f"data.path={shards}", *TINY, "train.epochs=1", "run_name=ckpt", *_locations(tmp)]
    assert main(argv) == 0
    return shards


def malicious_checkpoint(tmp: Path, shards: Path) -> Path:
    """The latest checkpoint of run 'ckpt' replaced by a pickle that would run code; the run marked FAILED, so it resumes."""
    from mlflow.tracking import MlflowClient

    trained_run(tmp, shards)
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    for run in client.search_runs([e.experiment_id for e in client.search_experiments()]):
        client.set_terminated(run.info.run_id, "FAILED")
    latest = sorted(p for p in (tmp / "runs").glob("ckpt-*/checkpoint_*") if p.is_dir())[-1]
    (latest / "state.pt").write_bytes(pickle.dumps(_Exploit()))
    return shards


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _locations(tmp: Path) -> Tuple[str, str]:
    return f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", f"checkpoint.storage_path={tmp / 'runs'}"


def two_nodes(monkeypatch) -> None:
    nodes = [{"NodeID": "a", "Alive": True}, {"NodeID": "b", "Alive": True}]
    monkeypatch.setattr("raysys.train.storage.alive_nodes", lambda nodes_=None: nodes)


def cpus(count: int):
    """The local machine seen as ``count`` CPUs, with no Ray running in this process (check_local_capacity)."""
    def patch(monkeypatch) -> None:
        monkeypatch.setattr("raysys.train.preflight._cpu_count", lambda: count)
        monkeypatch.setattr("raysys.train.preflight._ray_running", lambda: False)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)

    return patch


def no_reading(monkeypatch) -> None:
    """prepare must refuse its arguments before it even looks the dataset up (let alone reads it)."""
    def reached(*args, **kwargs):
        raise AssertionError("prepare looked up the dataset before checking its arguments")

    monkeypatch.setattr("pipelines.prepare.get_dataset", reached)


# Cases whose check the driver (raysys/train/run.py) does not call yet: xfail(strict) until it does.
PENDING_PLAN = "run.py must call preflight.check_plan(cfg, plan) after plan_data"
PENDING_CAPACITY = "run.py must call preflight.check_local_capacity(cfg) before ensure_ray (no RAY_ADDRESS)"


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    argv: Tuple[str, ...]
    exit_code: int
    message: str
    setup: Callable[[Path, Path], Path] = good_shards
    ray: bool = False
    slow: bool = False
    patch: Optional[Callable] = None
    locations: bool = True  # append tracking.uri/checkpoint.storage_path in {tmp}
    absent: Tuple[str, ...] = ()  # paths (placeholders allowed) that must not exist afterwards
    pending: str = ""  # the driver change this case waits for (xfail, strict, until it is made)


def train(*overrides: str) -> Tuple[str, ...]:
    return ("train", P, "data.path={shards}", *overrides)


CASES = [
    # -- config -----------------------------------------------------------------------------
    Case("unknown-preset", "unknown preset", ("train", "cifar-resnet/fashion-mnist-resnet21", "data.path={shards}"), 2,
         "unknown preset: 'cifar-resnet/fashion-mnist-resnet21' is not one of … (did you mean: cifar-resnet/fashion-mnist-resnet20…?)"),
    Case("unknown-key", "unknown config key", train("train.epochz=2"), 2,
         "unknown config key 'train.epochz' (did you mean: train.epochs…?)"),
    Case("unknown-section", "unknown config section", train("trian.epochs=2"), 2,
         "unknown config key 'trian.epochs'…"),
    Case("wrong-type-int", "wrong type (text for an int)", train("train.epochs=abc"), 2,
         "bad value 'abc' for 'train.epochs' in override 'train.epochs=abc': Value 'abc' of type 'str' could not be converted to Integer"),
    Case("wrong-type-float-for-int", "wrong type (float for an int)", train("seed=1.5"), 2,
         "bad value 1.5 for 'seed' in override 'seed=1.5': Value '1.5' of type 'float' could not be converted to Integer"),
    Case("unknown-optimizer", "unknown registry name", train("train.optimizer=adamm"), 2,
         "bad value for 'train.optimizer': 'adamm' is not one of … (did you mean: adam…?)"),
    Case("zero-workers", "zero workers", train("scaling.num_workers=0"), 2,
         "bad value for 'scaling.num_workers': 0 (must be >= 1)"),
    Case("zero-epochs", "zero epochs", train("train.epochs=0"), 2,
         "bad value for 'train.epochs': 0 (must be >= 1)"),
    Case("bad-use-gpu", "scaling.use_gpu not a choice", train("scaling.use_gpu=maybe"), 2,
         "bad value for 'scaling.use_gpu': 'maybe' is not one of ['auto', 'false', 'true']"),
    # -- data ---------------------------------------------------------------------------------
    Case("missing-dataset", "dataset folder missing", train(), 2,
         "no shards at {shards}: it does not exist; run `python -m raysys prepare fashion-mnist --source <dir> --out {shards}` first",
         setup=no_folder),
    Case("empty-dataset", "dataset folder empty (never prepared)", train(), 2,
         "no manifest.json in {shards} (never prepared, or interrupted); run `python -m raysys prepare fashion-mnist --source <dir> --out {shards}` first",
         setup=empty_folder),
    Case("invalid-manifest", "manifest.json cut short", train(), 2,
         "invalid manifest {shards}/manifest.json: …; run `python -m raysys prepare fashion-mnist --source <dir> --out {shards}` first",
         setup=invalid_manifest),
    Case("missing-shard", "a shard file deleted", train(), 2,
         "missing shard {shards}/" + TEST_SHARD + "; re-run prepare with --overwrite", setup=missing_shard),
    Case("truncated-shard", "corrupt Parquet shard (truncated)", train(), 2,
         "corrupt Parquet shard {shards}/" + TEST_SHARD + ": … (size …, manifest says …)", setup=truncated_shard),
    Case("manifest-rows", "shard and manifest disagree (rows)", train(), 2,
         "shard {shards}/" + TEST_SHARD + " holds 10000 rows, manifest says 9999", setup=manifest_row_count_differs),
    Case("manifest-size", "shard and manifest disagree (size)", train(), 2,
         "shard {shards}/" + TEST_SHARD + " changed since prepare: (size … bytes, manifest says 123)", setup=manifest_size_differs),
    Case("checksum", "shard bytes changed (data.verify_checksums=true)", train("data.verify_checksums=true"), 2,
         "checksum mismatch for shard {shards}/" + TEST_SHARD + ": sha256 …, manifest says …", setup=flipped_bytes),
    Case("unknown-split", "split the shards do not have", train("data.test_split=val"), 2,
         "dataset at {shards} has no split 'val'; it has ['test', 'train']"),
    Case("wrong-dataset", "shards of another dataset than data.name", train("data.name=cifar10"), 2,
         "shards at {shards} hold 1-channel images of dataset 'fashion-mnist', but data.name='cifar10' normalises 3 channels; "
         "set data.name=fashion-mnist or point data.path at cifar10 shards"),
    Case("corrupt-page", "corrupt Parquet page (footer intact), found by verification", train(), 2,
         "corrupt Parquet shard {shards}/" + TEST_SHARD + " (row group 0): …; re-run prepare with --overwrite",
         setup=broken_page_header),
    Case("data-path-is-a-file", "data.path is a file", train(), 2,
         "no shards at {shards}: it is a file, not a shards folder (the folder `prepare --out` wrote, "
         "holding manifest.json and the .parquet shards)", setup=a_file),
    Case("manifest-escapes", "manifest naming a file outside its folder", train(), 2,
         "{shards}/manifest.json: split 'test' names the shard file '../../../../etc/passwd', which is not a path "
         "inside the shards folder; a manifest may name only files in its own folder (re-run prepare with --overwrite)",
         setup=manifest_escapes),
    Case("shard-symlink-escapes", "shard that is a symlink out of its folder", train(), 2,
         "shard {shards}/" + TEST_SHARD + " resolves to …/" + TEST_SHARD + ", outside the shards folder {shards}; "
         "a manifest may name only files in its own folder (re-run prepare with --overwrite)",
         setup=shard_symlink_escapes),
    Case("negative-limit", "negative data.limit", train("data.limit=-5"), 2,
         "bad value for 'data.limit': -5 (must be >= 0; 0 = all rows)"),
    Case("negative-test-limit", "negative data.test_limit", train("data.test_limit=-1"), 2,
         "bad value for 'data.test_limit': -1 (must be >= 0; 0 = all rows)"),
    Case("limit-below-workers", "data.limit leaves a worker no batch", train("data.limit=1", "scaling.num_workers=2"), 2,
         "the train stream has 1 rows for scaling.num_workers=2: each worker needs at least one row for a batch; "
         "set data.limit >= 2 (0 = all rows), or fewer workers", patch=cpus(2)),
    Case("test-limit-below-workers", "data.test_limit leaves a worker nothing to evaluate",
         train("data.test_limit=1", "scaling.num_workers=2"), 2,
         "the test stream has 1 rows for scaling.num_workers=2: each worker needs at least one row to evaluate; "
         "set data.test_limit >= 2 (0 = all rows), or fewer workers", patch=cpus(2)),
    Case("batch-below-workers", "global batch smaller than the workers", train("train.batch_size=1", "scaling.num_workers=2"), 2,
         "bad value for 'train.batch_size': 1 is the global batch, split across scaling.num_workers=2 workers "
         "(must be >= 2: at least one row per worker)", patch=cpus(2)),
    Case("too-few-classes", "model.num_classes below the dataset's classes", train("model.num_classes=5"), 2,
         "bad value for 'model.num_classes': 5 is fewer than the 10 classes of the shards at {shards} (labels 0..9); "
         "set model.num_classes=0 to take it from the shards, or at least 10", patch=cpus(2)),
    Case("workers-exceed-machine", "num_workers beyond this machine (local Ray)", train("scaling.num_workers=1000"), 2,
         "scaling.num_workers=1000 x scaling.cpus_per_worker=1 needs 1000 CPUs; this machine has 2 (a local Ray keeps "
         "one slot more for Ray Data's reads): set scaling.num_workers <= 2, or submit to a cluster (RAY_ADDRESS)",
         patch=cpus(2)),
    Case("negative-lr", "negative learning rate", train("train.lr=-1"), 2,
         "bad value for 'train.lr': -1.0 (must be a number > 0)"),
    Case("scheduler-param-unused", "scheduler param the scheduler does not read", train("train.scheduler_params.warmup_epochs=5"), 2,
         "train.scheduler_params.warmup_epochs is not used by train.scheduler=onecycle; "
         "onecycle reads only ['div_factor', 'final_div_factor', 'pct_start']"),
    Case("scheduler-param-typo", "misspelt scheduler param", train("train.scheduler_params.pct_strt=0.2"), 2,
         "train.scheduler_params.pct_strt is not used by train.scheduler=onecycle (did you mean: pct_start?); "
         "onecycle reads only ['div_factor', 'final_div_factor', 'pct_start']"),
    Case("scheduler-param-value", "scheduler param out of range", train("train.scheduler_params.pct_start=1.5"), 2,
         "bad value for 'train.scheduler_params.pct_start': 1.5 (must be a number between 0 and 1 (exclusive))"),
    Case("storage-read-only", "read-only checkpoint.storage_path",
         train("checkpoint.storage_path=/sys/raysys-runs", "tracking.uri=sqlite:///{tmp}/mlflow.db"), 2,
         "bad value for 'checkpoint.storage_path': /sys/raysys-runs is not writable: cannot create a file in /sys "
         "(its nearest existing folder): …; give a folder you can write, or a URI (s3://bucket/runs)", locations=False),
    Case("storage-under-a-file", "checkpoint.storage_path under a file",
         train("checkpoint.storage_path={tmp}/notes.txt/runs", "tracking.uri=sqlite:///{tmp}/mlflow.db"), 2,
         "bad value for 'checkpoint.storage_path': {tmp}/notes.txt/runs cannot be a folder: {tmp}/notes.txt is a file; "
         "give a folder (it is created if missing) or a URI (s3://bucket/runs)",
         setup=lambda tmp, shards: (a_file(tmp, shards), shards)[1], locations=False),
    # -- tracking -----------------------------------------------------------------------------
    Case("tracking-scheme", "tracking.uri of a scheme MLflow has no store for",
         train("tracking.uri=ftp://alice:s3cret@example.org/mlflow", "checkpoint.storage_path={tmp}/runs"), 2,
         "bad value for 'tracking.uri': 'ftp://***@example.org/mlflow' has the scheme 'ftp://', which MLflow cannot track "
         "to; use empty (a local sqlite file ./mlflow.db), sqlite:///<file>, postgresql://, mysql://, mssql://, "
         "http(s)://<server>, a folder path or file:///<folder>, databricks[://<profile>], databricks-uc, uc", locations=False),
    Case("tracking-down", "tracking server down", train("tracking.uri=http://127.0.0.1:9", "checkpoint.storage_path={tmp}/runs"), 2,
         "MLflow tracking server http://127.0.0.1:9 is unreachable ([Errno 111] Connection refused); "
         "start it, or set tracking.uri to another server (empty = local sqlite file)", locations=False),
    Case("tracking-password-redacted", "tracking server down, password in the URI",
         train("tracking.uri=http://alice:s3cret@127.0.0.1:9", "checkpoint.storage_path={tmp}/runs"), 2,
         "MLflow tracking server http://***@127.0.0.1:9 is unreachable ([Errno 111] Connection refused); "
         "start it, or set tracking.uri to another server (empty = local sqlite file)", locations=False),
    # -- sweeps -------------------------------------------------------------------------------
    Case("space-missing", "tune space file missing", ("sweep", "{tmp}/nospace.yaml"), 2,
         "tune space {tmp}/nospace.yaml does not exist", locations=False),
    Case("space-names-nothing", "tune space naming no preset", ("sweep", "{tmp}/space.yaml"), 2,
         "space names no preset: give 'presets: [...]' or 'preset: <name>'", setup=space_file("seeds: [0, 1]\n"), locations=False),
    Case("space-empty-rows", "tune space with an empty row list", ("sweep", "{tmp}/space.yaml"), 2,
         "space field 'presets' must be a non-empty list", setup=space_file("presets: []\n"), locations=False),
    Case("space-unknown-field", "tune space with an unknown field", ("sweep", "{tmp}/space.yaml"), 2,
         "tune space {tmp}/space.yaml: unknown field 'seed' (did you mean: seeds…?)",
         setup=space_file(f"preset: {P}\nseed: [0]\n"), locations=False),
    Case("space-unknown-preset", "tune space row naming an unknown preset", ("sweep", "{tmp}/space.yaml"), 2,
         "…unknown preset: 'cifar-resnet/nope' is not one of …",
         setup=space_file("preset: cifar-resnet/nope\nseeds: [0]\n"), locations=False),
    Case("space-max-concurrent", "sweep max_concurrent below 0", ("sweep", "{tmp}/space.yaml", "max_concurrent=-1"), 2,
         "space field 'max_concurrent': -1 (must be an integer >= 0; 0 = as many trials as the cluster holds)",
         setup=space_file(f"preset: {P}\nseeds: [0]\n"), locations=False),
    Case("space-seeds-per-trial", "sweep seeds_per_trial below 1", ("sweep", "{tmp}/space.yaml", "seeds_per_trial=0"), 2,
         "space field 'seeds_per_trial': 0 (must be an integer >= 1;…",
         setup=space_file(f"preset: {P}\nseeds: [0]\n"), locations=False),
    Case("space-loguniform", "tune space loguniform over non-positive numbers", ("sweep", "{tmp}/space.yaml"), 2,
         "space random.train.lr: loguniform needs [low, high], two numbers with 0 < low < high, got [-1, 0]",
         setup=space_file(f"preset: {P}\nseeds: [0]\nrandom:\n  train.lr: {{loguniform: [-1, 0]}}\n"), locations=False),
    Case("space-row-bad-value", "tune space row with a value train refuses", ("sweep", "{tmp}/space.yaml"), 2,
         "tune space {tmp}/space.yaml, row 'fashion-mnist-resnet20': bad value for 'train.lr': -1.0 (must be a number > 0)",
         setup=space_file(f"preset: {P}\nseeds: [0]\noverrides: [train.lr=-1]\n"), locations=False),
    # -- report -------------------------------------------------------------------------------
    Case("report-unknown-sweep-run", "report --sweep-run naming no sweep of the space",
         ("report", "cifar-resnet-fashion-mnist", "--out", "{tmp}/report", "--sweep-run", "0123abcd",
          "tracking.uri=sqlite:///{tmp}/mlflow.db"), 2,
         "--sweep-run 0123abcd is not a sweep run of space 'cifar-resnet-fashion-mnist' in experiment 'cifar-resnet' "
         "(no such run); its sweep runs, newest first: none", absent=("{tmp}/report",), locations=False),
    # -- export-weights ----------------------------------------------------------------------------
    Case("export-unknown-run", "export-weights --run naming no run",
         ("export-weights", "stir/emoji", "tracking.uri=sqlite:///{tmp}/mlflow.db", "--run", "no-such-run", "--out", "{tmp}/x.pt"), 2,
         "--run 'no-such-run': no MLflow run with this id, nor a run of this name in experiment 'stir'…",
         absent=("{tmp}/x.pt",), locations=False),
    Case("export-original-shared-model", "export-weights --format original for a model of no family",
         ("export-weights", P, "--checkpoint", "{tmp}/none.pt", "--out", "{tmp}/x.pt", "--format", "original"), 2,
         "--format original: model.name=cifar_resnet20 (family none: a shared model) has no original format; "
         "families with one: antialiased, flexconv, mimoconv, stir", absent=("{tmp}/x.pt",), locations=False),
    # -- prepare --------------------------------------------------------------------------------
    Case("prepare-rows-per-shard", "prepare --rows-per-shard 0 (refused before reading the source)",
         ("prepare", "fashion-mnist", "--source", "{tmp}/source", "--out", "{tmp}/out", "--rows-per-shard", "0"), 2,
         "bad value for --rows-per-shard: 0 (must be >= 1; leave it out for shards of about 64 MiB)",
         patch=no_reading, absent=("{tmp}/out",), locations=False),
    # -- need Ray (the session cluster of 4 CPUs) -------------------------------------------
    Case("too-many-workers", "num_workers larger than the cluster", train("scaling.num_workers=8"), 2,
         "scaling.num_workers=8 x scaling.cpus_per_worker=1 needs 8 CPUs; the cluster has 4", ray=True),
    Case("local-storage-multinode", "node-local storage_path on a 2-node cluster", train(*TINY), 2,
         "checkpoint.storage_path={tmp}/runs is a local path, but the cluster has 2 nodes: use a path every node mounts (NFS) "
         "or a URI (s3://bucket/runs), or set checkpoint.shared=true if this path is shared", ray=True, patch=two_nodes),
    Case("nan-loss", "NaN loss", train(*TINY, "train.lr=1e30", "train.scheduler=constant", "run_name=nan"), 1,
         "training run 'nan' failed: non-finite loss (…) at epoch 1, batch …: lower train.lr or check the data", ray=True),
    Case("malicious-checkpoint", "malicious pickle as the checkpoint a resumed run loads (refused by weights_only)",
         train(*TINY, "train.epochs=1", "run_name=ckpt"), 1,
         "training run 'ckpt' failed: refusing to load checkpoint …/state.pt: it is not a torch.save file that "
         "weights-only loading accepts (its pickle stops at opcode …) (a raysys checkpoint holds only tensors and "
         "plain values: this file was not written by raysys, or was altered)",
         setup=malicious_checkpoint, ray=True, slow=True),
]


# -- running one case ----------------------------------------------------------------------
def render(text: str, tmp: Path, shards: Path) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{shards}", str(shards))


def argv_of(case: Case, tmp: Path, shards: Path):
    argv = [render(a, tmp, shards) for a in case.argv]
    if case.locations and argv[0] == "train":
        argv += _locations(tmp)
    return argv


def matches(message: str, expected: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, message) is not None


def snapshot(root: Path) -> Dict[str, str]:
    """sha256 of every file under ``root`` except the MLflow database (which a run updates)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and not path.name.startswith("mlflow.db"):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def running_runs(tmp: Path):
    if not (tmp / "mlflow.db").exists():
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return [r.info.run_name for r in client.search_runs(ids, "attributes.status = 'RUNNING'")]


def _params(cases):
    def marks(case):
        out = [pytest.mark.slow] if case.slow else []
        if case.pending:
            out.append(pytest.mark.xfail(strict=True, reason=f"pending: {case.pending}"))
        return out

    return [pytest.param(c, id=c.id, marks=marks(c)) for c in cases]


@pytest.fixture
def ray_tripwire(monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("the case reached ensure_ray: it must fail before Ray starts")

    monkeypatch.setattr("raysys.driver.launch.ensure_ray", reached)
    monkeypatch.setattr("raysys.tune.sweep.ensure_ray", reached)


def without_phases(err: str) -> str:
    """stderr less the phase lines (``raysys [  0.1s] ...``, docs/console.md) that precede any error."""
    return "\n".join(line for line in err.splitlines() if not line.startswith("raysys ["))


def run_case(case: Case, tmp: Path, shards: Path, capfd, monkeypatch) -> None:
    from raysys.cli.main import main

    monkeypatch.chdir(tmp)
    data = case.setup(tmp, shards)
    before = snapshot(tmp)
    capfd.readouterr()
    if case.patch:
        case.patch(monkeypatch)
    code = main(argv_of(case, tmp, data))
    err = without_phases(capfd.readouterr().err)
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == case.exit_code, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    if not case.ray:
        assert err.strip() == lines[0], f"more than the one error line:\n{err}"
    assert matches(lines[0].removeprefix("error: "), render(case.message, tmp, data)), lines[0]
    # The bar after every bad input.
    assert running_runs(tmp) == [], "an MLflow run was left RUNNING"
    after = snapshot(tmp)
    lost = {path for path, digest in before.items() if after.get(path) != digest and "checkpoint_manager" not in path}
    assert not lost, f"files written before the command were lost or changed: {sorted(lost)}"
    assert not list(tmp.rglob(".state.pt.*")), "a half-written checkpoint was left behind"
    assert not (tmp / "pwned").exists()
    for path in case.absent:
        assert not Path(render(path, tmp, data)).exists(), f"{render(path, tmp, data)} was left behind"
        assert not list(Path(render(path, tmp, data)).parent.glob(Path(path).name + ".tmp-*")), "a half-written folder was left"


@pytest.mark.parametrize("case", _params([c for c in CASES if not c.ray]))
def test_bad_input_fails_before_ray(case, tmp_path, fashion_shards, capfd, monkeypatch, ray_tripwire):
    run_case(case, tmp_path, fashion_shards, capfd, monkeypatch)


@pytest.mark.parametrize("case", _params([c for c in CASES if c.ray]))
def test_bad_input_on_ray(case, tmp_path, fashion_shards, ray_cluster, capfd, monkeypatch):
    run_case(case, tmp_path, fashion_shards, capfd, monkeypatch)


def test_cli_subprocess_prints_one_line_and_exits_non_zero(tmp_path):
    """The real entry point, for one case: exactly one stderr line, exit code 2."""
    from tests.conftest import run_cli

    result = run_cli("train", P, "train.epochz=2", cwd=tmp_path)
    assert result.returncode == 2
    result.stderr = without_phases(result.stderr)
    assert result.stderr.strip() == "error: unknown config key 'train.epochz' (did you mean: train.epochs?)" or \
        matches(result.stderr.strip(), "error: unknown config key 'train.epochz' (did you mean: train.epochs…?)")


# -- the doc ---------------------------------------------------------------------------------
def markdown() -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "# Bad input",
        "",
        "What raysys answers to bad input. Every row is a case of `tests/test_bad_input.py`, which runs",
        "it and checks: this exit code, exactly this one line on stderr (after `error: `), no MLflow",
        "run left RUNNING, every file written before the command unchanged, no half-written checkpoint.",
        "Rows marked *before Ray* fail before Ray starts. `<dir>` is the case's scratch folder,",
        "`<shards>` its data folder, `P` the preset `" + P + "`; `…` stands for text that varies",
        "(a list that grows with the presets, a loss value, a path). Rows marked *pending* name the driver",
        "change they wait for: until it is made their test is an expected failure (xfail, strict).",
        "",
        "Regenerate after changing the table: `python -m tests.test_bad_input > docs/bad-input.md`.",
        "",
        "| # | bad input | command | exit | message | |",
        "|---|---|---|---|---|---|",
    ]
    for number, case in enumerate(CASES, 1):
        argv = " ".join(case.argv).replace(P, "P").replace("{tmp}", "<dir>").replace("{shards}", "<shards>")
        message = case.message.replace("{tmp}", "<dir>").replace("{shards}", "<shards>")
        where = "Ray" if case.ray else "before Ray"
        if case.pending:
            where += " (pending: " + case.pending + ")"
        # Double backticks: a message may quote a command in single backticks.
        lines.append(f"| {number} | {cell(case.what)} | `{cell(argv)}` | {case.exit_code} | `` {cell(message)} `` | {where} |")
    return "\n".join(lines) + "\n"


def test_doc_is_in_sync_with_the_table():
    assert len(CASES) >= 20
    assert DOC.read_text() == markdown(), "docs/bad-input.md is stale: python -m tests.test_bad_input > docs/bad-input.md"


if __name__ == "__main__":
    sys.stdout.write(markdown())
