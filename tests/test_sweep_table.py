"""The sweep's live table: states from events, plain lines without a terminal, in-place redraws on one."""
from __future__ import annotations

import io
from types import SimpleNamespace

from raysys.console.sweep_table import SweepTable, TableRow


def table(live: bool = False) -> tuple[SweepTable, io.StringIO]:
    stream = io.StringIO()
    rows = [TableRow("a-seed0", "a", 0, epochs=3), TableRow("a-seed1", "a", 1, epochs=3),
            TableRow("b-seed0", "b", 0, epochs=3), TableRow("b-seed1", "b", 1, state="skipped", value=0.5)]
    return SweepTable(rows, live=live, stream=stream), stream


def test_rows_move_through_queued_running_finished_failed():
    t, _ = table()
    assert t.counts() == {"queued": 3, "running": 0, "finished": 0, "failed": 0, "skipped": 1}
    t.started("a-seed0")
    t.epoch("a-seed0", 2, value=0.4123)
    t.finished("a-seed0", 0.61)
    t.started("a-seed1")
    t.epoch("a-seed1", 1, value=0.2)
    t.failed("b-seed0", "TrainingError: non-finite loss (nan) at epoch 1\n  Traceback (most recent call last): ...")
    lines = t.lines()
    assert lines[0] == "sweep: 1 running, 1 finished, 1 failed, 1 skipped"
    assert "a-seed0  seed 0  finished  test/acc 0.6100" in lines[1]
    assert "a-seed1  seed 1  running epoch 1/3  test/acc 0.2000" in lines[2]
    assert lines[3].endswith("b-seed0  seed 0  failed  TrainingError: non-finite loss (nan) at epoch 1")
    assert "b-seed1  seed 1  skipped  test/acc 0.5000" in lines[4]


def test_plain_mode_writes_a_line_per_change_and_no_escape_codes():
    t, stream = table(live=False)
    t.started("a-seed0")
    t.epoch("a-seed0", 1, value=0.3)
    t.epoch("a-seed0", 1, value=0.31)  # the same epoch again (e.g. a later report): no new line
    t.epoch("a-seed0", 2, value=0.35)
    out = stream.getvalue().splitlines()
    assert len(out) == 3 and "\x1b" not in stream.getvalue()
    assert out[0].endswith("a-seed0  seed 0  running") and out[2].endswith("running epoch 2/3  test/acc 0.3500")


def test_live_mode_redraws_in_place_and_ends_with_the_summary():
    t, stream = table(live=True)
    t.started("a-seed0")
    t.epoch("a-seed0", 1, value=0.3)
    text = stream.getvalue()
    assert text.count("\x1b[5F\x1b[J") == 1  # the second drawing moves back over the first (5 lines)
    t.failed("a-seed1", "x" * 200)
    assert "x" * 57 + "..." in t.lines()[2]  # a long reason is cut in the live table
    t.close()
    summary = stream.getvalue().rsplit("\x1b[J", 1)[1].splitlines()
    assert summary[0] == "sweep summary (4 runs):"
    assert "x" * 200 in summary[2]  # ... and whole in the summary
    assert summary[-1] == "  1 queued, 1 running, 1 failed, 1 skipped"
    t.started("b-seed0")  # closed: nothing more is drawn
    assert stream.getvalue().rsplit("\x1b[J", 1)[1].splitlines() == summary


def test_a_note_during_the_live_table_goes_above_it_and_the_table_is_drawn_again(capsys, monkeypatch):
    """Any line written while the table is live (a Ray note, a phase) must not break the in-place redraw."""
    from raysys.console.lines import note

    monkeypatch.setattr("shutil.get_terminal_size", lambda fallback=None: SimpleNamespace(columns=40, lines=20))
    t = SweepTable([TableRow("a-" + "x" * 50, "a", 0)], live=True)  # its stream: sys.stderr, as in a sweep
    t.started("a-" + "x" * 50)
    note("Ray warning: something")
    t.close()
    out = capsys.readouterr().err
    drawing, rest = out.split("\x1b[2F\x1b[J", 1)  # the note first takes the 2-line table off the screen
    assert all(len(line) <= 39 for line in drawing.splitlines())  # no line wraps at 40 columns
    assert rest.startswith("raysys: Ray warning: something\nsweep: 1 running\n")  # then the table again, under it
    assert rest.rsplit("\x1b[J", 1)[1].startswith("sweep summary (1 runs):")
    note("after the sweep")  # a closed table is not drawn again
    assert capsys.readouterr().err == "raysys: after the sweep\n"


def test_unknown_rows_are_ignored():
    t, stream = table()
    t.started("not-a-row")
    assert stream.getvalue() == ""


def test_the_tune_callback_turns_trial_events_into_rows():
    from raysys.tune.table import tune_callback

    t, _ = table()
    callback = tune_callback(t)
    trial = SimpleNamespace(config={"trial": {"name": "a-seed0"}}, last_result={"test/acc": 0.7},
                            get_error=lambda: None)
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"epoch": 2, "test_acc": 0.65})
    assert t.rows["a-seed0"].state == "running" and t.rows["a-seed0"].epoch == 2 and t.rows["a-seed0"].value == 0.65
    callback.on_trial_complete(0, [], trial)
    assert t.rows["a-seed0"].state == "finished" and t.rows["a-seed0"].value == 0.7
    broken = SimpleNamespace(config={"trial": {"name": "b-seed0"}}, last_result={},
                             get_error=lambda: RuntimeError("Traceback (most recent call last):\n  File x\nRuntimeError: worker died"))
    callback.on_trial_error(0, [], broken)
    assert t.rows["b-seed0"].state == "failed" and t.rows["b-seed0"].reason == "RuntimeError: worker died"


def test_tune_output_goes_to_the_log_file(tmp_path, capsys, monkeypatch):
    from raysys.console import rayout
    from raysys.tune.table import tune_output_to_log

    monkeypatch.delenv("RAYSYS_VERBOSE", raising=False)
    rayout.prepare("test")
    rayout.attach(str(tmp_path))
    with tune_output_to_log():
        print("To visualize your results with TensorBoard, run: ...")
    assert "TensorBoard" not in capsys.readouterr().out
    assert "TensorBoard" in (tmp_path / "console.log").read_text()


def test_a_failed_trial_without_its_error_yet_reads_its_error_file(tmp_path):
    from raysys.tune.table import trial_error

    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  File 'x'\nValueError: bad shard\n")
    assert trial_error(SimpleNamespace(get_error=lambda: None, error_file=str(error_file))) == "ValueError: bad shard"
    assert trial_error(SimpleNamespace(get_error=lambda: None, error_file=None)).startswith("failed")
