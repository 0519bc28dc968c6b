"""Data-parallel stage 1 (DDP) with two gloo processes on the CPU: what a multi-GPU worker runs with nccl."""

from __future__ import annotations

import pytest
import torch

from trainers.backbone import build_backbone_model
from trainers.config import RunOptions, with_fields
from trainers.data import load_dataset
from trainers.device import resolve_runtime
from trainers.distributed import agreed_state, shard, train_stage1_ranks
from trainers.errors import UserInputError
from trainers.experiment import stage2_output, train_backbone
from trainers.presets import method_defaults

pytestmark = pytest.mark.multiprocess

CONFIG = with_fields(method_defaults("wb"), {"model.arch": "small-cnn", "stage1.epochs": 1, "stage2.epochs": 1})
ONE = resolve_runtime(RunOptions(device="cpu"))
TWO = resolve_runtime(RunOptions(device="cpu", stage1_processes=2))


def test_a_data_parallel_stage1_trains_and_gives_a_result_shaped_like_a_one_process_run() -> None:
    # train_backbone refuses ranks that end with different weights (agreed_state, tested below), so this run
    # getting through means both ranks ended identical.
    two = train_backbone(CONFIG, TWO)
    one = train_backbone(CONFIG, ONE)
    torch.manual_seed(CONFIG.seed)
    initial = build_backbone_model(CONFIG, two.data, ONE).state_dict()
    trained = two.model.state_dict()
    assert trained.keys() == initial.keys()
    assert not torch.equal(trained["classifier.weight"], initial["classifier.weight"]), "stage 1 did not train"
    for single, parallel in ((one.stage1, two.stage1),
                             (stage2_output(one, CONFIG, ONE).result, stage2_output(two, CONFIG, ONE).result)):
        assert parallel.model_dump().keys() == single.model_dump().keys()
        assert len(parallel.per_class_test) == len(single.per_class_test)
        assert 0 <= parallel.test.all <= 100
    assert two.features.train_views.shape == one.features.train_views.shape


def test_ranks_whose_weights_differ_are_refused() -> None:
    state = {"classifier.weight": torch.ones(2, 3), "body.0.1.running_mean": torch.zeros(3)}
    same = {name: tensor.clone() for name, tensor in state.items()}
    assert agreed_state([state, same]) is state
    drifted = dict(same, **{"body.0.1.running_mean": torch.full((3,), 1e-6)})
    with pytest.raises(RuntimeError, match="rank 2"):
        agreed_state([state, same, drifted])


def test_shards_cover_the_train_split_in_equal_parts() -> None:
    data = load_dataset(CONFIG.data)
    parts = [shard(data, rank, 3, seed=0).train for rank in range(3)]
    assert len({len(part) for part in parts}) == 1, "unequal shards would hang DDP's all-reduce"
    assert len(parts[0]) * 3 - len(data.train) < 3  # padded by fewer than one image per rank
    dealt = torch.bincount(torch.cat([part.labels for part in parts]), minlength=10)
    assert (dealt >= torch.bincount(data.train.labels, minlength=10)).all(), "every train image is dealt out"


def test_a_batch_that_does_not_split_over_the_processes_is_refused() -> None:
    config = with_fields(CONFIG, {"stage1.batch_size": 255})
    with pytest.raises(UserInputError, match="divide evenly"):
        train_stage1_ranks(config, load_dataset(config.data), TWO)


def test_the_worker_option_and_its_environment_variable_set_the_stage1_processes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tailtune.commands.common import load_settings

    monkeypatch.setenv("TAILTUNE_WORKER_STAGE1_PROCESSES", "4")
    assert load_settings(worker={}).worker.stage1_processes == 4
    assert load_settings(worker={"stage1_processes": 2}).worker.stage1_processes == 2
    with pytest.raises(UserInputError, match="stage1_processes"):
        load_settings(worker={"stage1_processes": 0})
