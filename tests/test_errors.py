"""Every bad input of the reference pipeline has an error that says what was wrong and what to do."""

from __future__ import annotations

import json
import shutil

import pytest

from hippo.checkpoint import load_adapter
from hippo.errors import CheckpointError, ConfigError
from hippo.pairing import check_grids, check_vocabulary
from hippo.video import load_video
from hippo_ref.decoding.common import DecodeConfig
from hippo_ref.pipeline import GenerationRequest, generate
from hippo_ref.pruning.methods import PruneSpec


def copy_checkpoint(src, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def test_missing_checkpoint_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist: check --target / --draft"):
        load_adapter(tmp_path / "nope")


def test_folder_without_config(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_adapter(tmp_path)


def test_unsupported_model_type(pair, tmp_path):
    folder = copy_checkpoint(pair.draft_dir, tmp_path, "bert")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "bert"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type 'bert' is not supported; supported: "):
        load_adapter(folder)


def test_missing_weights(pair, tmp_path):
    folder = copy_checkpoint(pair.draft_dir, tmp_path, "noweights")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no weights"):
        load_adapter(folder)


def test_missing_tokenizer(pair, tmp_path):
    folder = copy_checkpoint(pair.draft_dir, tmp_path, "notok")
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").unlink()
    with pytest.raises(CheckpointError, match="has no tokenizer files"):
        load_adapter(folder)


def test_missing_processor_config(pair, tmp_path):
    folder = copy_checkpoint(pair.draft_dir, tmp_path, "noproc")
    (folder / "video_preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="preprocessor"):
        load_adapter(folder)


def test_draft_with_another_vocabulary(pair, tmp_path):
    folder = copy_checkpoint(pair.draft_dir, tmp_path, "othervocab")
    draft = load_adapter(folder)
    draft.tokenizer.add_tokens(["<|not_in_target|>"])
    with pytest.raises(CheckpointError, match="do not share a vocabulary.*only in draft: \\['<\\|not_in_target\\|>'\\]"):
        check_vocabulary(pair.target, draft)


def test_draft_with_another_grid(pair, tmp_path, real_video):
    from hippo.tiny import DRAFT_SIZE, build_tiny_model, build_tokenizer, save_checkpoint

    tokenizer = build_tokenizer()
    model = build_tiny_model(pair.family, DRAFT_SIZE, tokenizer, seed=5, image_size=56)
    draft = load_adapter(save_checkpoint(model, tokenizer, pair.family, tmp_path / "small", image_size=56))
    clip = load_video(real_video, 4)
    with pytest.raises(CheckpointError, match="pruning indices cannot transfer"):
        check_grids(pair.target.prepare(clip, "q"), draft.prepare(clip, "q"), pair.target.name, draft.name)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PruneSpec("uniform", 1.0), "pruning ratio must be in [0, 1)"),
        (lambda: PruneSpec("uniform", -0.1), "pruning ratio must be in [0, 1)"),
        (lambda: PruneSpec("magic", 0.5), "unknown pruning method 'magic'; choose one of"),
        (lambda: PruneSpec("uniform", 0.5, positions="shuffle"), "unknown position policy 'shuffle'"),
        (lambda: DecodeConfig(gamma=0), "gamma (draft length) must be >= 1"),
        (lambda: DecodeConfig(max_new_tokens=0), "max_new_tokens must be >= 1"),
        (lambda: GenerationRequest("v.mp4", "q", decoding="beam"), "unknown decoding 'beam'"),
    ],
)
def test_bad_parameters(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    assert message in str(err.value)


def test_speculative_decoding_without_draft(pair, real_video):
    with pytest.raises(ConfigError, match="needs a draft model: pass --draft"):
        generate(pair.target, None, GenerationRequest(real_video, "q", frames=4, decoding="sd"))


def test_bad_kept_indices(pair, real_video):
    inputs = pair.target.prepare(load_video(real_video, 4), "q")
    import torch

    with pytest.raises(ConfigError, match="sorted and unique"):
        pair.draft.prefill(inputs, kept_grid_indices=torch.tensor([3, 1, 2]))
    with pytest.raises(ConfigError, match="grid positions in"):
        pair.draft.prefill(inputs, kept_grid_indices=torch.tensor([0, inputs.grid.grid_tokens]))
