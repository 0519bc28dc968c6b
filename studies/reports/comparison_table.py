"""A comparison as the table a paper prints: one row per method and per recipe, test Many / Medium / Few / All as
mean ± std over seeds of the confirmed configuration, the best mean of each column in bold, val All beside it.
As Markdown, LaTeX, CSV and a PNG of bars with error bars (± std)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from matplotlib.figure import Figure

from studies.definition.comparison import ComparisonRecord, MethodRow
from studies.definition.statistics import SeedSummary
from studies.reports.plots import DPI, STYLES

COLUMNS = ("many", "medium", "few", "all")
TITLES = {"many": "Many", "medium": "Medium", "few": "Few", "all": "All"}
FILES = {"markdown": "comparison.md", "latex": "comparison.tex", "csv": "comparison.csv", "png": "comparison.png"}


@dataclass(frozen=True)
class TableRow:
    label: str
    row: MethodRow


def table_rows(record: ComparisonRecord) -> list[TableRow]:
    """Each method's confirmed configuration, then its recipe; rows without results yet are left out."""
    rows = []
    for method in record.spec.methods:
        rows.append(TableRow(method, record.methods[method]))
        rows.append(TableRow(f"{method} (recipe)", record.recipes[method]))
    return [row for row in rows if row.row.test is not None]


def _best_means(rows: list[TableRow]) -> dict[str, float]:
    means = {column: [s.mean for row in rows if (s := (row.row.test or {}).get(column)) is not None]
             for column in COLUMNS}
    return {column: max(values) for column, values in means.items() if values}


def _cell(summary: SeedSummary | None, best: float | None, bold: tuple[str, str]) -> str:
    if summary is None:
        return "–"
    text = f"{summary.mean:.2f} ± {summary.std:.2f}" if summary.std is not None else f"{summary.mean:.2f}"
    return f"{bold[0]}{text}{bold[1]}" if best is not None and summary.mean == best else text


def _val_all(row: TableRow) -> SeedSummary | None:
    return (row.row.val or {}).get("all")


def as_markdown(record: ComparisonRecord) -> str:
    rows, best = table_rows(record), _best_means(table_rows(record))
    head = ["method", *(f"test {TITLES[c]}" for c in COLUMNS), "val All", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [_cell((row.row.test or {}).get(c), best.get(c), ("**", "**")) for c in COLUMNS]
        lines.append(f"| {row.label} | " + " | ".join(cells) + f" | {_cell(_val_all(row), None, ('', ''))} | "
                     f"{len(row.row.seeds)} |")
    return "\n".join(lines) + (f"\n\n{_caption(record)}\n")


def as_latex(record: ComparisonRecord) -> str:
    rows, best = table_rows(record), _best_means(table_rows(record))
    lines = [r"\begin{tabular}{l" + "r" * (len(COLUMNS) + 1) + "}", r"\toprule",
             "Method & " + " & ".join(TITLES[c] for c in COLUMNS) + r" & val All \\", r"\midrule"]
    for row in rows:
        cells = [_cell((row.row.test or {}).get(c), best.get(c), (r"\textbf{", "}")) for c in COLUMNS]
        label = row.label.replace("τ", r"$\tau$")
        lines.append(f"{label} & " + " & ".join(cells).replace("±", r"$\pm$") + " & "
                     + _cell(_val_all(row), None, ("", "")).replace("±", r"$\pm$") + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"% {_caption(record)}"]
    return "\n".join(lines) + "\n"


def as_csv(record: ComparisonRecord) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "study", "part", "split", "mean", "std", "n", "ci95_low", "ci95_high"])
    for row in table_rows(record):
        for part in ("test", "val"):
            for split in COLUMNS:
                summary = (getattr(row.row, part) or {}).get(split)
                if summary is not None:
                    low, high = summary.ci95 or (None, None)
                    writer.writerow([row.label, row.row.study, part, split, summary.mean, summary.std, summary.n,
                                     low, high])
    return buffer.getvalue()


def draw_png(record: ComparisonRecord, path: Path | BinaryIO) -> None:
    """Grouped bars per row (test Many / Medium / Few / All), error bars ± std over seeds."""
    rows = table_rows(record)
    figure = Figure(figsize=(max(6.0, 1.2 * len(rows) + 2), 4.0), dpi=DPI)
    axes = figure.add_subplot()
    width = 0.8 / len(COLUMNS)
    for index, column in enumerate(COLUMNS):
        summaries = [(row.row.test or {}).get(column) for row in rows]
        axes.bar([i + (index - 1.5) * width for i in range(len(rows))],
                 [s.mean if s else 0.0 for s in summaries], width,
                 yerr=[s.std or 0.0 if s else 0.0 for s in summaries], capsize=3, label=TITLES[column],
                 color=STYLES[column].color, alpha=0.85 if STYLES[column].filled else 0.45)
    axes.set_xticks(range(len(rows)), [row.label for row in rows], rotation=20, ha="right")
    axes.set_ylabel("test accuracy % (mean ± std over seeds)")
    axes.set_title(f"{record.name} on {record.spec.dataset}")
    axes.legend(ncols=len(COLUMNS), fontsize="small", loc="lower right")
    figure.tight_layout()
    figure.savefig(path)


def rendered(record: ComparisonRecord, kind: str) -> bytes:
    """One artifact (a key of FILES) as bytes."""
    if kind == "png":
        buffer = io.BytesIO()
        draw_png(record, buffer)
        return buffer.getvalue()
    return {"markdown": as_markdown, "latex": as_latex, "csv": as_csv}[kind](record).encode()


def write_all(record: ComparisonRecord, folder: Path) -> list[Path]:
    """The four artifacts in `folder` (created), named by FILES."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, name in FILES.items():
        (folder / name).write_bytes(rendered(record, kind))
    return [folder / name for name in FILES.values()]


def _caption(record: ComparisonRecord) -> str:
    seeds = record.spec.seeds
    return (f"{record.spec.dataset}, {record.spec.n_trials} trials per method, confirmed over {seeds} seeds "
            f"(top {record.spec.top_k} by val); test accuracy %, mean ± std over seeds; best mean per column in "
            f"bold; {record.stage1_trainings} stage-1 trainings; state: {record.state}")
