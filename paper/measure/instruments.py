"""What the benchmarks measure besides the rows' own timings: the device's memory bandwidth, the bytes
one decode forward reads, the per-forward cost of a fast static context, peak memory of a run, the
compilations that happen inside a timed run, a one-line progress display, the profile of a few decode
steps, and the machine a report was made on. Definitions (one each) are in paper/measure/protocol.py.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

VISION_PREFIXES = ("visual", "vision_tower", "multi_modal_projector", "image_newline")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- bandwidth ----------------------------------------------------------------------------------------
def measured_bandwidth(device: torch.device, nbytes: int | None = None, repeats: int = 7) -> dict:
    """Read bandwidth (GB/s, 1e9 bytes) of `torch.sum` over an fp32 tensor of `nbytes` on `device`, and
    copy bandwidth (bytes read + written) of `Tensor.copy_`, median of `repeats` after one warm-up, with
    the torch threads the benchmark runs with. Default size: 256 MiB on a CPU (8x its 32 MiB L3 here:
    DRAM), 1 GiB on a GPU."""
    nbytes = nbytes or (1 << 30 if device.type == "cuda" else 256 << 20)
    x = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    y = torch.empty_like(x)

    def median_s(fn) -> float:
        times = []
        for _ in range(repeats + 1):
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
        return statistics.median(times[1:])

    read_s = median_s(lambda: x.sum())
    copy_s = median_s(lambda: y.copy_(x))
    return {"bytes": nbytes, "read_gbs": nbytes / read_s / 1e9, "copy_gbs": 2 * nbytes / copy_s / 1e9,
            "method": f"median of {repeats} torch.sum (read) and Tensor.copy_ (read + write) over "
                      f"{nbytes >> 20} MiB fp32, {torch.get_num_threads()} torch thread(s)"}


# ---- bytes per forward --------------------------------------------------------------------------------
def decode_parameter_bytes(model) -> int:
    """Bytes of the parameters one decode forward reads: every parameter of the model except the vision
    encoder / projector (not run when decoding) and the input embedding table (one row is gathered per
    token), unless that table is also the output projection (tied), which reads all of it."""
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = 0
    for name, param in model.named_parameters():  # tied parameters are listed once
        parts = name.split(".")
        if any(p in VISION_PREFIXES for p in parts):
            continue
        if param is embed and embed is not head:
            continue
        total += param.numel() * param.element_size()
    return total


def kv_bytes(context, tokens: int, offset: int = 0) -> int:
    """KV bytes a forward of `tokens` tokens at generated offset `offset` attends to on a StaticContext:
    layers x 2 (keys, values) x kv_heads x head_dim x rows x dtype size, rows = prefill_len + offset +
    tokens (the context; the static cache has more rows, masked)."""
    rows = context.prefill_len + offset + tokens
    total = 0
    for layer in context.cache.layers:
        _, heads, _, head_dim = layer.keys.shape
        total += 2 * heads * head_dim * rows * layer.keys.element_size()
    return total


@dataclass
class ForwardCost:
    """The median time of one forward of `tokens` tokens on a context and its bandwidth floor."""

    model: str
    tokens: int
    median_ms: float  # over every sample
    parameter_bytes: int
    kv_bytes: int
    floor_ms: float  # (parameter_bytes + kv_bytes) / measured read bandwidth
    context_rows: int

    def as_json(self) -> dict:
        return dict(self.__dict__)


class ForwardTimer:
    """Per (name, StaticContext, tokens): wall times of `context.forward` of `tokens` tokens at generated
    offset 0, the logits brought to the host (so the device has finished). `warmup` untimed calls each
    first (a compiled forward may compile there); then `sample(repeats)` whenever the benchmark wants
    more samples, which the benchmark spreads over its timed phase so that they see the same machine as
    the timed runs. Each context's calls come in a burst (one untimed call, then `repeats` timed ones),
    the contexts one after the other: the steady-state cost of that forward. (Interleaving single calls
    of many compiled shapes would time TorchDynamo walking its cache past the other shapes' guards on
    every call, which a decode, repeating one shape, mostly does not.) `results` takes the medians. The
    calls are probes (not counted in the contexts' forwards); their caches' rows past the prompt are
    overwritten."""

    def __init__(self, contexts: list[tuple[str, object, int]], warmup: int = 3):
        self.contexts = contexts
        self.ids = [torch.zeros(k, dtype=torch.long, device=c.device) for _, c, k in contexts]
        self.times: list[list[float]] = [[] for _ in contexts]
        for j in range(len(contexts)):
            for _ in range(warmup):
                self._call(j)

    def _call(self, j: int) -> float:
        t0 = time.perf_counter()
        self.contexts[j][1].probe(self.ids[j], 0)[-1, 0].item()
        return time.perf_counter() - t0

    def sample(self, repeats: int) -> None:
        for j in range(len(self.contexts)):
            self._call(j)
            self.times[j] += [self._call(j) for _ in range(repeats)]

    def results(self, bandwidth_gbs: float) -> list[ForwardCost]:
        out = []
        for (name, context, k), ts in zip(self.contexts, self.times, strict=True):
            params = decode_parameter_bytes(context.adapter.model)
            kv = kv_bytes(context, k)
            out.append(ForwardCost(name, k, 1000 * statistics.median(ts), params, kv,
                                   1000 * (params + kv) / (bandwidth_gbs * 1e9), context.prefill_len + k))
        return out


# ---- peak memory ------------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory of one run. CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats.
    CPU (Linux): the process's peak RSS (VmHWM of /proc/self/status) after resetting it by writing 5 to
    /proc/self/clear_refs: exact and free (no sampling thread sharing the benchmark's core). Without
    that: a thread sampling the RSS every 2 ms (psutil if installed, else /proc/self/statm). Each run
    reports its peak and its increment over the memory at its start."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated (reset before each run)"
        elif self._clear_refs():
            self.method = "process peak RSS: VmHWM after resetting it via /proc/self/clear_refs before each run"
        elif self._rss() is not None:
            self.method = "process RSS sampled every 2 ms by a thread during each run"
        else:
            self.method = "unavailable on this platform"
        self._thread = None

    @staticmethod
    def _clear_refs() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return PeakMemory._status_bytes("VmHWM") is not None
        except OSError:
            return False

    @staticmethod
    def _status_bytes(field: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    @staticmethod
    def _rss() -> int | None:
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:
            pass
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.method.startswith("process peak RSS"):
            self.base = self._status_bytes("VmRSS")
            self._clear_refs()
        elif self.method.startswith("process RSS sampled"):
            import threading

            self.base = self._rss()
            self._peak, self._stop = self.base, threading.Event()

            def sample():
                while not self._stop.wait(0.002):
                    self._peak = max(self._peak, self._rss() or 0)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        else:
            self.base = None

    def stop(self) -> tuple[int | None, int | None]:
        """(peak bytes, peak - bytes at start)."""
        if self.device.type == "cuda":
            synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method.startswith("process peak RSS"):
            peak = self._status_bytes("VmHWM")
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            peak = max(self._peak, self._rss() or 0)
        else:
            return None, None
        return peak, (None if self.base is None or peak is None else peak - self.base)


# ---- other load on the benchmark's CPUs ----------------------------------------------------------------
class OtherLoad:
    """How busy the benchmark's CPUs (its affinity) were with OTHER work while it ran: busy time of those
    CPUs from /proc/stat minus this process's own CPU time, as a share of (wall time x CPUs). Linux only
    (None elsewhere); 0 means the benchmark had its CPUs to itself."""

    def __init__(self):
        self.cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.start = self._sample()

    def _sample(self):
        try:
            busy = 0
            for line in Path("/proc/stat").read_text().splitlines():
                name, *values = line.split()
                if name.startswith("cpu") and name != "cpu" and int(name[3:]) in self.cpus:
                    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in values[:8])
                    busy += user + nice + system + irq + softirq + steal
            own = os.times()
            return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.perf_counter()
        except (OSError, ValueError):
            return None

    def share(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None or not self.cpus:
            return None
        busy, own, wall = (b - a for a, b in zip(self.start, end, strict=True))
        return max(0.0, (busy - own) / (wall * len(self.cpus)))


# ---- compilations inside a run ---------------------------------------------------------------------------
def compiled_graphs() -> int:
    """Graphs torch.compile has captured so far in this process (0 if dynamo was never used)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# ---- progress ---------------------------------------------------------------------------------------
class Progress:
    """One line on stderr: done/total, a bar, what runs now, and the ETA from the mean time so far.
    Redrawn in place on a terminal; elsewhere (logs, CI) a line at every tenth of the work."""

    def __init__(self, total: int, label: str, stream=None, width: int = 24):
        self.total, self.label, self.width = total, label, width
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self._last_tenth = -1

    def update(self, what: str) -> None:
        """Call before each unit of work (`what` names it); `finish` at the end."""
        elapsed = time.perf_counter() - self.start
        eta = "?" if not self.done else _clock(elapsed / self.done * (self.total - self.done))
        filled = self.width * self.done // max(1, self.total)
        line = (f"{self.label} {self.done}/{self.total} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"ETA {eta}  {what}")
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
            self.stream.flush()
        elif 10 * self.done // max(1, self.total) > self._last_tenth:
            self._last_tenth = 10 * self.done // max(1, self.total)
            print(line, file=self.stream, flush=True)
        self.done += 1

    def finish(self) -> None:
        line = f"{self.label} {self.total}/{self.total} done in {_clock(time.perf_counter() - self.start)}"
        if self.tty:
            self.stream.write("\r" + line.ljust(150) + "\n")
        else:
            print(line, file=self.stream)
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ---- profile ----------------------------------------------------------------------------------------
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_weight_int8pack_mm")
ATTENTION_OPS = ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_attention_math",
                 "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_efficient_attention",
                 "aten::_scaled_dot_product_cudnn_attention", "aten::_flash_attention_forward")


def _category(key: str) -> str:
    if key in GEMM_OPS:
        return "gemm"
    if key in ATTENTION_OPS:
        return "attention"
    if key.startswith("## Call CompiledFxGraph"):
        return "compiled_graph"
    if "Dynamo" in key or "Pregraph" in key or "Torch-Compiled" in key or key.startswith("CompiledFunction"):
        return "compile_runtime"
    return "other_ops"


def profile_decode(fn, device: torch.device) -> dict:
    """Run `fn()` (a decode on prepared contexts; returns a DecodeResult) under torch.profiler (CPU
    activity: the host's view, which is where a tiny model's time goes) and split the wall time by the
    events' self time: GEMMs (GEMM_OPS: the weight reads), attention (ATTENTION_OPS), the compiled
    graphs' own code (torch.compile: its kernels, GEMMs included, run inside "## Call CompiledFxGraph"),
    the compile runtime (TorchDynamo's cache lookup = guard checks, pre-graph bytecode), every other op,
    and the rest of the wall time outside any event (Python: the decode loop, the HF modules' forward
    code, dispatch). The profiler's own per-op cost inflates the op shares; op calls per token show why."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        result = fn()
        synchronize(device)
        wall_us = (time.perf_counter() - t0) * 1e6
    self_us = {e.key: (e.self_cpu_time_total, e.count) for e in prof.key_averages()}
    total_self = sum(us for us, _ in self_us.values())
    share = dict.fromkeys(("gemm", "attention", "compiled_graph", "compile_runtime", "other_ops"), 0.0)
    for key, (us, _) in self_us.items():
        share[_category(key)] += us / wall_us
    share["outside_ops"] = max(0.0, wall_us - total_self) / wall_us
    calls = sum(c for _, c in self_us.values())
    tokens = max(1, len(result.tokens))
    top = sorted(self_us.items(), key=lambda kv: -kv[1][0])[:6]
    return {
        "tokens": len(result.tokens), "wall_ms": wall_us / 1000, "ms_per_token": wall_us / 1000 / tokens,
        "op_calls": calls, "op_calls_per_token": calls / tokens, "share": share,
        "top": [{"op": k, "self_ms": us / 1000, "calls": c, "share": us / wall_us} for k, (us, c) in top],
    }


# ---- environment -------------------------------------------------------------------------------------
def _git(*cmd) -> str | None:
    try:
        return subprocess.run(["git", *cmd], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device, load_start, load_end, user_env: dict) -> dict:
    """The machine and software of a report; `user_env`: OMP_NUM_THREADS and TORCHINDUCTOR_CACHE_DIR as the
    user set them (read at the start of the run: torch.compile sets the latter itself)."""
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    llc = None
    try:
        llc = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        pass
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cpus": os.cpu_count(), "last_level_cache": llc,
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": torch.get_num_threads(), "omp_num_threads": user_env.get("OMP_NUM_THREADS"),
        "inductor_cache_dir": user_env.get("TORCHINDUCTOR_CACHE_DIR"),
        "git_revision": _git("rev-parse", "HEAD"),
        "git_modified_files": dirty.splitlines() if dirty else [],
        "load_average_start": list(load_start) if load_start else None,
        "load_average_end": list(load_end) if load_end else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
