"""Checks that a draft can serve a target: one vocabulary, one visual token grid."""

from __future__ import annotations

import hashlib
import json
import weakref

from hippo.adapters.base import PreparedInputs, VideoLLMAdapter
from hippo.errors import CheckpointError


def check_vocabulary(target: VideoLLMAdapter, draft: VideoLLMAdapter) -> None:
    """Draft tokens are scored by the target, so both tokenizers must map the same strings to the same ids."""
    t_vocab, d_vocab = target.tokenizer.get_vocab(), draft.tokenizer.get_vocab()
    if t_vocab != d_vocab:
        only_t = sorted(set(t_vocab) - set(d_vocab))[:5]
        only_d = sorted(set(d_vocab) - set(t_vocab))[:5]
        moved = [s for s in set(t_vocab) & set(d_vocab) if t_vocab[s] != d_vocab[s]][:5]
        raise CheckpointError(
            f"draft {draft.name} and target {target.name} do not share a vocabulary "
            f"({len(d_vocab)} vs {len(t_vocab)} tokens; only in target: {only_t}; only in draft: {only_d}; "
            f"different ids: {moved}). Pick a draft from the same model family and tokenizer."
        )


_VOCABULARY_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> its hash


def vocabulary_hash(tokenizer) -> str:
    """The tokenizer's token -> id map as one SHA-256: what a draft in another process sends instead of
    the map (equal hashes: the same vocabulary, as check_vocabulary requires). Kept per tokenizer."""
    if tokenizer not in _VOCABULARY_HASHES:
        text = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
        _VOCABULARY_HASHES[tokenizer] = hashlib.sha256(text.encode()).hexdigest()
    return _VOCABULARY_HASHES[tokenizer]


def check_grids(target_inputs: PreparedInputs, draft_inputs: PreparedInputs, target_name: str, draft_name: str):
    """Kept indices are computed on the target's grid and applied to the draft's: the grids must match."""
    if target_inputs.grid != draft_inputs.grid:
        raise CheckpointError(
            f"draft {draft_name} turns the video into a {draft_inputs.grid} token grid but target {target_name} "
            f"into {target_inputs.grid}; pruning indices cannot transfer. Use a draft with the same vision "
            "patch/merge sizes and frame size (same video_preprocessor_config.json)."
        )
