"""A study keeps every field of its preset, and every default search space holds its paper's setting."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from studies.definition.comparison import ComparisonSpec
from studies.definition.space import DERIVED_PARAMS, Choices, default_space
from studies.definition.spec import StudySpec, parse_spec
from trainers.config import with_fields
from trainers.errors import UserInputError
from trainers.presets import PRESETS, method_defaults


def _spec(**fields: object) -> StudySpec:
    return parse_spec({"name": "s", "n_trials": 3, **fields})


def test_a_study_keeps_every_field_of_its_preset_and_fixed_still_overrides() -> None:
    preset = PRESETS["wb-cifar100-if100"].config
    spec = _spec(preset="wb-cifar100-if100", method="wb", data_root="/data/cifar",
                 fixed={"stage1.epochs": 1, "data.split_seed": 7})
    expected = with_fields(preset, {"data.root": "/data/cifar", "stage1.epochs": 1, "data.split_seed": 7})
    assert spec.base_config() == expected
    assert spec.base_config().data.cifar_counts == "wb" and spec.dataset == "cifar100-lt"
    trial = spec.config_for({"stage2.weight_decay": 0.5, "stage2.loss": "cb"})
    assert trial == with_fields(expected, {"stage2.weight_decay": 0.5, "stage2.loss": "cb"})


def test_the_specs_own_data_fields_override_the_presets_and_a_fix_overrides_a_preset_data_field() -> None:
    spec = _spec(preset="los-cifar100-if100", method="los", dataset="cifar100-lt", imbalance_factor=50,
                 fixed={"data.cifar_counts": "ewb"})
    data = spec.base_config().data
    assert (data.imbalance_factor, data.cifar_counts) == (50, "ewb")


def test_without_a_preset_the_data_set_defaults_to_digits_and_a_wrong_preset_method_is_refused() -> None:
    assert _spec(dataset=None).base_config().data.name == "digits-lt"
    with pytest.raises(UserInputError, match="is for method 'wb'"):
        _spec(preset="wb-cifar100-if100", method="los")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_default_space_holds_the_presets_setting_and_the_recipe_is_exactly_the_preset(name: str) -> None:
    config = PRESETS[name].config
    spec = _spec(preset=name, method=config.method)
    recipe = spec.recipe_params()
    assert recipe is not None, f"the {config.method} space leaves out a value of {name}"
    assert set(recipe) == set(default_space(config.method, name))
    assert spec.config_for(recipe) == spec.base_config() == config


@pytest.mark.parametrize("method", ["wb", "tau-norm", "los", "ewb"])
def test_every_default_space_holds_the_tailtune_defaults(method: str) -> None:
    spec = _spec(method=method)
    recipe = spec.recipe_params()
    assert recipe is not None and spec.config_for(recipe) == method_defaults(method)


@pytest.mark.parametrize("method", ["wb", "tau-norm", "los", "ewb"])
def test_new_data_search_stage1_on_log_grids_and_are_pruned_over_its_epochs(method: str) -> None:
    space = _spec(method=method).resolved_space()
    assert {"stage1.lr", "stage1.weight_decay", "stage1.epochs"} <= set(space)
    assert all(isinstance(space[name], Choices) for name in ("stage1.lr", "stage1.epochs"))
    assert _spec(method=method).resolved_pruner == "successive-halving"
    preset = next(name for name, p in PRESETS.items() if p.config.method == method)
    assert "stage1.lr" not in _spec(method=method, preset=preset).resolved_space()  # the paper's recipe holds


def test_the_auto_pruner_is_none_when_stage1_is_fixed_or_objectives_are_several() -> None:
    fixed = {"stage1.lr": 0.01, "stage1.weight_decay": 5e-3, "stage1.epochs": 100}
    assert _spec(method="tau-norm", fixed=fixed).resolved_pruner == "none"
    assert _spec(method="wb", objectives=["all", "few"]).resolved_pruner == "none"
    assert _spec(method="wb", pruner="median", fixed=fixed).resolved_pruner == "median"


def test_wb_space_searches_the_wb_loss_form_and_lambda2_for_both_loss_scales() -> None:
    space = default_space("wb")
    assert {"ce", "cb", "cb-bce"} <= set(space["stage2.loss"].choices)
    weight_decay = space["stage2.weight_decay"]
    # cb-bce's gradient is ~60-99x smaller at K = 100: WB's 0.1 with cb-bce is 6-10 with cb; both inside.
    assert weight_decay.low <= 0.1 and weight_decay.high >= 10


def test_a_space_leaving_out_the_recipe_has_no_recipe_and_derived_params_invert() -> None:
    spec = _spec(method="wb", search_space={"stage2.loss": {"type": "categorical", "choices": ["ce"]}})
    assert spec.recipe_params() is None  # the default loss is cb
    for derived in DERIVED_PARAMS.values():
        assert derived.to_field(derived.from_field(0.98)) == pytest.approx(0.98)


@pytest.mark.parametrize(("dataset", "imbalance_factor", "objective"), [
    ("cifar10-lt", None, "few"),  # 4980 .. 50 train images: no class under 20
    ("cifar100-lt", 10, "few"),  # 480 .. 48
])
def test_an_objective_on_a_split_the_data_leaves_empty_is_refused_naming_it(
        dataset: str, imbalance_factor: float | None, objective: str) -> None:
    with pytest.raises(UserInputError, match=f"objective {objective}: .*Many > 100, Few < 20"):
        _spec(dataset=dataset, imbalance_factor=imbalance_factor, objectives=["all", objective])
    assert _spec(dataset=dataset, imbalance_factor=imbalance_factor, objectives=["many"]).objectives == ["many"]


def test_the_recipe_resolves_the_data_sets_augmentation_defaults() -> None:
    space = {"data.flip": {"type": "categorical", "choices": [True, False]},
             "data.crop_padding": {"type": "categorical", "choices": [0, 1, 4]}}
    for dataset, expected in (("digits-lt", (False, 1)), ("cifar100-lt", (True, 4))):  # 8 px // 8; CIFAR's 4
        recipe = _spec(dataset=dataset, search_space=space).recipe_params()
        assert recipe is not None and (recipe["data.flip"], recipe["data.crop_padding"]) == expected


# JSON's true is no integer, though Python's bool is one: schemathesis sent {"seed": false} to POST /comparisons
# and got a comparison created.
@pytest.mark.parametrize(("model", "body"), [
    (StudySpec, {"name": "s", "n_trials": 4, "seed": True}),
    (StudySpec, {"name": "s", "n_trials": 4, "image_size": True}),
    (StudySpec, {"name": "s", "n_trials": 4, "confirm": {"top_k": True, "seeds": 3}}),
    (StudySpec, {"name": "s", "n_trials": 4, "confirm": {"top_k": 2, "seeds": True}}),
    (ComparisonSpec, {"name": "c", "n_trials": 4, "seed": False}),
    (ComparisonSpec, {"name": "c", "n_trials": 4, "top_k": True}),
    (ComparisonSpec, {"name": "c", "n_trials": 4, "image_size": True}),
    (ComparisonSpec, {"name": "c", "n_trials": 4, "seed": -1}),
    # and no number: schemathesis created a comparison from {"imbalance_factor": true}
    (StudySpec, {"name": "s", "n_trials": 4, "imbalance_factor": True}),
    (ComparisonSpec, {"name": "c", "n_trials": 4, "imbalance_factor": True}),
    (ComparisonSpec, {"name": "c", "n_trials": 4, "imbalance_factor": 0.5}),
    (StudySpec, {"name": "s", "n_trials": 4, "search_space": {"stage2.weight_decay": {"type": "float", "low": True,
                                                                                     "high": 2}}}),
])
def test_a_boolean_or_out_of_range_number_in_a_spec_is_refused(model: type, body: dict) -> None:
    with pytest.raises(ValidationError):
        model.model_validate_json(json.dumps(body))


@pytest.mark.parametrize(("side", "padding", "arch"), [(16, [0, 2, 4], "small-cnn"), (48, [0, 6, 12], "resnet32-cifar"),
                                                       (128, [0, 16, 32], None)])
def test_a_folder_without_a_preset_searches_its_augmentation_and_model_and_keeps_its_recipe(
        side: int, padding: list[int], arch: str | None) -> None:
    spec = parse_spec({"name": "f", "n_trials": 4, "dataset": "folder:/data/birds", "image_size": side})
    space = spec.resolved_space()
    assert space["data.flip"].choices == [False, True] and space["data.crop_padding"].choices == padding
    assert (space["model.arch"].choices if arch else None) == (["small-cnn", "resnet32-cifar"] if arch else None)
    recipe = spec.recipe_params()
    assert recipe is not None  # the recipe still runs as trial 0, with the data set's own augmentation and model
    assert recipe["data.flip"] is False and recipe["data.crop_padding"] == padding[1]
    assert recipe.get("model.arch") == arch
    for other in ({"dataset": "digits-lt"}, {"preset": "wb-cifar100-if100"}):
        assert "data.flip" not in parse_spec({"name": "o", "n_trials": 4, **other}).resolved_space()


def test_a_folder_comparison_searches_augmentation_and_model_once_with_stage1_and_fixes_them_after() -> None:
    comparison = ComparisonSpec(name="c", n_trials=4, dataset="folder:/data/birds", image_size=16)
    shared = comparison.stage1_space("wb")
    assert {"data.flip", "data.crop_padding", "model.arch", "stage1.lr"} <= set(shared)
    assert not any(name.startswith("stage2.") for name in shared)
    chosen = {"data.flip": False, "data.crop_padding": 2, "model.arch": "resnet32-cifar", "stage1.lr": 0.1,
              "stage1.weight_decay": 5e-4, "stage1.epochs": 100}
    method_space = comparison.method_spec("tau-norm", chosen).resolved_space()
    assert method_space and not set(method_space) & set(shared)  # its backbones are the stage-1 study's


def test_ewb_searches_its_own_network_once_and_then_only_its_post_hoc_logit_adjustment() -> None:
    comparison = ComparisonSpec(name="c", n_trials=4, fixed={"stage1.epochs": 20})
    assert comparison.stage1_studies() == {"stage1": ["wb", "tau-norm", "los"], "ewb-stage1": ["ewb"]}
    stage1 = comparison.stage1_spec("ewb-stage1")
    assert stage1.name == "c-ewb-stage1" and stage1.method == "ewb" and stage1.confirm is None
    assert set(stage1.resolved_space()) == {"stage1.lr", "stage1.weight_decay", "stage1.feature_reg"}
    assert stage1.fixed["stage2.tau"] == method_defaults("ewb", "digits-lt").stage2.tau  # scored at the recipe
    chosen = {"stage1.lr": 0.03, "stage1.weight_decay": 3e-3, "stage1.feature_reg": 2e-2}
    ewb = comparison.method_spec("ewb", chosen)
    assert set(ewb.resolved_space()) == {"stage2.tau"} and ewb.confirm is not None
    # Only the methods compared get a stage-1 study; with every trained knob fixed there is nothing to search.
    assert ComparisonSpec(name="c", n_trials=4, methods=["ewb", "los"]).stage1_studies() == {
        "stage1": ["los"], "ewb-stage1": ["ewb"]}
    every = {"stage1.lr": 0.01, "stage1.weight_decay": 5e-3, "stage1.feature_reg": 1e-2, "stage1.epochs": 20}
    assert ComparisonSpec(name="c", n_trials=4, methods=["ewb"], fixed=every).stage1_studies() == {}
    with pytest.raises(ValidationError, match="at most"):
        ComparisonSpec(name="n" * 90, n_trials=4)  # NAME-ewb-stage1 would pass a study name's 100 characters
