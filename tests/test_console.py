"""The console of a command: phase lines first, progress display, Ray's output in a log file (no Ray started here)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raysys.cli.main import build_parser
from raysys.console import progress as prog
from raysys.console import rayout
from raysys.train.feed import ProgressTicker

REPO = Path(__file__).resolve().parents[1]

# A fresh interpreter that says on stderr when torch, ray or mlflow is first imported.
FIRST_IMPORTS = """
import sys
seen = set()
class Watch:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in ("torch", "ray", "mlflow") and top not in seen:
            seen.add(top)
            sys.stderr.write(f"IMPORT {top}\\n")
            sys.stderr.flush()
        return None
sys.meta_path.insert(0, Watch())
from raysys.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_first_phase_line_comes_before_torch_ray_and_mlflow_are_imported(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", FIRST_IMPORTS, "train", "cifar-resnet/fashion-mnist-resnet20",
         f"data.path={tmp_path / 'none'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    lines = done.stderr.splitlines()
    assert done.returncode != 0 and lines[-1].startswith("error: "), done.stderr[-2000:]
    first = lines[0]
    assert first.startswith("raysys [") and "train cifar-resnet/fashion-mnist-resnet20" in first, lines[:3]
    assert any(line.startswith("IMPORT torch") for line in lines)  # loading the preset does import torch, after it
    phases = [line for line in lines if line.startswith("raysys [")]
    assert any("reading the shards" in line for line in phases)


@pytest.mark.parametrize("name", sorted(build_parser()._subparsers._group_actions[0].choices))
def test_every_subcommand_help_ends_with_two_or_three_examples(name):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[name]
    help_text = sub.format_help().rstrip().splitlines()
    head = max(i for i, line in enumerate(help_text) if line == "examples:")
    examples = help_text[head + 1:]
    assert 2 <= len(examples) <= 3, help_text[-6:]
    assert all(line.startswith(f"  raysys {name}") for line in examples), examples


def test_bench_help_lists_the_benchmarks_before_its_examples():
    sub = build_parser()._subparsers._group_actions[0].choices["bench"]
    text = sub.format_help()
    assert "benchmarks:" in text and "  train-overhead: " in text and "  data: " in text
    assert text.index("benchmarks:") < text.index("examples:")


def test_version_of_the_console_script_and_of_python_m_raysys():
    import raysys

    script = Path(sys.executable).parent / "raysys"
    assert script.is_file(), f"{script} missing: `make install` installs the raysys command"
    for argv in ([str(script), "--version"], [sys.executable, "-m", "raysys", "--version"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
        assert done.returncode == 0 and done.stdout.strip() == f"raysys {raysys.__version__}", done


def test_verbose_is_taken_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--verbose", "presets"]).verbose is True
    assert parser.parse_args(["presets", "--verbose"]).verbose is True
    assert not hasattr(parser.parse_args(["presets"]), "verbose")


def test_tracking_uri_flag_is_a_deprecated_alias_of_the_override(capsys):
    from raysys.cli.report import split_tracking_uri

    args = build_parser().parse_args(["report", "some-report", "--tracking-uri", "sqlite:///x.db"])
    assert args.tracking_uri == "sqlite:///x.db"
    assert "note: --tracking-uri is deprecated; write tracking.uri=sqlite:///x.db" in capsys.readouterr().err
    assert split_tracking_uri(["seeds=[0,1]", "tracking.uri=sqlite:///y.db"], "sqlite:///x.db") == (["seeds=[0,1]"], "sqlite:///y.db")
    assert split_tracking_uri(["seeds=[0,1]"], "sqlite:///x.db") == (["seeds=[0,1]"], "sqlite:///x.db")
    args = build_parser().parse_args(["runs", "repair", "--storage", "old-runs/"])
    assert args.storage == "old-runs/"
    assert "note: --storage is deprecated; write checkpoint.storage_path=old-runs/" in capsys.readouterr().err


def _progress(epoch, batch, batches=40, elapsed=None):
    return {"epoch": epoch, "batch": batch, "batches": batches, "loss": 0.5, "acc": 0.8, "lr": 0.1,
            "images_per_sec": 900.0, "elapsed": elapsed if elapsed is not None else 0.1 * batch}


def test_line_display_writes_a_line_per_tenth_of_an_epoch_or_every_30_seconds(capsys):
    now = [0.0]
    display = prog.LineDisplay(2, clock=lambda: now[0])
    for batch in range(1, 41):  # a message per batch, 4 batches per tenth
        display.update(_progress(1, batch))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11 and all("epoch 1/2" in line for line in lines)  # the epoch's start, then each tenth
    assert "  2% 1/40 batches" in lines[0] and " 10% 4/40 batches" in lines[1]
    assert "100% 40/40 batches" in lines[-1] and "loss 0.5000  acc 80.0%  lr 0.1  900 img/s  eta 0:04" in lines[-1]
    display.update(_progress(2, 1, batches=1000))
    display.update(_progress(2, 2, batches=1000))  # the same tenth, too soon: no line
    now[0] = 31.0
    display.update(_progress(2, 3, batches=1000))  # the same tenth, 31 s later: a line
    assert len(capsys.readouterr().err.splitlines()) == 2
    display.epoch_done({"epoch": 2, "train_loss": 0.4, "train_acc": 0.85, "test_loss": 0.45, "test_acc": 0.83,
                        "images_per_sec": 950.0, "epoch_time": 12.25})
    [summary] = capsys.readouterr().err.splitlines()
    assert summary.endswith("epoch 2/2  train/loss 0.4000  train/acc 85.0%  test/loss 0.4500  test/acc 83.0%  950 img/s  12.2 s")


def test_a_stir_epoch_line_names_its_validation_pass(capsys):
    """STIR's epochs evaluate the val split: the line says val/loss and val/acc, not test/."""
    from raysys.config.loader import load_config
    from raysys.families.stir.recipe import StirRecipe

    generic = {"epoch": 3, "train_loss": 0.4, "train_acc": 0.85, "test_loss": 0.45, "test_acc": 0.996,
               "test_count": 288.0, "images_per_sec": 950.0, "epoch_time": 12.25}
    shown = StirRecipe(load_config("stir/emoji")).shown_metrics(generic)
    prog.LineDisplay(200).epoch_done(shown)
    [summary] = capsys.readouterr().err.splitlines()
    assert summary.endswith("epoch 3/200  train/loss 0.4000  train/acc 85.0%  val/loss 0.4500  val/acc 99.6%  "
                            "950 img/s  12.2 s")
    assert "test/" not in summary and generic["test_acc"] == 0.996  # the loop's dict is left as it was


def test_progress_mode_follows_the_terminal():
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert prog.resolve_mode(True, Stream(True)) == "bar" and prog.resolve_mode(True, Stream(False)) == "lines"
    assert prog.resolve_mode(False) == "off" and prog.make_display(False, 3) is None


def test_rank_zero_ticker_sends_at_most_every_interval_and_always_the_last_batch():
    sent, now = [], [0.0]
    sender = type("S", (), {"progress": lambda self, state: sent.append(state)})()
    ticker = ProgressTicker(sender, epoch=1, batches=100, world_size=2, lr=lambda: 0.05, interval=0.25, clock=lambda: now[0])
    for batch in range(1, 101):
        now[0] = batch * 0.01  # 1 s for the epoch: 4 messages, plus the last batch
        ticker.tick(batch, seen=batch * 32, loss_sum=batch * 32 * 2.0, correct=batch * 16)
    assert [s["batch"] for s in sent] == [25, 50, 75, 100]
    last = sent[-1]
    assert last["loss"] == 2.0 and last["acc"] == 0.5 and last["lr"] == 0.05
    assert last["images_per_sec"] == pytest.approx(100 * 32 * 2 / 1.0)


@pytest.fixture
def sink(monkeypatch):
    monkeypatch.setattr(rayout, "_SINK", rayout._Sink())
    monkeypatch.delenv("RAYSYS_VERBOSE", raising=False)
    return rayout._SINK


def test_forwarded_ray_output_goes_to_the_log_and_warnings_as_one_line_each(sink, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # notices name the log file relative to the working directory
    rayout._forwarded({"lines": ["Requesting resources: {'CPU': 1} * 2"], "pid": 7, "actor_name": "TrainController"})
    assert capsys.readouterr().err == ""  # held until the log file's path is known
    path = rayout.attach(str(tmp_path / "run"))
    assert path == tmp_path / "run" / "console.log"
    warning = "Warning: The Ray cluster currently does not have any available CPUs."
    rayout._forwarded({"lines": [warning], "pid": 8, "actor_name": "DatasetManager"})
    rayout._forwarded({"lines": [warning.replace("CPUs", "CPUs")], "pid": 9, "actor_name": "DatasetManager"})  # once
    rayout._forwarded({"lines": ["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad", "more"],
                       "pid": 10, "actor_name": "RayTrainWorker"})
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"raysys: Ray's own output is in {path} (--verbose shows it here)"
    assert err[1:] == [f"raysys: note: {rayout.benign(warning)} [run/console.log]",  # known, harmless: once, no warning
                       "raysys: Ray error (RayTrainWorker): ValueError: bad [run/console.log]"]
    rayout.stop()
    rayout._forwarded({"lines": ["ERROR: after the last line"], "pid": 11})
    assert capsys.readouterr().err == ""  # nothing after the command's final line
    text = path.read_text()
    assert "(TrainController pid=7) Requesting resources" in text and "(pid=11) ERROR: after the last line" in text


def test_ray_loggers_go_to_the_log_file(sink, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import logging

    logger = logging.getLogger("ray.data.test_console")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(sys.stderr))
    rayout._retarget_loggers()
    path = rayout.attach(str(tmp_path))
    capsys.readouterr()
    logger.info("Starting execution of Dataset")
    logger.warning("a warning from Ray Data")
    err = capsys.readouterr().err.splitlines()
    assert err == ["raysys: Ray warning: a warning from Ray Data [console.log]"]
    assert "INFO ray.data.test_console: Starting execution of Dataset" in path.read_text()


# Ray's core_worker.cc:2330 warning, as a sweep's workers forward it.
ACTOR_ARGUMENTS = ("[2026-12-04 10:01:02,345 E 4242 4343] core_worker.cc:2330: Actor with class name: '{actor}' and ID: "
                   "'1f2e3d' has constructor arguments in the object store and max_restarts > 0. If the arguments in the "
                   "object store go out of scope or are lost, the actor restart will fail. See "
                   "https://github.com/ray-project/ray/issues/53727 for more details.")


@pytest.mark.parametrize("message", [
    "PreemptionWatcher poll failed",
    "Warning: The Ray cluster currently does not have any available CPUs. The Dataset job will hang unless more CPUs",
    "Cluster resources are not enough to run any task from MapBatches(collate). The job may hang forever",
    "WARNING: 18 PYTHON worker processes have been started on node: x, which is 1.1x the maximum expected startup concurrency",
    ACTOR_ARGUMENTS.format(actor="ImplicitFunc"),
])
def test_known_benign_ray_messages_are_one_friendly_notice_each(sink, tmp_path, capsys, monkeypatch, message):
    monkeypatch.chdir(tmp_path)
    rayout.attach(str(tmp_path))
    capsys.readouterr()
    for _ in range(3):
        rayout._forwarded({"lines": [message], "pid": 8, "actor_name": "DatasetManager"})
    err = capsys.readouterr().err.splitlines()
    assert err == [f"raysys: note: {rayout.benign(message)} [console.log]"] and "warning" not in err[0].lower()
    assert sink.notices == 0  # the five warning notices stay for real ones
    assert message in (tmp_path / "console.log").read_text()


def test_actor_argument_warnings_of_every_actor_class_are_one_note(sink, tmp_path, capsys, monkeypatch):
    """A sweep's trials, controllers and watchers each say it: one note for all, no warning notice used."""
    monkeypatch.chdir(tmp_path)
    rayout.attach(str(tmp_path))
    capsys.readouterr()
    for pid, actor in enumerate(("ImplicitFunc", "TrainTrainable", "TrainController", "PreemptionWatcher")):
        rayout._forwarded({"lines": [ACTOR_ARGUMENTS.format(actor=actor)], "pid": pid, "actor_name": actor})
    err = capsys.readouterr().err.splitlines()
    assert err == [f"raysys: note: {rayout.benign(ACTOR_ARGUMENTS)} [console.log]"] and sink.notices == 0
    assert "restartable actor" in err[0]


# What a finished trial's process prints when Tune stops it (lines as Ray forwards them).
STOPPED_TRIAL = [
    "Exception ignored in: <function WeakSet.__init__.<locals>._remove at 0x7f27f5f52480>",
    "Traceback (most recent call last):",
    '  File "/usr/lib/python3.11/_weakrefset.py", line 39, in _remove',
    "    def _remove(item, selfref=ref(self)):",
    '  File "/venv/lib/python3.11/site-packages/ray/_private/worker.py", line 1060, in sigterm_handler',
    "    raise_sys_exit_with_custom_error_message(",
    "SystemExit: 1",
]


def test_a_stopped_trials_sigterm_traceback_is_a_note_and_other_tracebacks_stay_errors(sink, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rayout.attach(str(tmp_path))
    capsys.readouterr()
    rayout._forwarded({"lines": STOPPED_TRIAL, "pid": 7, "actor_name": "_trial_driver"})
    err = capsys.readouterr().err.splitlines()
    assert err == [f"raysys: note: {rayout.benign(chr(10).join(STOPPED_TRIAL))} [console.log]"] and sink.notices == 0
    failing = ["Traceback (most recent call last):", '  File "x.py", line 1, in train', "ValueError: bad batch"]
    rayout._forwarded({"lines": failing, "pid": 8, "actor_name": "RayTrainWorker"})
    assert capsys.readouterr().err.splitlines() == ["raysys: Ray error (RayTrainWorker): ValueError: bad batch [console.log]"]


def test_an_unknown_warning_is_not_benign():
    assert rayout.benign("WARNING: something new went wrong") is None


STIR_SUBCOMMANDS = ("generate", "fetch-glyphs", "shards", "export", "analyze")


@pytest.mark.parametrize("sub", STIR_SUBCOMMANDS)
def test_every_stir_subcommand_help_ends_with_two_or_three_examples(sub):
    stir = build_parser()._subparsers._group_actions[0].choices["stir"]
    parser = stir._subparsers._group_actions[0].choices[sub]
    help_text = parser.format_help().rstrip().splitlines()
    head = max(i for i, line in enumerate(help_text) if line == "examples:")
    examples = help_text[head + 1:]
    assert 2 <= len(examples) <= 3 and all(line.startswith(f"  raysys stir {sub}") for line in examples), help_text[-6:]
