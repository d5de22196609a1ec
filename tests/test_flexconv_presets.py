"""The flexconv/ presets: one per command of experiments/readme.md, each loads and builds."""
from __future__ import annotations

import functools

import pytest

import pipelines.report.definitions  # noqa: F401  (registers the reports)
from raysys.config import list_presets, load_config
from raysys.data.formats.base import DATASETS
from raysys.models import build_model
from raysys.models.summary import count_parameters
from raysys.train.inputs import input_spec

# preset -> trainable parameters. FlexNet counts as tests/test_flexnet.py derives them (FlexNet-7:
# 671,650, the original's); the CIFAR ResNets are He et al.'s option-A nets.
PARAMETERS = {
    # Table 3, CIFAR-10
    "flexconv/cifar10-flexnet7": 671_650,
    "flexconv/cifar10-conv3": 169_990,
    "flexconv/cifar10-conv33": 19_998_790,
    "flexconv/cifar10-njet": 698_503,
    "flexconv/cifar10-ckcnn": 627_910,
    "flexconv/cifar10-ckcnn-magnet": 671_590,
    "flexconv/cifar10-flexnet7-siren": 627_970,
    "flexconv/cifar10-flexnet7-gabor": 669_730,
    "flexconv/cifar10-resnet32": 464_154,
    # Table 6, ImageNet-32 (1000 classes)
    "flexconv/imagenet32-flexnet5": 498_596,
    # Table 8, MNIST (one input channel)
    "flexconv/mnist-flexnet7": 670_066,
    # Table 9, STL-10
    "flexconv/stl10-flexnet7": 671_650,
    # Table 4, CIFAR-10 16 -> 32
    "flexconv/crossres-cifar10-flexnet7-gabor-reg": 671_650,
    "flexconv/crossres-cifar10-flexnet7-gabor-mask-reg": 671_650,
    "flexconv/crossres-cifar10-resnet44": 658_586,
    "flexconv/crossres-cifar10-conv3": 169_990,
    "flexconv/crossres-cifar10-conv33": 19_998_790,
    "flexconv/crossres-cifar10-njet": 698_503,
    "flexconv/crossres-cifar10-ckcnn": 627_910,
    "flexconv/crossres-cifar10-flexnet7-siren": 627_970,
    "flexconv/crossres-cifar10-flexnet7": 671_650,
    # Table 7, ImageNet 16 -> 32
    "flexconv/crossres-imagenetk-flexnet5-gabor-reg": 498_596,
    "flexconv/crossres-imagenetk-resnet32": 528_504,
    "flexconv/crossres-imagenetk-njet": 460_099,
}

FLEXCONV_PRESETS = sorted(p.name for p in list_presets() if p.paper == "flexconv")


@functools.lru_cache(maxsize=None)
def loaded(preset: str):
    """load_config once per preset (it validates every key; the tests only read)."""
    return load_config(preset)


def test_every_table_row_has_a_preset_and_no_more():
    assert FLEXCONV_PRESETS == sorted(PARAMETERS)


@pytest.mark.parametrize("preset", FLEXCONV_PRESETS)
def test_preset_loads_and_builds_with_the_expected_size(preset):
    cfg = loaded(preset)
    assert cfg.data.name in DATASETS
    assert cfg.train.recipe == "flexconv"
    model = build_model(cfg, input_spec(cfg))
    assert count_parameters(model) == PARAMETERS[preset]


@pytest.mark.parametrize("info", [p for p in list_presets() if p.paper == "flexconv"], ids=lambda p: p.name)
def test_description_names_table_and_row(info):
    assert info.description.startswith("Table "), info.description
    assert ", " in info.description  # "Table N, <row>: ..."


def test_crossres_presets_are_two_phase_runs():
    for name in FLEXCONV_PRESETS:
        cfg = loaded(name)
        crossres = name.split("/")[1].startswith("crossres-")
        assert (cfg.cross_res.source_res, cfg.cross_res.target_res) == ((16, 32) if crossres else (0, 0)), name
        if crossres:
            assert cfg.train.epochs == 100 and cfg.cross_res.finetune_epochs == 100


def test_paper_settings_of_the_main_rows():
    flexnet7 = loaded("flexconv/cifar10-flexnet7")
    assert (flexnet7.train.optimizer, flexnet7.train.lr, flexnet7.train.batch_size, flexnet7.train.epochs) == ("Adam", 0.01, 64, 350)
    assert flexnet7.train.mask_params_lr_factor == 0.1 and flexnet7.train.weight_decay == 0.0
    assert flexnet7.flexconv.conv.horizon == "33" and flexnet7.flexconv.net.dropout == 0.2
    imagenet = loaded("flexconv/imagenet32-flexnet5")
    assert imagenet.train.batch_size == 2048 and imagenet.train.weight_decay == 1e-5 and imagenet.train.report_top5_acc
    assert loaded("flexconv/mnist-flexnet7").flexconv.conv.horizon == "29"
    assert loaded("flexconv/stl10-flexnet7").flexconv.conv.horizon == "97"
    assert loaded("flexconv/cifar10-ckcnn").train.lr == 0.001
    assert loaded("flexconv/crossres-cifar10-ckcnn").train.lr == 0.01


# ---- reports: published numbers beside ours, missing runs listed (no Ray: runs logged directly) ----


def _log_finished_run(client, experiment_id: str, run_name: str, metrics: dict) -> None:
    from raysys.track.runs import RUN_NAME_TAG

    run = client.create_run(experiment_id, run_name=run_name, tags={RUN_NAME_TAG: run_name})
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value, step=0)
    client.set_terminated(run.info.run_id, "FINISHED")


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    """One sqlite MLflow for the report tests: two seeds of Table 4's Gabor-regularized row, nothing else."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("flexconv")
    for seed, (source, ootb, final) in enumerate([(0.860, 0.820, 0.890), (0.870, 0.830, 0.894)]):
        _log_finished_run(client, experiment_id, f"crossres-cifar10-flexnet7-gabor-reg-seed{seed}", {
            "source_test_acc": source, "ootb_test_acc": ootb, "final_test_acc": final,
            "kernel_size_l00": 9.0 + seed, "kernel_size_l01": 15.0,
        })
    return uri


@pytest.fixture
def crossres_runs(mlflow_uri, tmp_path, monkeypatch):
    """Table 4 cut to two rows (ResNet-44 never ran) and seeds 0-1, to keep the test quick."""
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "table4.yaml"
    space.write_text(
        "name: flexconv-table4-crossres-cifar10\n"
        "presets:\n"
        "  - {preset: flexconv/crossres-cifar10-flexnet7-gabor-reg, label: FlexNet-7 Gabor reg.}\n"
        "  - {preset: flexconv/crossres-cifar10-resnet44, label: ResNet-44}\n"
        "seeds: [0, 1]\n"
    )
    return mlflow_uri, space


def _csv(path):
    import csv

    with open(path) as handle:
        return {row["row"]: row for row in csv.DictReader(handle)}


def test_table4_report_has_source_ootb_and_finetuned_columns(crossres_runs, tmp_path):
    from pipelines.report.engine import build_report

    uri, space = crossres_runs
    out = tmp_path / "reports"
    report = build_report("flexconv-table4-crossres-cifar10", out, space_path=space, tracking_uri=uri, log_to_mlflow=False)
    folder = out / "flexconv-table4-crossres-cifar10"
    table = _csv(folder / "table.csv")
    assert float(table["FlexNet-7 Gabor reg."]["mean"]) == pytest.approx(89.2)
    assert float(table["FlexNet-7 Gabor reg."]["published"]) == 89.0
    assert table["ResNet-44"]["mean"] == "" and table["ResNet-44"]["missing_seeds"] == "0 1"
    assert float(table["ResNet-44"]["published"]) == 92.9
    assert report.missing == {"ResNet-44": [0, 1]}
    columns = _csv(folder / "columns.csv")
    gabor = columns["FlexNet-7 Gabor reg."]
    assert float(gabor["source mean"]) == pytest.approx(86.5) and float(gabor["source published"]) == 86.5
    assert float(gabor["OOTB mean"]) == pytest.approx(82.5) and float(gabor["OOTB published"]) == 82.7
    assert columns["ResNet-44"]["OOTB n"] == "0" and float(columns["ResNet-44"]["OOTB published"]) == 54.3
    assert "**Incomplete:** 2 runs missing" in (folder / "table.md").read_text()
    sizes = _csv_rows(folder / "kernel_sizes.csv")
    assert [(r["row"], r["layer"], r["kernel_size_mean"], r["n"]) for r in sizes] == [
        ("FlexNet-7 Gabor reg.", "0", "9.500", "2"), ("FlexNet-7 Gabor reg.", "1", "15.000", "2")]
    assert (folder / "kernel_sizes.png").stat().st_size > 0


def _csv_rows(path):
    import csv

    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_report_without_runs_shows_published_numbers_and_missing_rows(mlflow_uri, tmp_path, monkeypatch):
    from pipelines.report.engine import build_report

    monkeypatch.chdir(tmp_path)
    report = build_report("flexconv-table6-imagenet32", tmp_path / "reports", tracking_uri=mlflow_uri, log_to_mlflow=False)
    assert report.missing == {"FlexNet-5": [0, 1, 2]}
    folder = tmp_path / "reports" / "flexconv-table6-imagenet32"
    text = (folder / "table.md").read_text()
    assert "| FlexNet-5 | — | 0/3 | 24.90 | — | 0, 1, 2 |" in text
    assert "— / 47.70" in (folder / "columns.md").read_text()  # top-5: none of ours, the paper's 47.7
    assert (folder / "kernel_sizes.csv").read_text().splitlines() == ["row,layer,kernel_size_mean,kernel_size_std,n"]


@pytest.mark.parametrize("name,rows", [
    ("flexconv-table3-cifar10", 9), ("flexconv-table4-crossres-cifar10", 9), ("flexconv-table6-imagenet32", 1),
    ("flexconv-table7-crossres-imagenetk", 3), ("flexconv-table8-mnist", 1), ("flexconv-table9-stl10", 1),
])
def test_every_table_has_a_space_whose_rows_are_the_presets(name, rows):
    from pipelines.report.engine import REPORTS, require_known
    from raysys.tune.space import load_space

    require_known(name)
    definition = REPORTS.get(name)
    space = load_space(definition.space_path())
    assert len(space.rows) == rows and space.seeds == [0, 1, 2] and space.name == name
    labels = {row.label for row in space.rows}
    for column in (definition.published, *(c.published for c in definition.columns)):
        assert set(column) <= labels  # every published number belongs to a row
