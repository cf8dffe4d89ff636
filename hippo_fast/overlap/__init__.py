"""Draft and target at the same time: two processes (processes.py, torch.distributed), or two CUDA
streams in one process (lanes.py). The schedule they run is PEARL's (hippo_fast/decoding/parallel.py),
unchanged; only where and when its two halves execute differs."""
