"""The zoo's one tokenizer, shared by every zoo model (targets and drafts of both families).

A byte-level BPE (the `tokenizers` library) trained deterministically on the dataset's questions and
answers plus a fixed word list, so every attribute word is one token and any prompt still tokenizes.
Chat specials of both families are included; the chat templates come from `hippo.tiny`.

The vocabulary is frozen: every shipped checkpoint's embedding rows are indexed by these ids, so the
corpus is the five short question types' (CORPUS_QUESTION_TYPES), not whatever question types the
dataset has now. The detailed caption (2026-12-01) added no tokens: its words that are not single tokens ("frames",
"top", "middle", "bottom", "center", "yet", "gone", "overall") are spelt in several byte-level
pieces, which keeps every existing id (tests/test_zoo.py checks the vocabulary against the shipped
one), so the shipped models need no resized embeddings.
"""

from __future__ import annotations

from hippo.tiny import _CORPUS_WORDS, SPECIAL_TOKENS

VOCAB_SIZE = 512
# The question types whose questions and answers train the BPE (frozen: see the module docstring).
CORPUS_QUESTION_TYPES = ("describe", "color", "shape", "size", "motion")


def _corpus() -> list[str]:
    from hippo.zoo.dataset import MOTIONS, SPLIT_SIZES, example

    lines = []
    for i in range(400):
        for q in CORPUS_QUESTION_TYPES:
            ex = example("train", i % SPLIT_SIZES["train"], q)
            lines += [ex.question, ex.answer]
    lines += [" ".join(_CORPUS_WORDS[i : i + 7]) for i in range(len(_CORPUS_WORDS))]
    lines += [f"it {m}." for m in MOTIONS] + ["user\nassistant\nsystem"] * 200
    return lines


def build_zoo_tokenizer():
    """The zoo tokenizer (deterministic: the same vocabulary and merges on every call)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"video_token": "<|video_pad|>", "image_token": "<|image_pad|>"},
    )
