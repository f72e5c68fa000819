"""The two extension points: :class:`Defense` and :class:`Attack`, and the :class:`Target` an attack sees.

A defense is an ``nn.Module`` holding everything it trains; the runner caches its ``state_dict`` (plus
:meth:`Defense.structure` for defenses that change the architecture) by content hash. An attack never gets the
defense object: it gets a :class:`Target`, which hands out only what the attack's declared ``requires`` allow,
and it returns *predictions* (attributes, images, or unintended models' labels) that the harness scores against
ground truth the attack never sees.

Writing a defense::

    @register_defense("my_defense")
    class MyDefense(Defense):
        Config = MyConfig            # frozen dataclass with help text; must have the knob field
        knob = "strength"
        card = MethodCard(...)
        def fit(self, data, trainer): ...          # train self.client / self.server / own parts
        def release(self, x): ...                  # what leaves the client
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from benchmark.api.cards import MethodCard
from benchmark.core.errors import AccessError, NotApplicable
from benchmark.data.types import ScenarioData, ScenarioInfo, Split, TensorSplit
from benchmark.models.backbones import BackboneSpec, build_split, fresh_model, fresh_server
from benchmark.models.trainer import ParamGroup, TrainConfig, Trainer, place


class ReleaseKind(str, enum.Enum):
    ACTIVATION = "activation"  # intermediate activations consumed by a server tail
    IMAGE = "image"            # an image-shaped tensor consumed by a whole classifier


class Access(str, enum.Enum):
    """What an attack may use. The eval releases and the architecture are always available."""

    AUX_PAIRS = "aux_pairs"              # (x, release(x), labels) on the attacker's aux split
    WHITE_BOX = "white_box_client"       # a differentiable release function: client weights + defense
    CLEAN_DATA = "clean_data"            # clean labelled images (train + aux) to train its own models
    SERVER_MODEL = "server_model"        # a copy of the designated model's trained weights (what the server holds)


#: the accesses that give an attack data of the client's distribution: an attack declaring none of them is
#: data-free, the zero-data end of the attacker-knowledge axis (a suite's ``aux_fraction`` leaves it out)
DATA_ACCESS = frozenset({Access.AUX_PAIRS, Access.CLEAN_DATA})


def data_free(requires: frozenset[Access] | set[Access] | list[str]) -> bool:
    """Whether an attack that declares ``requires`` (accesses or their values, as records store them) sees no data
    of the client's distribution: only the releases, the public architecture and, at most, weights."""
    values = {a.value if isinstance(a, Access) else str(a) for a in requires}
    return not values & {a.value for a in DATA_ACCESS}


def defense_row(name: str, config: Any) -> str:
    """The leaderboard row of a defense setting as records store it (its registered ``name`` and config dict):
    :meth:`Defense.row_name` when the defense is registered here, else the name as it is."""
    from benchmark.core.registry import DEFENSES

    return DEFENSES.get(name).row_name(config or {}) if name in DEFENSES else name


class Defense(nn.Module, ABC):
    """Base class of every defense (and baseline).

    Class attributes:
        Config: frozen dataclass of hyperparameters. Must contain a ``train`` field of type
            :class:`~benchmark.models.trainer.TrainConfig` or inherit :class:`DefenseConfig`.
        knob: the Config field that trades privacy for utility.
        card: the :class:`~benchmark.api.cards.MethodCard`.
        version: bump to invalidate cached trained models after a behaviour change.
        release_kind: activation or image.
        white_box_client: whether the threat model gives attackers the client weights. A defense that denies them
            is still attacked by every black-box attack and ranked in the leaderboard's black-box view only.
        stochastic_release: whether releasing the same input twice gives different results (random masks);
            learning-based attackers then query the client afresh for every training batch, as the server did,
            and utility and leakage are averaged over the suite's ``release_draws``.
        knob_more_private: which end of the knob hides more ("higher" or "lower").
        knob_grid: the knob settings of its privacy-utility curve (ascending), shown by ``list defenses -v``.

    Instance attributes set by the base constructor: ``config``, ``backbone``, ``info``, ``seed`` and, unless
    :meth:`build` is overridden, ``split`` (a :class:`~benchmark.models.backbones.SplitModel`).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    knob: ClassVar[str]
    card: ClassVar[MethodCard]
    version: ClassVar[str] = "1"
    release_kind: ClassVar[ReleaseKind] = ReleaseKind.ACTIVATION
    white_box_client: ClassVar[bool] = True
    stochastic_release: ClassVar[bool] = False
    #: which end of the knob is the more private one ("higher": raising the knob hides more); the leaderboard's
    #: defender picks, per track, the most private knob setting whose *validation* utility is within the budget
    knob_more_private: ClassVar[Literal["higher", "lower"]] = "higher"
    #: the knob settings that trace the defense's privacy-utility curve (ascending), what a suite sweeps when it has
    #: no reason to choose others; shown by ``splitbench list defenses -v`` and checked by the contract tests
    knob_grid: ClassVar[tuple[float, ...]] = ()
    #: config overrides that make fit() take seconds on the tiny test data (used by the contract tests)
    smoke_config: ClassVar[dict[str, Any]] = {}
    #: Config fields that make a different method rather than a different strength (e.g. which filter network a
    #: pruning defense trains): a setting whose value of one of them is not the default is a leaderboard row of its
    #: own, ``NAME[field=value]`` (:meth:`row_name`), so that one run or one site can rank both variants
    variants: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def row_name(cls, config: Any) -> str:
        """The leaderboard row a setting of this defense belongs to: its name, followed by ``[field=value,...]``
        for every :attr:`variants` field whose value in ``config`` (a Config or its dict, as records store it) is not
        the default."""
        defaults = {f.name: f.default for f in dataclasses.fields(cls.Config)}
        get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
        changed = [f"{k}={get(k)}" for k in cls.variants if get(k, defaults.get(k)) != defaults.get(k)]
        return f"{cls.name}[{','.join(changed)}]" if changed else cls.name

    def __init__(self, config: Any, backbone: BackboneSpec, info: ScenarioInfo, seed: int = 0):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.info = info
        self.seed = seed
        self.build()

    # -- construction ------------------------------------------------------------------------------------
    def build(self) -> None:
        """Create the modules (deterministically from ``self.seed``). Default: the split backbone."""
        self.split = build_split(self.backbone, self.info.num_task_classes, self.info.image_size, self.seed)

    @property
    def client(self) -> nn.Module:
        return self.split.client

    @property
    def server(self) -> nn.Module:
        return self.split.server

    @property
    def knob_value(self) -> float:
        return float(getattr(self.config, self.knob))

    def probe_client(self) -> Tensor:
        """The client's output for one all-zero image, in eval mode and without gradient (every module's mode is
        restored, no running statistic moves): what parts sized from the release (heads, proxies, buffers) read."""
        modes = [(m, m.training) for m in self.client.modules()]
        self.client.eval()
        try:
            with torch.no_grad():
                s = self.info.image_size
                return self.client(torch.zeros(1, self.info.channels, s, s))
        finally:
            for m, mode in modes:
                m.training = mode

    # -- the method --------------------------------------------------------------------------------------
    @abstractmethod
    def fit(self, data: ScenarioData, trainer: Trainer) -> None:
        """Train on ``data.train`` (and choose anything it must choose, e.g. an early-stopping epoch, on
        ``data.val``); never read ``aux`` or ``eval``."""

    def release(self, x: Tensor) -> Tensor:
        """What leaves the client for a batch of normalized images."""
        return self.client(x)

    def predict(self, released: Tensor) -> Tensor:
        """The designated model's task logits on a release."""
        return self.server(released)

    def sent(self, x: Tensor) -> Tensor:
        """What the client device computes and transmits for ``x``: the part whose cost (MACs, parameters,
        latency) is the client's. Default: :meth:`release` itself.

        A defense whose release is a fixed, public function of a smaller message overrides it together with
        :meth:`received` (e.g. a decoder the server can run): then ``release(x)`` equals
        ``received(sent(x))`` and the decoding is charged to the server, not the client."""
        return self.release(x)

    def received(self, sent: Tensor) -> Tensor:
        """The release the server forms from what :meth:`sent` transmitted. Default: the message as it is."""
        return sent

    def serve(self, sent: Tensor) -> Tensor:
        """The server's whole side for a message from :meth:`sent`: its task logits on the release it forms,
        ``predict(received(sent))``. What the server's latency is measured on; not for overriding."""
        return self.predict(self.received(sent))

    def white_box_release(self, x: Tensor, observed: Tensor) -> Tensor:
        """A differentiable release of ``x`` for white-box attackers, who also see the ``observed`` release
        (e.g. which channels were sent). Default: :meth:`release`."""
        return self.release(x)

    def white_box_draws(self, x: Tensor, observed: Tensor, draws: int) -> list[Tensor]:
        """``draws`` differentiable white-box releases of ``x``, each with its own random draw: what an attacker's
        expectation over transformation averages. Default: :meth:`white_box_release` called ``draws`` times.

        A defense whose randomness comes after a deterministic client (noise added to the activations, a sampled
        bottleneck) overrides it to run the client once and draw only the noise ``draws`` times, in the same
        order as that many calls would: the same releases and, through autograd's sum at the shared client
        output, the same gradients up to float rounding, at one client pass instead of ``draws``."""
        return [self.white_box_release(x, observed) for _ in range(draws)]

    def undefended_release(self, x: Tensor) -> Tensor:
        """What the client would send for ``x`` without the defense's release-time transformation (channel
        masks, noise): the clean reference representation on which cross-model attackers train their
        unintended models. Default: the client network's output."""
        return self.client(x)

    def payload_bytes(self, released: Tensor) -> Tensor:
        """Bytes sent per sample for a batch of releases (what :meth:`sent` transmits for them). Default: the
        dense tensor as it is."""
        per = released[0].numel() * released.element_size()
        return torch.full((released.shape[0],), float(per))

    # -- what consumes the release ------------------------------------------------------------------------
    def tail_spec(self) -> BackboneSpec:
        """The backbone and split whose server part consumes this defense's release."""
        return self.backbone

    def fresh_tail(self, num_classes: int, seed: int) -> nn.Module:
        """A newly initialised network of the designated architecture that reads a release into
        ``num_classes`` logits (what a learning-based attacker would train)."""
        if self.release_kind == ReleaseKind.IMAGE:
            return fresh_model(self.backbone.name, num_classes, self.info.image_size, seed)
        return fresh_server(self.tail_spec(), num_classes, self.info.image_size, seed)

    def designated_model(self) -> nn.Module:
        """The model the release is meant for (a server tail, or a frozen classifier for image releases)."""
        return self.server

    # -- architecture changes (pruning) ----------------------------------------------------------------------
    def structure(self) -> dict[str, Any]:
        """JSON-able description of architecture changes made by :meth:`fit` (e.g. kept channels)."""
        return {}

    def restore_structure(self, structure: dict[str, Any]) -> None:
        """Re-apply :meth:`structure` to a freshly built defense before its weights are loaded."""
        if structure:
            raise NotImplementedError(f"{type(self).__name__} recorded a structure but cannot restore it")

    # -- the same defense deployed on another backbone (cost only) -------------------------------------------------
    def deployed_on(self, backbone: BackboneSpec, image_size: int) -> Defense:
        """This defense as it would be deployed on ``backbone`` at ``image_size`` px: the same class, config and
        knob, untrained weights, and the architecture changes this model's :meth:`fit` made, carried over by the
        rule the fit follows (:meth:`carry_structure`). Its outputs mean nothing; what it costs to run (latency,
        multiply-accumulates, parameters) is what the defended client would cost there. Raises
        :class:`NotApplicable` when the defense cannot say how its fitted structure maps onto another backbone."""
        info = dataclasses.replace(self.info, image_size=image_size)
        copy = type(self)(self.config, backbone, info, self.seed)
        copy.carry_structure(self)
        return copy.freeze()

    def carry_structure(self, fitted: Defense) -> None:
        """Give this freshly built defense the *cost* of the architecture changes ``fitted``'s fit made on its own
        backbone (e.g. the same share of channels removed from each prunable layer; which channels does not
        change the cost). Default: nothing to carry when ``fitted`` changed no structure; a defense that records
        a :meth:`structure` overrides this or is reported as not deployable."""
        if fitted.structure():
            raise NotApplicable(f"{type(self).__name__} changes the architecture when it is fitted but does not say "
                                "how to carry that onto another backbone (override carry_structure)")

    def freeze(self) -> Defense:
        """Eval mode and no parameter gradients: the frozen defended model that attacks face."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    # -- helpers for subclasses ----------------------------------------------------------------------------
    def train_config(self) -> TrainConfig:
        return getattr(self.config, "train", TrainConfig())

    def task_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits.float(), y)


@dataclasses.dataclass(frozen=True)
class DefenseConfig:
    """Base for defense configs: the shared training settings (a suite's ``train`` block fills them)."""

    train: TrainConfig = dataclasses.field(default_factory=TrainConfig,
                                           metadata={"help": "shared optimisation settings"})


# ------------------------------------------------------------------------------------------------------------
# Attacks
# ------------------------------------------------------------------------------------------------------------
class AttackKind(str, enum.Enum):
    ATTRIBUTE = "attribute"            # predicts the sensitive attribute of each eval sample
    RECONSTRUCTION = "reconstruction"  # reconstructs each eval image
    TRANSFER = "transfer"              # unintended models predict the task from the release


@dataclasses.dataclass
class AttackOutput:
    """What an attack returns; the harness scores it.

    Attributes:
        index: which eval samples (positions in the eval split) the predictions are for.
        attributes: ATTRIBUTE attacks: predicted sensitive class per sample.
        images: RECONSTRUCTION attacks: reconstructions in [0, 1], [N, C, H, W].
        task_predictions: TRANSFER attacks: {unintended model name: predicted task class per sample}.
        extra_task_predictions: TRANSFER attacks: a second set (e.g. adaptive, fine-tuned models), reported
            separately under ``adaptive_``.
        budget: what the attack spent (steps, epochs, aux size, ...), recorded with the result.
        metrics: extra attack-side numbers (losses), recorded as they are.
    """

    index: Tensor
    attributes: Tensor | None = None
    images: Tensor | None = None
    task_predictions: dict[str, Tensor] | None = None
    extra_task_predictions: dict[str, Tensor] | None = None
    budget: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


class Attack(ABC):
    """Base class of every attack. Subclasses set ``Config``, ``card``, ``kind``, ``requires`` and ``run``."""

    name: ClassVar[str]
    Config: ClassVar[type]
    card: ClassVar[MethodCard]
    kind: ClassVar[AttackKind]
    requires: ClassVar[frozenset[Access]] = frozenset()
    version: ClassVar[str] = "1"
    #: config overrides that make run() take seconds on the tiny test data (used by the contract tests)
    smoke_config: ClassVar[dict[str, Any]] = {}
    #: config field -> candidate values tried when a suite tunes the attack on the attacker's own aux data
    #: (see :mod:`benchmark.suites.tuning`); empty = the attack runs as configured
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __init__(self, config: Any, seed: int = 0):
        self.config = config
        self.seed = seed

    def applicable(self, target: Target) -> str | None:
        """Return a reason if the attack cannot apply to ``target`` (checked before :meth:`run`)."""
        if self.kind == AttackKind.ATTRIBUTE and not target.info.has_sensitive:
            return f"scenario {target.info.name!r} has no sensitive attribute"
        return None

    @abstractmethod
    def run(self, target: Target, trainer: Trainer) -> AttackOutput:
        """Attack the frozen defended model."""


@dataclasses.dataclass
class AuxSet:
    """The attacker's auxiliary data: clean inputs, their releases, and their labels."""

    x: Tensor          # normalized inputs
    images: Tensor     # the same inputs in [0, 1]
    released: Tensor
    task: Tensor
    sensitive: Tensor | None


class WhiteBox:
    """Differentiable access to the client and the defense's release function (functions only: the defense
    object itself is not handed out)."""

    def __init__(self, release, undefended, draws):
        self._release = release
        self._undefended = undefended
        self._draws = draws

    def release(self, x: Tensor, observed: Tensor) -> Tensor:
        """A differentiable release of ``x`` given the ``observed`` release (e.g. which channels were sent)."""
        return self._release(x, observed)

    def draws(self, x: Tensor, observed: Tensor, n: int) -> list[Tensor]:
        """``n`` differentiable releases of ``x``, each with its own random draw (for expectation over
        transformation); the same as ``n`` calls of :meth:`release`, computed as the defense finds cheapest."""
        return self._draws(x, observed, n)

    def undefended_release(self, x: Tensor) -> Tensor:
        """The client's output for ``x`` before the defense's release-time transformation."""
        return self._undefended(x)


class Target:
    """The frozen defended model as an attack may see it.

    Always available: ``info``, ``release_kind``, ``stochastic``, ``backbone`` (the public architecture),
    :meth:`eval_releases` (what the server received for the samples the attack is scored on), :meth:`fresh_tail`.
    Behind :class:`Access` flags: :meth:`aux` / :meth:`release_of` / :meth:`aux_training_set` (AUX_PAIRS),
    :meth:`white_box` (WHITE_BOX), :meth:`clean_data` (CLEAN_DATA: the attacker's own clean labelled aux images),
    :meth:`server_model` (SERVER_MODEL: a copy of the trained designated model, which the honest-but-curious server
    holds anyway: the server tail for activation releases, the frozen classifier for image releases; never the
    client or any other part of the defense). Asking for more than the attack declared raises
    :class:`~benchmark.core.errors.AccessError`.

    A target holds no path to the eval images or labels (the harness computes the eval releases before it builds
    the target and scores the attack's answers itself), to the defender's train split, or to the defense object
    (it keeps the defense's release functions and its designated model, which it only ever hands out as a copy).

    Args:
        defense: the frozen defended model (kept out of reach: only its release functions are used, and its
            designated model, handed out as a copy under SERVER_MODEL).
        access: what the attack declared in ``requires``.
        trainer: device, precision and seeds.
        releases: the releases to attack, ``[rows, ...]`` (eval samples, repeated once per release draw for
            stochastic defenses); an attack answers for every row, in order.
        aux: the attacker's clean labelled split (None when there is none, e.g. in tests of release-only attacks).
        info: the scenario's public description.
        backbone: the public architecture and split.
        cache: the run's model cache (for models that do not depend on the defense, e.g. a learned prior).
        seed: the attack's seed.
    """

    def __init__(self, defense: Defense, access: frozenset[Access], trainer: Trainer, releases: Tensor,
                 aux: Split | None, info: ScenarioInfo, backbone: BackboneSpec, cache: Any = None, seed: int = 0):
        self._access = frozenset(access)
        self._trainer = trainer
        self._releases = releases
        self._aux_split = aux
        self._release = defense.release
        self._white_box_allowed = defense.white_box_client
        self._white_box = WhiteBox(defense.white_box_release, defense.undefended_release, defense.white_box_draws)
        self._fresh_tail = defense.fresh_tail
        self._designated = defense.designated_model  # called only when an attack asks for it
        self._defense_name = getattr(defense, "name", type(defense).__name__)
        self.info = info
        self.release_kind = defense.release_kind
        self.stochastic = defense.stochastic_release
        self.backbone = backbone
        self.cache = cache
        self.seed = seed
        self._aux_cache: AuxSet | None = None

    def _need(self, what: Access) -> None:
        if what not in self._access:
            raise AccessError(f"attack asked for {what.value!r} but did not declare it in `requires`")

    @property
    def num_eval(self) -> int:
        """How many releases the attack must answer for (rows of :meth:`eval_releases`)."""
        return len(self._releases)

    def eval_releases(self, limit: int | None = None) -> Tensor:
        """The releases to attack (what the server received), ``[num_eval, ...]`` (the first ``limit`` rows)."""
        return self._releases if limit is None else self._releases[:limit]

    def _aux_split_or_fail(self) -> Split:
        if self._aux_split is None:
            raise AccessError("this target has no auxiliary data")
        return self._aux_split

    def aux(self) -> AuxSet:
        self._need(Access.AUX_PAIRS)
        if self._aux_cache is None:
            sp = self._aux_split_or_fail()
            x = self.info.normalize(sp.images)
            released = self._trainer.map(lambda b: self._release(b.x), sp)
            self._aux_cache = AuxSet(x, sp.images.float() / 255.0, released, sp.task, sp.sensitive)
        return self._aux_cache

    def white_box(self) -> WhiteBox:
        self._need(Access.WHITE_BOX)
        if not self._white_box_allowed:
            raise AccessError(f"defense {self._defense_name!r} does not give attackers its client weights")
        return self._white_box

    def clean_data(self) -> Split:
        """The attacker's clean labelled aux images, for attackers who train their own models."""
        self._need(Access.CLEAN_DATA)
        return self._aux_split_or_fail()

    def aux_training_set(self, labels: Tensor, max_aux: int | None = None) -> tuple[TensorSplit, Any]:
        """A training set of (input, label) on aux plus a function turning a batch's ``x`` into releases.

        For deterministic defenses the releases are computed once; for stochastic ones every batch is released
        afresh (a new random mask each time, as the defense's own server saw during training).
        """
        aux = self.aux()
        if self.stochastic:
            return TensorSplit(aux.x, labels).subset(max_aux), self.release_of
        return TensorSplit(aux.released, labels).subset(max_aux), (lambda z: z)

    def release_of(self, x: Tensor) -> Tensor:
        """The defense's release of attacker-chosen inputs (the query access that AUX_PAIRS implies)."""
        self._need(Access.AUX_PAIRS)
        with torch.no_grad(), self._trainer.autocast():
            return self._release(x).float()

    def fresh_tail(self, num_classes: int, seed: int | None = None) -> nn.Module:
        """A new network of the architecture that consumes the release (architecture knowledge is public)."""
        seed = self.seed if seed is None else seed
        return self._fresh_tail(num_classes, seed).to(self._trainer.device)

    def server_model(self) -> nn.Module:
        """A copy of the designated model with its trained weights: what the server runs on the release (the
        server tail for activation releases, the frozen classifier for image-shaped ones), SERVER_MODEL access.

        Every call returns a fresh deep copy that shares no tensor storage with the defense (changing or training
        it leaves the defended model as it was), on the trainer's device in its memory layout, in eval mode (as
        the server runs it; :meth:`Trainer.fit` switches modules it trains to train mode), with every parameter
        trainable (``requires_grad``). Only the designated model is copied, never the client or anything else of
        the defense."""
        self._need(Access.SERVER_MODEL)
        model = copy.deepcopy(self._designated())
        for p in model.parameters():
            p.requires_grad_(True)
        return place(model, self._trainer.device).eval()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.info.channels, self.info.image_size, self.info.image_size)


def train_task(defense: Defense, data: ScenarioData, trainer: Trainer, release, modules: list[nn.Module],
               desc: str, penalty: Any = None, weight: float = 0.0) -> list[dict[str, float]]:
    """Train ``modules`` end to end on the task loss of ``defense.predict(release(x))``.

    The common case of a defense whose client and server simply learn the task through its release. With
    ``penalty(batch, z) -> Tensor`` and a ``weight`` other than 0, the loss is ``task + weight * penalty`` on the
    batch's release ``z`` (the penalty is logged as ``penalty``); with weight 0 the penalty is never computed, so
    the training is exactly the plain task training's.
    """
    tc = defense.train_config()
    params = [p for m in modules for p in m.parameters()]
    group = {"model": ParamGroup(params, tc.lr, tc.weight_decay, tc.optimizer)}

    def step(batch):
        z = release(batch.x)
        task = defense.task_loss(defense.predict(z), batch.y)
        if penalty is None or weight == 0:
            return {"model": task}
        extra = penalty(batch, z)
        return {"model": task + weight * extra, "penalty": extra.detach()}

    return trainer.fit(group, step, data.train, tc.epochs, tc.batch_size, modules=modules, desc=desc)
