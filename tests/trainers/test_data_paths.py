"""One rule for a data path (issue 21 items 1 and 4), applied where the data is read: no '~', no environment
variables, no '..', real path under an allowed root; symlinks that stay inside a root keep working; errors name
the path as given, never the resolved target."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainers.fake_data import write_fake_image_folder
from trainers.config import DataConfig
from trainers.data import load_dataset
from trainers.data_paths import DataPathError, checked_path


@pytest.mark.parametrize("given", ["~/secret", "~root/", "$HOME/x", "a/../../etc", "/data/../etc"])
def test_home_variables_and_escapes_are_refused(given: str, tmp_path: Path) -> None:
    with pytest.raises(DataPathError) as refused:
        checked_path(given, [tmp_path])
    assert repr(given) in str(refused.value)


def test_a_path_under_a_root_passes_and_a_symlink_out_of_it_does_not(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "inner").mkdir(parents=True)
    outside.mkdir()
    (root / "inside-link").symlink_to(root / "inner")
    (root / "escape").symlink_to(outside)
    assert checked_path(str(root / "inside-link"), [root]) == root / "inside-link"
    with pytest.raises(DataPathError) as refused:
        checked_path(str(root / "escape"), [root])
    assert str(root / "escape") in str(refused.value) and "outside" not in str(refused.value).replace(
        "outside the data roots", "")


def _folder_study(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    write_fake_image_folder(root / "images", {"ant": 12, "bee": 8}, {"ant": 3, "bee": 3})
    return root, root / "images"


def _load(folder: Path, roots: list[Path] | None, name: str | None = None) -> object:
    return load_dataset(DataConfig(name=name or f"folder:{folder}", image_size=8), roots)


def test_a_folder_data_set_inside_its_root_loads_symlinked_class_folders_inside_included(tmp_path: Path) -> None:
    root, folder = _folder_study(tmp_path)
    first = sorted((folder / "train").iterdir())[0]
    moved = root / "elsewhere-in-root"
    first.rename(moved)
    first.symlink_to(moved)  # a symlink that stays inside the root keeps working
    assert len(_load(folder, [root]).class_names) >= 2


def test_a_class_folder_symlinked_out_of_the_root_fails_naming_it_as_given(tmp_path: Path) -> None:
    root, folder = _folder_study(tmp_path)
    first = sorted((folder / "train").iterdir())[0]
    outside = tmp_path / "outside" / "secret-class"
    outside.parent.mkdir()
    first.rename(outside)
    first.symlink_to(outside)  # swapped after the study was created: the loader checks what it opens
    with pytest.raises(DataPathError) as refused:
        _load(folder, [root])
    assert str(first) in str(refused.value) and "secret-class" not in str(refused.value).split(str(first))[1]
    assert len(_load(folder, None).class_names) >= 2  # without roots (a local `tailtune train`) it is read


def test_an_image_file_symlinked_out_of_the_root_fails(tmp_path: Path) -> None:
    root, folder = _folder_study(tmp_path)
    image = sorted(sorted((folder / "train").iterdir())[0].iterdir())[0]
    outside = tmp_path / "outside.png"
    image.rename(outside)
    image.symlink_to(outside)
    with pytest.raises(DataPathError, match=image.name):
        _load(folder, [root])


def test_tilde_in_a_folder_name_under_a_data_root_is_refused_not_expanded(tmp_path: Path) -> None:
    root, _ = _folder_study(tmp_path)
    with pytest.raises(DataPathError, match="'~/secret'"):
        load_dataset(DataConfig(name="folder:~/secret", root=root, image_size=8), [root])
    with pytest.raises(DataPathError, match="~"):
        load_dataset(DataConfig(name="folder:~/secret", root=root, image_size=8), None)


def test_a_streamed_image_swapped_for_a_symlink_out_after_listing_fails_when_it_is_read(tmp_path: Path) -> None:
    from trainers.data.streaming import file_batches

    root, folder = _folder_study(tmp_path)
    data = load_dataset(DataConfig(name=f"folder:{folder}", image_size=8, pipeline="streaming"), [root])
    image = data.train.paths[0]
    batches = list(file_batches(data.train, data.view, batch_size=4, order=None, random_resized_crop=False,
                                workers=0, timeout_s=30, seed=0))
    assert sum(len(labels) for _, labels in batches) == len(data.train)
    outside = tmp_path / "outside.png"
    image.rename(outside)
    image.symlink_to(outside)  # swapped while the study trains: the next read checks it
    with pytest.raises(DataPathError, match=image.name):
        list(file_batches(data.train, data.view, batch_size=4, order=None, random_resized_crop=False, workers=0,
                          timeout_s=30, seed=0))
