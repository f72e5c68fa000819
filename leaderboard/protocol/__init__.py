"""From a run's records to leaderboard rows: per-sample outcomes pooled over seeds, every figure with a 95%
bootstrap interval, one ranked row per defense per track.

The protocol (also in the README):

- **Rows.** One row per defense @ knob per track (scenario, backbone, split), pooled over seeds.
- **Uncertainty.** One crossed (seed x eval sample) bootstrap draw per track
  (:class:`~benchmark.measure.intervals.TrackResample`) is shared by every row, every family and the reference:
  paired Δutility, a family's maximum, the privacy score, the admission decision and the ranks are all computed
  replicate by replicate.
- **Leakage per family.** A row's leakage in a family (attribute, reconstruction, transfer) is that of the family's
  **representative**: the attack that leaks most on the attacker's own hold-out (a share of aux every attack
  trains without and also answers; the suite's ``holdout``), each on its scorer's fixed scale (attribute advantage
  over the task-label floor, SSIM gain over the task-class mean aux image, transfer advantage of the best —
  adaptive — unintended model); below a floor it is "at floor" (0). The choice reads no eval: the strongest attack
  on eval (a maximum over eval, biased upward and chosen by looking at it) is shown apart as "best on eval".
  Records without a hold-out fall back to the strongest on eval, and say so.
- **Privacy score** = the worse of the attribute and reconstruction families (the threats of split inference;
  the server is meant to learn the task, so transfer is its own column and view). Lower is better.
- **Admission** (which setting of a defense is ranked), by the suite's rule:

  - ``preregistered``: each defense names one setting per track before eval is scored (the suite's
    ``preregistered``); it is admitted when the lower 95% bound of its paired *validation* Δutility is at or above
    ``-budget``, so a setting near the budget is not admitted by luck. The row also says in what share of
    replicates its validation Δutility is within the budget. A re-run on other numerics (another CPU model or
    thread count) moves that lower bound about as much as re-drawing every seed would; a setting whose bound lies
    within that move's 97.5% quantile of the budget (:func:`~leaderboard.protocol.model.machine_factor` times the
    seed spread, or, when wider, :func:`~leaderboard.protocol.model.tail_band` of the track's pooled seed
    deviations, which carry the seeds that collapse; ``TableBuilder.machine_margin``) is *borderline*, admitted or
    not.
  - ``selection``: the defense's most private knob setting (its ``knob_more_private`` end) whose validation
    Δutility is within the budget. The choice is redone inside every bootstrap replicate; each row shows how
    often it was chosen, and a ranked row chosen in fewer than :data:`BORDERLINE` of them is *borderline*.

  Eval is read only to score; every setting's row stays visible as the privacy-utility curve.
- **Matched utility.** A second view: each defense's privacy score interpolated on its privacy-utility curve at
  validation Δutility = ``-budget`` (per replicate, so with an interval).
- **Threat model.** A defense that denies attackers its client weights is ranked only in the black-box view
  (attacks that need no client weights), never in the main view, so opting out cannot buy a better rank.
- **Ranks.** A row's rank is that of its point estimate; its rank interval is the central 95% of its rank over the
  replicates (in the selection rule, the rank of whatever setting the defense chose in that replicate).
- **Client cost.** Every row's client MACs, parameters and bytes sent as a ratio to the reference's on the same
  track; MACs and parameters as deployed on the suite's ``deployment`` backbone where the track has one (the tiny
  track backbone says little about a real client), else on the track. A suite's ``cost_budget`` (e.g.
  ``{client_macs: 1.5}``) is a second admission condition: a setting whose ratio exceeds it is not admitted. The
  **Pareto view** lists the ranked rows that no other ranked row beats on both privacy (its 95% interval entirely
  below) and client MACs (a ratio lower by more than 1%).
- **Sanity guards.** A track whose reference utility interval reaches down to the task's majority rate is
  flagged and not ranked. An attack whose leakage interval on the reference reaches 0 is flagged as weak on the
  track and not used for the secondary "relative to the reference" view.

The package: :mod:`~leaderboard.protocol.model` (cells, attack summaries, rows, tracks and the protocol's
constants) and :mod:`~leaderboard.protocol.builder` (:class:`TableBuilder`, which computes every figure above).
"""

from leaderboard.protocol.builder import TableBuilder, matched_privacy, representative
from leaderboard.protocol.model import (
    ADMISSION_RULES,
    ADMISSION_Z,
    BORDERLINE,
    COST,
    FAMILIES,
    PARETO_COST,
    PRIVACY_FAMILIES,
    VIEWS,
    AttackSummary,
    CellData,
    Matched,
    Row,
    Track,
    admission_text,
    machine_factor,
    tail_band,
)

__all__ = [
    "ADMISSION_RULES", "ADMISSION_Z", "BORDERLINE", "COST", "FAMILIES", "PARETO_COST", "PRIVACY_FAMILIES", "VIEWS",
    "AttackSummary", "CellData", "Matched", "Row", "TableBuilder", "Track", "admission_text", "machine_factor",
    "matched_privacy", "representative", "tail_band",
]
