"""``split_deeper``: no defense, the client cut ``extra_depth`` feature stages past the suite's split.

Not a method from a paper but the control every depth-adding defense needs: deeper features are more task-specific
and harder to invert (He, Zhang, Lee 2019 measure it split by split), so a defense that moves the cut deeper (PATROL
does, by its knob) must beat this baseline at the same depth before its other mechanisms can claim any gain.

The model is the suite's backbone trained end to end exactly as ``no_pruning`` (so ``extra_depth=0`` *is*
``no_pruning``: same initialisation, same data order, same weights); only where it is cut moves. The release is the
deeper stage's output, so :meth:`tail_spec` names the deeper split and attackers' fresh tails match it; the deployed
client is costed at the deeper cut (it computes more, unlike PATROL's, which is pruned back to the original client's
budget).
"""

from __future__ import annotations

import dataclasses

from benchmark.api import MethodCard, register_defense
from benchmark.api.contract import Defense, DefenseConfig, train_task
from benchmark.core.fields import field
from benchmark.models.backbones import BackboneSpec, SplitModel, create_model, cut_model, deeper_spec


@dataclasses.dataclass(frozen=True)
class SplitDeeperConfig(DefenseConfig):
    extra_depth: int = field(1, "the knob: feature stages the client runs past the suite's split (0 = no_pruning)")

    def validate(self) -> None:
        if self.extra_depth < 0:
            raise ValueError(f"extra_depth must be >= 0, got {self.extra_depth}")


@register_defense("split_deeper")
class SplitDeeper(Defense):
    Config = SplitDeeperConfig
    knob = "extra_depth"
    knob_grid = (0, 1, 2)
    card = MethodCard(
        paper="Control baseline (no defense, a deeper cut); the depth effect itself is measured by He, Zhang, Lee: "
              "Model Inversion Attacks Against Collaborative Inference (ACSAC 2019)",
        year=2019,
        url="https://doi.org/10.1145/3359789.3359824",
        threat_model="honest-but-curious server sees the raw activations of a deeper client",
        knob="extra_depth: feature stages past the suite's split; higher = deeper, more task-specific release, "
             "more client compute",
        inferred=("not a published defense: the control that separates a depth-adding defense's gain (PATROL's) "
                  "from the depth it adds",
                  "stages are the backbone's timm feature stages (layer1 -> layer2 -> ...); a backbone with no stage "
                  "that deep is not applicable",
                  "trained end to end on the task exactly as no_pruning (extra_depth=0 gives no_pruning's weights)"),
        code="",
    )

    def build(self) -> None:
        info, spec = self.info, self.backbone
        model = create_model(spec.name, info.num_task_classes, info.image_size, spec.pretrained, self.seed)
        self.deep: BackboneSpec = deeper_spec(model, spec, self.config.extra_depth, "split_deeper")
        client, server = cut_model(model, self.deep.split, spec.name)
        self.split = SplitModel(client, server, self.deep, info.num_task_classes, info.image_size)

    def tail_spec(self) -> BackboneSpec:
        return self.deep

    def fit(self, data, trainer):
        train_task(self, data, trainer, self.release, [self.client, self.server], "split_deeper")
