"""Augmentation is configuration: per-data-set defaults (the papers' for theirs), overridden by data.flip,
data.crop_padding and data.random_resized_crop from --set / a study's fixed fields or search space."""

from __future__ import annotations

from pathlib import Path

import pytest

from studies.artifacts.cache import stage1_key
from studies.definition.space import Choices
from studies.definition.spec import StudySpec
from tests.trainers.fake_data import write_fake_image_folder
from trainers.config import DataConfig, ExperimentConfig, with_fields
from trainers.data import AugmentSpec, load_dataset
from trainers.errors import UserInputError


def test_each_data_set_has_its_default_and_every_field_overrides_it(tmp_path: Path) -> None:
    assert load_dataset(DataConfig(name="digits-lt")).augment == AugmentSpec(1, False, False)  # a flipped 2 is no 2
    folder = write_fake_image_folder(tmp_path / "chars", {"a": 6, "b": 3}, {"a": 1, "b": 1})
    assert load_dataset(DataConfig(name=f"folder:{folder}", image_size=16)).augment == AugmentSpec(2, False, False)
    changed = DataConfig(name="digits-lt", image_size=16, flip=True, crop_padding=0, random_resized_crop=True)
    assert load_dataset(changed).augment == AugmentSpec(0, True, True)
    # under random-resized crop the padding defaults to none, as in the papers' ImageNet transform
    assert load_dataset(DataConfig(name="digits-lt", random_resized_crop=True)).augment == AugmentSpec(0, False, True)


def test_set_takes_the_augmentation_fields_and_refuses_bad_values() -> None:
    config = with_fields(ExperimentConfig(), {"data.flip": "false", "data.crop_padding": "3",
                                              "data.random_resized_crop": "true", "data.pipeline": "in-memory"})
    assert (config.data.flip, config.data.crop_padding, config.data.random_resized_crop) == (False, 3, True)
    with pytest.raises(ValueError, match="data.crop_padding"):
        with_fields(ExperimentConfig(), {"data.crop_padding": "-1"})
    with pytest.raises(UserInputError, match="always fits in memory"):
        load_dataset(DataConfig(name="digits-lt", pipeline="streaming"))


def test_a_study_searches_flip_as_a_stage1_choice() -> None:
    spec = StudySpec(name="flip", n_trials=4, search_space={"data.flip": Choices(choices=[True, False])})
    assert spec.resolved_space()["data.flip"] == Choices(choices=[True, False])
    flipped, unflipped = spec.config_for({"data.flip": True}), spec.config_for({"data.flip": False})
    assert (flipped.data.flip, unflipped.data.flip) == (True, False)
    assert stage1_key(flipped) != stage1_key(unflipped)  # each value trains (and caches) its own backbone
    fixed = StudySpec(name="noflip", n_trials=1, fixed={"data.flip": False})
    assert fixed.base_config().data.flip is False and "data.flip" not in fixed.resolved_space()
