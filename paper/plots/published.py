"""The paper's published numbers (../shared/hippo-method.md, "What the paper reports"), drawn beside
ours where a figure has a counterpart. Model pairs, frame counts and hardware were not published."""

MAX_SPEEDUP_OVER_AR = 3.51  # "up to 3.51x over autoregressive decoding"
HIPPO_SPEEDUP = {"VideoMME": 3.27, "VDC": 2.31, "MLVU": 2.78}
HIPPO_MAT = {"VDC": 8.05, "MLVU": 12.42, "LVBench": 12.12}
SPECVLM_SPEEDUP = {"VideoMME": 2.24}
SPECVLM_MAT = {"VDC": 4.01, "MLVU": 4.00, "LVBench": 4.2}
PEARL_MAX_SPEEDUP_OVER_AR = 4.43  # text-only PEARL
PEARL_SPEEDUP_OVER_SD = 1.50
