"""Device names checked against this machine: torch alone, so that a process can refuse a missing
device before it pays for importing transformers (the draft worker's first word)."""

from __future__ import annotations

import torch


def check_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device that exists on this machine, else a ConfigError saying what does."""
    from hippo.errors import ConfigError

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device!r} is not a device name: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ConfigError(f"--device {device}: this machine has no usable CUDA device (torch {torch.__version__}, "
                              f"{build}); use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    elif dev.type != "cpu":
        probe = getattr(torch, dev.type, None)
        if probe is None or not getattr(probe, "is_available", lambda: False)():
            raise ConfigError(f"--device {device}: no {dev.type} device on this machine; use --device cpu")
    return dev
