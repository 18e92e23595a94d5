"""The report's writers: GitHub Markdown and LaTeX (booktabs) tables from DataFrames, and p-values in
e-notation, formatted deterministically (the report's golden files depend on it)."""

from __future__ import annotations

import math
import re

import pandas as pd


def fmt_p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else f"{p:.2e}"


def to_markdown(df: pd.DataFrame, index: bool = True) -> str:
    """A GitHub Markdown table of a DataFrame of strings/numbers (floats as .4f), deterministic."""
    df = df.reset_index() if index else df
    cells = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    head = [str(c) for c in df.columns]
    return (
        "\n".join(
            ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in cells]
        )
        + "\n"
    )


def to_latex(df: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs tabular of the wide table (index columns first); %, _, & and # escaped."""
    df = df.reset_index()
    esc = lambda s: re.sub(r"([%_&#])", r"\\\1", _cell(s))  # noqa: E731
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{esc(caption)}}}" if caption else "",
        f"\\label{{{label}}}" if label else "",
        "\\begin{tabular}{" + "l" * 2 + "r" * (df.shape[1] - 2) + "}",
        "\\toprule",
        " & ".join(esc(c) for c in df.columns) + " \\\\",
        "\\midrule",
    ]
    lines += [" & ".join(esc(v) for v in row) + " \\\\" for row in df.itertuples(index=False)]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(line for line in lines if line) + "\n"


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
    return str(v)
