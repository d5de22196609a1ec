"""How ``TrainEvalDataConfig`` splits materialised datasets across Ray Train workers."""
from __future__ import annotations

from raysys.data.stream import train_eval_data_config


def rows_of(split) -> list:
    return [int(row["x"]) for row in split.iter_rows()]


def test_train_split_is_equal_and_test_split_counts_every_row_once(ray_cluster):
    import ray.data

    # One block each: a block-wise split would give one worker everything.
    train = ray.data.from_items([{"x": i} for i in range(11)], override_num_blocks=1).materialize()
    test = ray.data.from_items([{"x": i} for i in range(11)], override_num_blocks=1).materialize()
    splits = train_eval_data_config().configure(
        {"train": train, "test": test}, world_size=2, worker_handles=None, worker_node_ids=None,
    )
    train_rows = [rows_of(split["train"]) for split in splits]
    assert [len(rows) for rows in train_rows] == [5, 5]  # equal: one row dropped
    assert len(set(train_rows[0] + train_rows[1])) == 10
    test_rows = [rows_of(split["test"]) for split in splits]
    assert [len(rows) for rows in test_rows] == [5, 6]
    assert sorted(test_rows[0] + test_rows[1]) == list(range(11))
    # A split iterates again for the next epoch.
    assert rows_of(splits[1]["test"]) == test_rows[1]
