"""The report's figures, drawn from plain data (studies/reports/report.py computes that data from a study's trials).

Every figure is a `matplotlib.figure.Figure` saved as PNG without pyplot: no display, no global state, so the
REST service can draw reports from several threads. Splits differ by marker, fill and line style as well as
by shade, so the figures stay readable printed in grayscale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from trainers.results import SPLITS

GROUPS = SPLITS[1:]
LABELS = {"all": "All", "many": "Many", "medium": "Medium", "few": "Few"}
DPI = 110


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: str
    filled: bool


STYLES = {
    "all": Style("black", "o", "-", filled=True),
    "many": Style("#1f4e9c", "^", "--", filled=False),
    "medium": Style("#2a8a3e", "s", "-.", filled=False),
    "few": Style("#c0392b", "D", ":", filled=True),
}
STAGE_STYLES = {"before": Style("#7f7f7f", "o", "--", filled=False),
                "after": Style("black", "s", "-", filled=True)}
GROUP_SHADES = {"many": "#f2f2f2", "medium": "#ffffff", "few": "#e0e0e0"}


@dataclass(frozen=True)
class Series:
    """One line of the best-so-far figure: a value per finished trial, in trial order."""

    label: str
    split: str
    trial_numbers: list[int]
    values: list[float]


@dataclass(frozen=True)
class ParamPoints:
    """Val accuracy per split against one searched parameter; y values are None where a split is empty."""

    name: str
    log: bool
    categories: list[str] | None  # the choices, in order, for a categorical parameter
    x: list[float | str]
    y: dict[str, list[float | None]]


@dataclass(frozen=True)
class ClassProfile:
    """Per-class values of one trial, classes sorted by training images (most first), as in WB Fig. 6."""

    trial_number: int
    classes: list[int]
    counts: list[int]
    groups: list[str]
    stage1_norms: list[float]
    stage2_norms: list[float]
    test_accuracy: list[float]
    logits_magnitude: list[float | None] | None  # None per class without test samples
    regularized_std: list[float | None] | None


@dataclass(frozen=True)
class TradeOffPoint:
    trial_number: int
    val_all: float
    val_few: float


# ---------------------------------------------------------------------------------------------- figures
def draw_best_so_far(series: list[Series], every_trial: Series, title: str, path: Path) -> None:
    figure = Figure(figsize=(10, 4.6), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.scatter(every_trial.trial_numbers, every_trial.values, s=14, color="#b0b0b0", marker=".",
                 label=every_trial.label, zorder=1)
    for line in series:
        style = STYLES[line.split]
        axes.plot(line.trial_numbers, line.values, drawstyle="steps-post", linestyle=style.linestyle,
                  linewidth=1.8, label=line.label, zorder=2, **_marker(style, size=5))
    axes.set(xlabel="trial number", ylabel="val accuracy (%)", title=title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    _finish(axes, figure, path)


def draw_params(panels: list[ParamPoints], path: Path) -> None:
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(6 * columns, 4 * rows), dpi=DPI, layout="constrained")
    for index, panel in enumerate(panels):
        _draw_param(figure.add_subplot(rows, columns, index + 1), panel)
    figure.suptitle("val accuracy per split against each searched parameter (one point per finished trial)")
    entries = _legend_entries(figure.axes)
    figure.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=len(entries))
    figure.savefig(path)


def _draw_param(axes: Axes, panel: ParamPoints) -> None:
    positions = _positions(panel)
    for offset, split in zip((-0.15, -0.05, 0.05, 0.15), SPLITS, strict=True):
        points = [(x, y) for x, y in zip(positions, panel.y[split], strict=True) if y is not None]
        if not points:
            continue
        # Categorical x: spread the splits a little sideways so their markers do not hide each other.
        xs = [x + offset if panel.categories is not None else x for x, _ in points]
        axes.plot(xs, [y for _, y in points], linestyle="none", label=LABELS[split], alpha=0.85,
                  **_marker(STYLES[split], size=6))
    if panel.categories is not None:
        axes.set_xticks(range(len(panel.categories)), panel.categories)
        axes.set_xlim(-0.6, len(panel.categories) - 0.4)
    elif panel.log:
        axes.set_xscale("log")
    unit = "categorical" if panel.categories is not None else ("log scale" if panel.log else "linear")
    axes.set(xlabel=f"{panel.name} ({unit})", ylabel="val accuracy (%)")
    axes.grid(True, alpha=0.3)


def _positions(panel: ParamPoints) -> list[float]:
    if panel.categories is None:
        return [float(x) for x in panel.x]
    return [float(panel.categories.index(str(x))) for x in panel.x]


def draw_weight_norms(profile: ClassProfile, path: Path) -> None:
    figure = Figure(figsize=(10, 7.5), dpi=DPI, layout="constrained")
    norms_axes, accuracy_axes = figure.subplots(2, 1, sharex=True)
    positions = list(range(len(profile.classes)))
    for key, label, norms in (("before", "stage 1 (before stage 2)", profile.stage1_norms),
                              ("after", "after stage 2", profile.stage2_norms)):
        style = STAGE_STYLES[key]
        norms_axes.plot(positions, norms, linestyle=style.linestyle, label=label,
                        **_marker(style, size=5 if len(positions) <= 100 else 0))
    norms_axes.set(ylabel="classifier weight norm ||W_k||", ylim=(0, None))
    figure.suptitle(f"best trial ({profile.trial_number}): per-class classifier weight norms and "
                    "test accuracy")
    accuracy_axes.bar(positions, profile.test_accuracy, color="#808080", edgecolor="black", linewidth=0.4,
                      width=0.8, label="test accuracy")
    accuracy_axes.set(ylabel="per-class test accuracy (%)", ylim=(0, 105))
    _class_axis(accuracy_axes, profile.classes)
    counts_axes = accuracy_axes.twinx()
    counts_axes.plot(positions, profile.counts, color="black", linestyle=":", marker="x", markersize=4,
                     label="training images")
    counts_axes.set(ylabel="training images per class", yscale="log")
    _shade_groups(norms_axes, profile.groups, labelled=True)
    _shade_groups(accuracy_axes, profile.groups, labelled=False)
    norms_axes.legend(loc="best", fontsize="small", framealpha=0.9)
    entries = _legend_entries([accuracy_axes, counts_axes])
    counts_axes.legend(entries.values(), entries.keys(), loc="upper right", fontsize="small")
    figure.savefig(path)


def draw_logits(profile: ClassProfile, path: Path) -> None:
    figure = Figure(figsize=(10, 7.5), dpi=DPI, layout="constrained")
    panels = zip(figure.subplots(2, 1, sharex=True),
                 (("logits magnitude (L1-normalised logits)", profile.logits_magnitude),
                  ("regularized std (std / logits magnitude)", profile.regularized_std)), strict=True)
    for index, (axes, (label, values)) in enumerate(panels):
        _draw_grouped(axes, profile.groups, values or [None] * len(profile.groups))
        axes.set(ylabel=label)
        _shade_groups(axes, profile.groups, labelled=index == 0)
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.suptitle(f"best trial ({profile.trial_number}): LOS diagnostics per class on the test set, "
                    "by class group (dashed: group mean)")
    _class_axis(figure.axes[-1], profile.classes)
    figure.savefig(path)


def _draw_grouped(axes: Axes, groups: list[str], values: list[float | None]) -> None:
    """Per-class points and the group mean; a class without test samples (None) is left out of both."""
    for group in GROUPS:
        positions = [i for i, g in enumerate(groups) if g == group and values[i] is not None]
        if not positions:
            continue
        group_values = [values[i] for i in positions]
        mean = sum(group_values) / len(group_values)
        style = STYLES[group]
        axes.plot(positions, group_values, linestyle="none", label=f"{LABELS[group]} (mean {mean:.3g})",
                  **_marker(style, size=6))
        axes.hlines(mean, positions[0] - 0.4, positions[-1] + 0.4, color=style.color, linestyle="--",
                    linewidth=1.5)


def draw_trade_off(points: list[TradeOffPoint], front: list[TradeOffPoint], best_number: int,
                   path: Path) -> None:
    figure = Figure(figsize=(8, 6), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.plot([p.val_all for p in points], [p.val_few for p in points], linestyle="none", color="#7f7f7f",
              marker="o", markerfacecolor="none", markersize=6, label="trial")
    ordered = sorted(front, key=lambda p: p.val_all)
    # A front that maximises both: from each point down, then right to the next (the dominated region's edge).
    axes.step([p.val_all for p in ordered], [p.val_few for p in ordered], where="pre", color="black",
              linestyle="--", linewidth=1.2)
    axes.plot([p.val_all for p in ordered], [p.val_few for p in ordered], linestyle="none", color="black",
              marker="s", markersize=7, label="Pareto front (Few, All)", zorder=3)
    best = [p for p in points if p.trial_number == best_number]
    axes.plot([p.val_all for p in best], [p.val_few for p in best], linestyle="none", color="black",
              marker="*", markersize=16, markerfacecolor="white", label=f"best trial ({best_number})")
    for point in ordered:
        axes.annotate(str(point.trial_number), (point.val_all, point.val_few), textcoords="offset points",
                      xytext=(4, 4), fontsize="x-small")
    axes.set(xlabel="val All accuracy (%)", ylabel="val Few accuracy (%)",
             title="Few vs All val accuracy of every finished trial")
    _finish(axes, figure, path)


# ---------------------------------------------------------------------------------------------- helpers
def _marker(style: Style, size: float) -> dict[str, object]:
    return {"marker": style.marker, "markersize": size, "color": style.color,
            "markerfacecolor": style.color if style.filled else "white", "markeredgecolor": style.color}


def _class_axis(axes: Axes, classes: list[int]) -> None:
    if len(classes) <= 40:
        axes.set_xticks(range(len(classes)), [str(k) for k in classes])
        axes.set_xlabel("class index, sorted by training images (most to fewest)")
    else:
        axes.set_xlabel("class rank by training images (most to fewest)")


def _shade_groups(axes: Axes, groups: list[str], labelled: bool) -> None:
    """Background bands for Many / Medium / Few (labelled above the axes): the split shows without colour."""
    start = 0
    for end in range(1, len(groups) + 1):
        if end == len(groups) or groups[end] != groups[start]:
            axes.axvspan(start - 0.5, end - 0.5, color=GROUP_SHADES[groups[start]], zorder=0)
            if labelled:
                axes.text((start + end - 1) / 2, 1.01, LABELS[groups[start]], ha="center", va="bottom",
                          transform=axes.get_xaxis_transform(), fontsize="small")
            if end < len(groups):
                axes.axvline(end - 0.5, color="black", linewidth=0.6, linestyle=(0, (2, 2)))
            start = end
    axes.set_xlim(-0.5, len(groups) - 0.5)


def _legend_entries(axes_list: list[Axes]) -> dict[str, object]:
    """Legend handles of several axes by label, once each (one legend for panels or twin axes)."""
    entries: dict[str, object] = {}
    for axes in axes_list:
        handles, labels = axes.get_legend_handles_labels()
        for handle, label in zip(handles, labels, strict=True):
            entries.setdefault(label, handle)
    return entries


def _finish(axes: Axes, figure: Figure, path: Path) -> None:
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path)
