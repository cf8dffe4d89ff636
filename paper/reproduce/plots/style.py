"""One look for every figure: matplotlib without a display, one colour per method, the paper's numbers
marked the same way everywhere."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on the machines that make the figures
import matplotlib.pyplot as plt  # noqa: E402

METHOD_COLORS = {"none": "#444444", "random": "#999999", "uniform": "#8c6d31", "attn": "#d62728",
                 "specvlm": "#1f77b4", "hippo": "#2ca02c"}
DECODING_COLORS = {"ar": "#444444", "sd": "#1f77b4", "sd-specvlm": "#17becf", "pearl": "#ff7f0e",
                   "hippo": "#2ca02c"}
LANE_COLORS = {"target": "#1f77b4", "verify": "#9467bd", "draft": "#ff7f0e"}
PAPER_MARKER = {"marker": "*", "s": 160, "edgecolor": "black", "zorder": 5}  # the paper's published numbers


def figure(width: float = 6.4, height: float = 4.2, **kwargs):
    fig, ax = plt.subplots(figsize=(width, height), **kwargs)
    return fig, ax


def subplots(rows: int, cols: int, width: float, height: float, **kwargs):
    return plt.subplots(rows, cols, figsize=(width, height), **kwargs)
