"""The position-bias and kept-overlay figures at the smoke profile: PNGs written, numbers sane."""

from __future__ import annotations

import pytest
import torch

from hippo.adapters.base import VideoGrid
from paper.reproduce.plots import overlays, position_bias
from paper.reproduce.plots.job import PROFILES, FigureJob

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    return FigureJob(results=root / "results", figures=root / "figures", tables=root / "tables",
                     profile=PROFILES["smoke"], log=lambda _: None, progress=False)


def test_position_bias_figure(job):
    outcome = position_bias.build(job)
    assert [p.name for p in outcome.figures] == ["position_bias.png"]
    assert outcome.figures[0].read_bytes()[:8] == PNG_MAGIC
    value = job.measurement(position_bias.NAME, lambda: pytest.fail("the measurement was not cached"))
    for pair in job.profile.pairs:
        for name in position_bias.VIDEO_SETS:
            entry = value["pairs"][pair][name]
            for score in position_bias.SCORES:
                shares = entry[score]
                assert sum(map(sum, shares["per_position"])) == pytest.approx(1)
                assert sum(shares["by_frame"]) == pytest.approx(1)
                assert shares["border_to_interior"] > 0 and shares["last_to_first_frame"] > 0
            row = outcome.numbers[pair][name]
            assert row["attn_border_to_interior"] == entry["attn"]["border_to_interior"]
    assert any("tokens per frame" in note for note in outcome.notes)


def test_kept_overlays_figure(job):
    outcome = overlays.build(job)
    assert outcome.figures[0].name == "kept_overlays.png"
    assert outcome.figures[0].read_bytes()[:8] == PNG_MAGIC
    numbers = outcome.numbers
    assert set(numbers["border_share"]) == set(job.profile.methods)
    assert all(0 <= share <= 1 for share in numbers["border_share"].values())
    assert numbers["jaccard_with_hippo"]["hippo"] == 1.0
    assert all(0 <= j <= 1 for j in numbers["jaccard_with_hippo"].values())


def test_pooled_shares_by_hand():
    grid = VideoGrid(frames=2, height=3, width=3)
    one = torch.zeros(2, 3, 3)
    one[0, 0, 0], one[1, 1, 1] = 3.0, 1.0  # a border token holds 3/4, the centre 1/4
    pooled = position_bias.pooled([position_bias.shares(one.flatten(), grid)] * 2, grid)
    assert pooled["by_frame"] == pytest.approx([0.75, 0.25])
    assert pooled["last_to_first_frame"] == pytest.approx(1 / 3)
    assert pooled["border_to_interior"] == pytest.approx((0.75 / 8) / 0.25)
    assert overlays.jaccard([1, 2, 3], [2, 3, 4]) == pytest.approx(0.5)
    assert overlays.shown_frames(2) == [0, 1] and overlays.shown_frames(8) == [1, 3, 5, 7]
