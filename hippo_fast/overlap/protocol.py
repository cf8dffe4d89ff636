"""The protocol of two-process PEARL, in one place: the messages of a decode, the jobs around it, and
every timeout. link.py carries them; processes.py (the target's side) and worker.py (the draft's) speak
them; the decode halves are hippo_fast/decoding/parallel_split.py.

Per decode, fixed-shape tensors (one BLOCK and one DECISION per round):

    target -> draft  START     [token 0, done]                        once per decode
    draft -> target  BLOCK     gamma token ids (+ when the draft samples: q of each drawn token, gamma float64)
    target -> draft  ROW?      [ROW, candidate row, 0...]  only on a rejection of a sampled draft's token:
    draft -> target  q ROW     that candidate's q row (V float64), for the residual max(p - q, 0)
    target -> draft  DECISION  [DECISION, n, draft rows still valid, replaced index, replaced token, rejected, done]

What crosses per round is what the accept / residual rule reads: q(x) of each candidate, and the one q
row of a rejected candidate (the residual of the first refusal is the only one drawn). Sending every q
row would move gamma x V float64 a round (about 6 MB for Qwen's vocabulary at gamma 5).

The target decides acceptance alone (it holds p and the ACCEPT / RESIDUAL uniforms); the draft draws
with the DRAFT uniforms of the same keyed table (hippo_fast/sampling.py). No random state crosses.

Around the decode, pickled objects (target -> worker, answered by the worker):

    ("load", id, (path, dtype, device))   load that draft now (cached). Replies ("loaded", id, facts).
    ("video", id, DraftJob)   load the draft (cached per folder, dtype, device), prepare its inputs from the
                              decoded frames the job carries and run its vision encoder at once (it does
                              not need the kept indices: this is the prefill overlap); then wait for
                              ("kept", id, indices) and prefill the pruned context into a static cache.
                              Replies ("ready", id, facts), facts naming the draft's vocabulary by its
                              hash (hippo.pairing.vocabulary_hash), not the whole map.
    ("table", id, context)    a DecodeContext sent whole (the audit's table models). Replies ("ready", id, {}).
    ("decode", id, cfg, V)    the draft half of two-process PEARL; at its end the worker sends its forward
                              count and its lane of the timeline.
    ("step_time", id, token)  the median one-token forward of that context, seconds (`--gamma auto`).
    ("release", id), ("stop",)
A job that fails replies ("error", id, message) and the worker keeps serving.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---- the per-round messages ----------------------------------------------------------------------------
DECISION, ROW = 0, 1  # the kinds of the target's messages after a BLOCK
DECISION_FIELDS = ("kind", "n", "valid", "replaced_index", "replaced_token", "rejected", "done")  # ROW: "n" = row

# ---- timeouts --------------------------------------------------------------------------------------------
START_TIMEOUT_S = 120.0  # a spawned worker's first word (alive, or why not)
DEFAULT_TIMEOUT_S = 300.0  # the process group's, and a watched per-round receive's
# How long a worker waits for its next job. A gloo operation's timeout is its process group's, so a
# worker that joined with the requests' 300 s left after five idle minutes (exit status 1, found
# 2026-12-02: a request after a pause failed on a dead worker). It waits as long as this process holds
# it and ends when this side does: the stop message, or the link closing when this process dies.
WORKER_IDLE_TIMEOUT_S = 7 * 24 * 3600.0
POLL_S = 50e-6  # a watched receive's sleep between polls: far below a decode round


# ---- the jobs ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DraftJob:
    """Everything the draft's process needs to build its context for one request."""

    path: str
    dtype: str
    device: str
    clip: object  # hippo.video.VideoClip: the decoded frames travel (rendered clips have no file to read)
    prompt: str
    positions: str
    capacity: int
    compile: bool = False

