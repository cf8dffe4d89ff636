"""Serving engines audited as the users deploy them: their outputs recorded as rows (docs/VERIFICATION.md,
'Recorded outputs') and checked by `hippo verify --recorded`. vLLM first (its CPU build, `nox -s vllm`)."""
