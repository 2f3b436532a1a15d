"""The seven plugin kinds as small base classes.

A plugin subclasses one of these, sets ``name`` (and the class docstring's first line,
which ``fedbench plugins`` shows), and takes its hyper-parameters as keyword arguments
of ``__init__`` with defaults, so a run config can set them by name.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from fedbench.harness.data import Example, PreferencePair
from fedbench.harness.errors import FedbenchError, LayoutRefusal, MethodRefusal

if TYPE_CHECKING:
    import datasets
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

    from fedbench.harness.likelihood import SequenceLogp

Params = dict[str, torch.Tensor]
"""Trainable (LoRA) tensors by parameter name: what travels between server and clients."""

DataForm = Literal["paired", "unpaired"]

Regime = Literal["federated", "centralized", "local"]
"""How an aggregator's cells train: federated, or one of the baselines a federated cell is read against
(harness/baselines.py): ``centralized`` (every example pooled on one client) or ``local`` (each client alone)."""


def describe(plugin: type) -> str:
    """First line of a plugin's docstring: the one-line description users see."""
    doc = (plugin.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def needs(plugin: type) -> str:
    """What a method plugin needs to train, as ``fedbench plugins`` shows it (pairs, a reference model, a batch above 1);
    '' for the other kinds."""
    if not (isinstance(plugin, type) and issubclass(plugin, Method)):
        return ""
    parts = ["pairs" if plugin.data_form == "paired" else "single responses"]
    parts.append("reference model" if plugin.needs_reference else "no reference")
    if plugin.min_batch > 1:
        parts.append(f"batch >= {plugin.min_batch}")
    return ", ".join(parts)


def variant_label(method: type[Method], layout: type[Layout]) -> str:
    """A method x layout's leaderboard column for objectives outside the study's three (DPO, KTOO, KTOR).

    A paired objective trains on intact pairs, so where the pairs came from adds nothing to its name: ``IPO``,
    ``SimPO``. An unpaired one carries the layout, as KTOO and KTOR do: ``APO0-U/O``, ``APO0-U/R``. A layout with
    settings (``partial``'s ``paired_fraction``) is named without them: the caller adds them where it has the spec.
    """
    name = method.display or method.name.upper()
    if method.data_form == "paired" and layout.name == "original":
        return name
    return f"{name}/{layout.suffix or layout.name}"


@dataclass(frozen=True)
class LocalTrainingArgs:
    """What one client's local training needs to know, fixed by the run spec and the round."""

    output_dir: str
    steps: int
    batch_size: int
    grad_accum: int
    learning_rate: float
    max_length: int
    seed: int
    bf16: bool = False
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory (TRL's configs default to on; fedbench decides per run)."""


class Method(ABC):
    """Base class of preference-optimisation methods (objectives).

    What an objective needs is class-level data, so ``fedbench plugins`` shows it and a run refuses a
    combination that cannot work before anything trains: ``data_form`` (``paired`` needs both answers of a
    pair on one client), :attr:`needs_reference` and :attr:`min_batch`. An instance whose parameters change
    a need (KTO's ``loss_type``) sets its own value of ``ref_columns`` / ``min_batch`` in ``__init__``.
    """

    name: ClassVar[str]
    data_form: ClassVar[DataForm]
    display: ClassVar[str] = ""
    """The objective's short name in leaderboard columns (``IPO``, ``SimPO``, ``APO0-U``); empty: ``name`` upper-cased.
    See :func:`variant_label`."""
    study: ClassVar[bool] = False
    """One of the study's two objectives (DPO, KTO): what ``--method all`` means; ``--method every`` adds the rest."""
    needs_reference: ClassVar[bool] = True
    """Whether the loss scores a frozen reference model (the base) beside the policy; SimPO and ORPO are reference-free."""
    reward: ClassVar[str] = "log_ratio"
    """The implicit reward the loss raises for preferred answers (harness/likelihood.py's ``REWARDS``): the
    ``preference`` benchmark ranks held-out pairs by it. ``log_ratio``: beta x log(pi / pi_ref)."""
    ref_columns: tuple[str, ...] = ()
    """Columns the method's TRL trainer reads precomputed reference log-probs from; empty = no reference
    cache (the trainer then scores the reference model itself at every step, if it has one). See harness/refcache.py."""
    min_batch: int = 1
    """The smallest per-device batch the loss trains with: 2 for a loss that estimates a term from a batch's other
    rows (KTO's KL reference point, AOT's sorted ratios). Gradient accumulation does not help: it adds batches."""
    batch_reason: str = ""
    """Why :attr:`min_batch` is above 1, shown when a run is refused."""

    def check_batch(self, batch_size: int) -> None:
        """Refuse a per-device batch the loss cannot train with, saying why, before any training starts."""
        if batch_size < self.min_batch:
            raise MethodRefusal(
                f"method '{self.name}' needs a per-device batch of at least {self.min_batch}, got {batch_size}: "
                f"{self.batch_reason}",
                f"set batch_size to {self.min_batch} or more (grad_accum does not count: it adds batches, not rows to one)",
            )

    def examples(self, pairs: Sequence[PreferencePair]) -> list[Example]:
        """Turn preference pairs into the examples this method trains on (default: the pairs)."""
        return list(pairs)

    @abstractmethod
    def build_trainer(
        self,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        dataset: datasets.Dataset,
        args: LocalTrainingArgs,
        callbacks: Sequence[TrainerCallback],
    ) -> Trainer:
        """A trainer for one client's round; the harness calls ``train()`` on it."""

    @abstractmethod
    def records(self, examples: Sequence[Example], template: str) -> list[dict[str, Any]]:
        """Rows of the trainer's data set for these examples, formatted with a prompt template."""

    def local_settings(self, dataset: datasets.Dataset) -> dict[str, float]:
        """Settings this method derives from one client's data for a round (KTO's balanced weight).

        The harness records them in the round's history under the client, so a setting that varies
        per client and round stays visible; ``build_trainer`` should apply the same values.
        """
        return {}


class Layout(ABC):
    """Base class of data layouts: how examples are spread over clients."""

    name: ClassVar[str]
    suffix: ClassVar[str] = ""
    """Short mark of the layout after an unpaired objective's name in leaderboard columns (``O``, ``R``: ``APO0-U/R``);
    empty: the layout's name. See :func:`variant_label`."""
    in_all: ClassVar[bool] = True
    """False for a layout that means little without its own setting (``partial``'s ``paired_fraction``): left out of
    ``--layout all``, included by ``--layout every``."""
    accepts: ClassVar[frozenset[str]] = frozenset({"paired", "unpaired"})
    refusal: ClassVar[str] = ""
    """Why a data form outside ``accepts`` cannot be laid out; shown when a method is refused."""
    baseline: ClassVar[bool] = False
    """True for a layout that only a baseline uses (``pooled``): left out of ``--layout all``."""

    def check(self, method: Method) -> None:
        """Refuse a method whose data form this layout cannot hold, saying why and what to do."""
        if method.data_form not in self.accepts:
            raise LayoutRefusal(
                f"method '{method.name}' trains on {method.data_form} examples, which layout "
                f"'{self.name}' cannot hold: {self.refusal}",
                f"use a layout that accepts {method.data_form} data (e.g. --layout original), "
                f"or a method whose data form is one of {sorted(self.accepts)}",
            )

    @abstractmethod
    def partition(self, examples: Sequence[Example], seed: int) -> dict[str, list[Example]]:
        """Client id -> that client's examples."""


@dataclass
class Encoded:
    """One encoded set of tensors: ``arrays`` are what travels; the rest is metadata a few bytes long.

    ``arrays`` is keyed by parameter name, with ``"<name>/<part>"`` for a tensor sent in several parts
    (``/scale``, ``/indices``, ``/values``). ``shapes`` and ``dtypes`` (names such as ``"float32"``)
    are the original tensors', which :meth:`Codec.decode` restores.
    """

    codec: str
    arrays: dict[str, torch.Tensor]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)
    """The codec's settings when encoding (int8's ``block_size``, top-k's ``fraction``), needed to decode."""

    @property
    def nbytes(self) -> int:
        """Bytes the arrays take on the wire (metadata not counted)."""
        return sum(t.numel() * t.element_size() for t in self.arrays.values())


@dataclass
class ClientUpdate:
    """What a client sends back after its local training."""

    client_id: str
    params: Params
    num_examples: int
    extras: Params = field(default_factory=dict)
    """Anything else the aggregator's client half sends, e.g. SCAFFOLD's control-variate change."""
    encoded: Encoded | None = None
    """``params`` as they travelled, encoded by the run's codec (its ``nbytes`` is the upload); None: as they are."""
    metrics: dict[str, float] = field(default_factory=dict)
    """``loss`` and ``train_seconds``, plus what the client trained with where that varies per client and round
    (``steps`` under dynamic local steps, a method's :meth:`Method.local_settings`): see ``RoundRecord.client_settings``."""


class ClientHook:
    """The client half of an aggregator, attached to any method's trainer.

    The harness calls :meth:`on_gradients` right before every optimizer step (after gradient
    clipping) and :meth:`finish` once local training is over.
    """

    def on_gradients(self, params: Mapping[str, torch.nn.Parameter]) -> None:
        """Change the gradients in place (a proximal term, a drift correction)."""

    def finish(self, update: ClientUpdate, steps: int, learning_rate: float) -> ClientUpdate:
        """Add the client half's own output to the update (default: nothing)."""
        return update


class ClientStates:
    """An aggregator's per-client state (SCAFFOLD's c_i), kept apart from its server-wide ``state_dict``.

    Why apart: a paper-scale federation has hundreds of clients, and state kept per client inside
    ``state_dict`` would be held in memory and rewritten into every round's checkpoint. This base
    keeps it in memory (an aggregator used on its own); during a run the harness swaps in the run
    directory's store (``checkpoint.ClientStateStore``), which reads a client's state from disk
    when asked and writes only the clients a round changed.
    """

    def __init__(self) -> None:
        self._states: dict[str, Params] = {}

    def get(self, client_id: str) -> Params | None:
        """The client's state, or None when it has none yet."""
        return self._states.get(client_id)

    def put(self, client_id: str, state: Params) -> None:
        """Store the client's new state (call it from ``aggregate``, for accepted updates only)."""
        self._states[client_id] = dict(state)

    def clients(self) -> set[str]:
        """Ids of the clients that have state."""
        return set(self._states)

    def at_round(self, round_number: int) -> None:  # noqa: B027 (a store without rounds ignores it)
        """Harness: reads see the state as of ``round_number`` and writes belong to it (for exact resume)."""

    def checkpointed(self) -> None:  # noqa: B027 (nothing to prune in memory)
        """Harness: the round's checkpoint is on disk, so versions only an older checkpoint read may go."""


class KeepsClientStates:
    """A plugin with per-client memory (an aggregator's SCAFFOLD c_i, a codec's top-k residual), kept in
    :attr:`client_states`: in memory on its own, in the run directory's store during a run (exact resume)."""

    @property
    def client_states(self) -> ClientStates:
        """Where this plugin keeps per-client state: in memory until the harness gives it a run's store."""
        store = self.__dict__.get("_client_states")
        if store is None:
            store = self.__dict__["_client_states"] = ClientStates()
        return store

    def use_client_states(self, store: ClientStates) -> None:
        """Harness: keep per-client state in ``store`` (the run directory's) from now on."""
        self.__dict__["_client_states"] = store


class Aggregator(KeepsClientStates, ABC):
    """Base class of aggregation strategies: server state plus an optional client half."""

    name: ClassVar[str]
    regime: ClassVar[Regime] = "federated"
    """``federated``, or a baseline (``centralized``, ``local``: see harness/baselines.py). The harness reads it to
    shape the baseline's cells; a baseline joins ``--agg all`` only when ``--baselines`` asks for it."""
    opt_in: ClassVar[bool] = False
    """True for a rule outside the study's seven (the robust ones): ``--agg all`` leaves it out; name it to run it."""
    needs_each_update: ClassVar[bool] = False
    """True when the server rule reads each client's update (SCAFFOLD's control variates), not only the round's
    mean: client-level DP and secure aggregation, which hand the aggregator nothing but the mean, refuse it."""

    def setup(self, global_params: Params, num_clients: int | None = None) -> None:  # noqa: B027 (optional hook)
        """Create server state shaped like the adapter; called once per process before the first round run.

        ``num_clients`` is the federation's total client count (SCAFFOLD averages over it).
        """

    @abstractmethod
    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        """The new global adapter from the current one and this round's client updates."""

    def check(self, updates: int) -> None:  # noqa: B027 (a rule defined for any number of updates)
        """Refuse, with a ``FedbenchError`` that gives the numbers, a round of ``updates`` updates that this rule's
        guarantee cannot hold for (Krum needs n > 2f + 2). The harness calls it before training with the clients per
        round (and the least reports a round may close with), and again in every round with the updates that
        arrived: a round it refuses then is skipped, and its history entry says why."""

    def client_hook(self, client_id: str, global_params: Params) -> ClientHook | None:
        """The client half for this client's round, or None when the strategy has none."""
        return None

    def start_params(self, client_id: str, global_params: Params) -> Params:
        """The adapter this client's local training starts from: the global one, except for a strategy that keeps
        a personal adapter per client (the local-only baseline starts each client from its own last one)."""
        return global_params

    def client_state(self, client_id: str) -> Params:
        """What of :meth:`state_dict` this client's hook needs when the hook is built on another machine.

        A distributed engine (Flower) sends it with the round's adapter; the client loads it into
        its own instance (``setup``, then ``load_state_dict`` when non-empty) and calls
        :meth:`client_hook`. The default is safe for any plugin: the whole state when the aggregator
        has a client half, nothing when it has none. Override it to send less (SCAFFOLD: c and c_i).
        """
        return self.state_dict() if type(self).client_hook is not Aggregator.client_hook else {}

    def state_dict(self) -> Params:
        """Server-wide state to checkpoint, so a resumed run continues the same trajectory.

        Per-client state belongs in :attr:`client_states`, which the harness persists per client.
        """
        return {}

    def load_state_dict(self, state: Params) -> None:  # noqa: B027 (optional hook)
        """Restore what :meth:`state_dict` returned."""


class Codec(KeepsClientStates, ABC):
    """Base class of codecs: how a client's update x_i - x travels (casts, quantization, sparsification).

    ``encode`` turns the update into an :class:`Encoded` whose arrays are all that is sent (and counted
    as bytes up); ``decode`` restores it. A codec with per-client memory (top-k's error feedback) keeps it
    in :attr:`client_states`, which the harness persists per client and round like an aggregator's.
    """

    name: ClassVar[str]
    keeps_client_state: ClassVar[bool] = False
    """True for a codec with per-client memory (top-k's residual): the local engine persists it with the run; the
    Flower engines, whose clients live in other processes, refuse it until that memory travels with the round."""

    @abstractmethod
    def encode(self, params: Params, client_id: str) -> Encoded:
        """What travels for ``params`` (an update) sent by ``client_id``; the id keys any per-client memory."""

    @abstractmethod
    def decode(self, encoded: Encoded) -> Params:
        """The params an encoding stands for, in their original shapes and dtypes."""

    def settings(self) -> dict[str, Any]:
        """The codec's hyper-parameters, stored in every encoding."""
        return {}

    def check(self, encoded: Encoded) -> None:
        """Refuse an encoding another codec made (decode calls it first)."""
        if encoded.codec != self.name:
            raise FedbenchError(
                f"codec '{self.name}' was given an encoding made by codec '{encoded.codec}'",
                "decode with the codec that encoded (the same --codec on server and clients)",
            )


ATTACK_FRACTION = 0.25
"""The share of a federation's clients an attack makes malicious unless ``attack_params`` sets ``fraction``."""


class Attack(ABC):
    """Base class of attacks: what a malicious client does to its data before training, or to its update after.

    A run with ``attack = NAME`` makes a ``fraction`` of the federation's clients malicious (chosen by the run's seed,
    written to the run directory's ``attack.json``). Each of them hands its training examples to
    :meth:`poison_examples` once, and its trained adapter to :meth:`poison_update` in every round it is sampled; an
    honest client does neither. Both default to leaving things as they are, so an attack overrides one or both.
    """

    name: ClassVar[str]

    def __init__(self, fraction: float = ATTACK_FRACTION) -> None:
        if not 0 <= fraction <= 1:
            raise FedbenchError(
                f"attack '{self.name}': fraction {fraction} is not a share of the clients in [0, 1]",
                "set attack_params.fraction to e.g. 0.25 (a quarter of the clients malicious)",
            )
        self.fraction = fraction

    def poison_examples(self, examples: Sequence[Example], rng: random.Random) -> list[Example]:
        """A malicious client's training examples as it trains on them (``rng`` seeded per run and client)."""
        return list(examples)

    def poison_update(self, global_params: Params, params: Params, generator: torch.Generator) -> Params:
        """What a malicious client sends instead of its trained adapter ``params`` (``global_params``: where it started;
        ``generator`` seeded per run, round and client)."""
        return params


@dataclass(frozen=True)
class Question:
    """One benchmark question (first turn), with an optional reference answer."""

    id: str
    prompt: str
    category: str = ""
    reference: str | None = None
    client: str = ""
    """The client the question belongs to (held-out preference pairs), so scores can be reported per client."""
    choices: tuple[str, ...] = ()
    """Candidate answers given with the question (a held-out pair: chosen, rejected), for benchmarks that
    score the subject's likelihood of given answers instead of a generated one (``Request.LIKELIHOOD``)."""
    reward: str = ""
    """For a held-out pair: the implicit reward the subject's objective raises (``Method.reward``: ``log_ratio``,
    ``mean_logp``, ``log_odds``), which the ``preference`` benchmark ranks the choices by; '' outside it."""


@dataclass(frozen=True)
class Judgment:
    """A judge's verdict on one answer; ``score`` is None when the reply did not parse."""

    question_id: str
    score: float | None
    raw: str


class Request(str, Enum):
    """What a benchmark needs from the model under test, stated as data (lm-eval's ``Instance.request_type``, per
    benchmark): evaluation dispatches once on it."""

    GENERATE = "generate"
    """Answers generated by fedbench for :meth:`Benchmark.questions`, then graded by a judge."""
    LIKELIHOOD = "likelihood"
    """Log-likelihoods of the answers each question gives (``Question.choices``), read by :meth:`Benchmark.score_choices`:
    no generation, no judge."""
    EXTERNAL = "external"
    """The whole model handed to another evaluator (:attr:`Benchmark.evaluator`), which scores it with its own prompts."""


@dataclass(frozen=True)
class ModelUnderTest:
    """One subject as an external evaluator receives it: the base model, the adapter on it, and where to keep outputs."""

    model_dir: str
    adapter: Path | None
    """The cell's PEFT adapter; None for the base model."""
    dtype: str
    backend: str
    """The evaluation's generation backend: ``hf``, ``vllm`` or ``auto``."""
    out_dir: Path
    """A folder of the subject's own for the evaluator's per-document outputs."""


@dataclass(frozen=True)
class ExternalRequest:
    """What an evaluator will run for a benchmark, known before any model loads: the stored column is
    ``<benchmark>:<task>``, and a stored row whose judge setting ends with ``; <request>`` is not run again."""

    task: str
    request: str

    def done(self, setting: str) -> bool:
        """Whether a stored row's judge setting comes from this same request (then the subject is not run again)."""
        return setting.endswith(f"; {self.request}")


@dataclass(frozen=True)
class ExternalScore:
    """What an evaluator measured for one subject, on the benchmark's scale."""

    score: float
    n: int
    setting: str
    """Stored as the row's judge setting; it ends with ``; <request>`` (:class:`ExternalRequest`)."""
    ci_low: float | None
    ci_high: float | None
    ci_note: str
    verdicts: list[Judgment] = field(default_factory=list)
    """Per-document values whose mean is the score, so seeds pool and variants compare as elsewhere (may be empty)."""


class Evaluator(ABC):
    """Another evaluation harness that scores a benchmark on the whole model (a :attr:`Request.EXTERNAL` benchmark).

    A benchmark names a built-in one (``evaluator = "lm_eval"``: lm-evaluation-harness) or sets its own subclass
    (``evaluator = MyEvaluator``), which fedbench instantiates without arguments."""

    judge: ClassVar[str]
    """The judge column its rows are stored under (no judge model is involved)."""

    @abstractmethod
    def prepare(self, settings: Mapping[str, Any], limit: int | None, batch_size: int) -> ExternalRequest:
        """The request a benchmark's :meth:`Benchmark.evaluator_settings` make (with the evaluation's ``limit`` and
        ``batch_size`` for unset ones); refuse bad settings here, before a model loads."""

    @abstractmethod
    def run(self, settings: Mapping[str, Any], limit: int | None, batch_size: int, model: ModelUnderTest) -> ExternalScore:
        """Score one subject."""


class Benchmark(ABC):
    """Base class of benchmarks: questions, generation settings and a score scale."""

    name: ClassVar[str]
    scale: ClassVar[float] = 10.0
    default_judge: ClassVar[str] = "llm"
    judge_fixed: ClassVar[bool] = False
    """True when the score is defined by the default judge (a rule such as AdvBench's keywords or an
    exact match), so a run's --judge for open-ended benchmarks must not replace it."""
    rate: ClassVar[bool] = False
    """True when every judgment scores 1 or 0 and the score is the percentage of ones (AdvBench's harmless
    share): :meth:`score` multiplies the mean by 100 and the score gets a Wilson interval instead of a
    bootstrap one."""
    request: ClassVar[Request] = Request.GENERATE
    """What the benchmark needs from the model: generated answers to judge (the default), likelihoods of given
    answers, or the whole model for another evaluator. A plugin written for API 2 states it with ``answers_given``
    or ``evaluator`` instead, and ``request`` follows from them."""
    answers_given: ClassVar[bool] = False
    """API 2's spelling of ``request = Request.LIKELIHOOD`` (still read: setting it gives that request)."""
    metrics: ClassVar[tuple[str, ...]] = ()
    """For :attr:`Request.LIKELIHOOD` benchmarks: the names of what :meth:`score_choices` measures."""
    base_scores: ClassVar[Mapping[str, float]] = {}
    """For :attr:`Request.LIKELIHOOD` benchmarks: metrics whose value for the untrained base model is fixed by
    definition (shown as such, never computed)."""
    answer_tokens: ClassVar[int] = 128
    """New tokens per answer when the evaluation does not set ``max_new_tokens`` (the study's length where it has one)."""
    question_ids: ClassVar[range | None] = None
    """The full published question set's ids (MT-Bench 81-160, Vicuna 1-80), where they are numbers: imported
    answers (``fedbench import``) to an id outside it are refused. None: any id is accepted."""
    evaluator: ClassVar[str | type[Evaluator] | None] = None
    """For a :attr:`Request.EXTERNAL` benchmark (setting it gives that request): the :class:`Evaluator` that scores
    the whole model with its own prompts and metrics, by name (``"lm_eval"``: lm-evaluation-harness,
    harness/lm_eval_bridge.py) or as a class. It gets every subject (model directory, adapter, dtype) and
    :meth:`evaluator_settings`; fedbench then neither generates nor judges, and stores the evaluator's score,
    interval and per-document verdicts like any other benchmark's."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that states its request through API 2's flags gets the matching :attr:`request`."""
        super().__init_subclass__(**kwargs)
        if "request" not in cls.__dict__:
            if cls.evaluator is not None:
                cls.request = Request.EXTERNAL
            elif cls.answers_given:
                cls.request = Request.LIKELIHOOD

    def evaluator_settings(self) -> dict[str, Any]:
        """For an :attr:`Request.EXTERNAL` benchmark: what its evaluator runs (lm_eval: the task and its options)."""
        return {}

    @abstractmethod
    def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
        """Questions from a local file, a hub id, or (source None) the built-in sample."""

    def temperature(self, question: Question) -> float:
        """Sampling temperature for a question's answer (0 = greedy)."""
        return 0.0

    def score(self, judgments: Sequence[Judgment]) -> float | None:
        """One score from the judgments: the mean of those that parsed (failures never count), x100 for a rate."""
        scores = [j.score for j in judgments if j.score is not None]
        if not scores:
            return None
        return (100.0 if self.rate else 1.0) * sum(scores) / len(scores)

    def score_choices(
        self,
        questions: Sequence[Question],
        policy: Sequence[Sequence[SequenceLogp]],
        reference: Sequence[Sequence[SequenceLogp]] | None,
    ) -> dict[str, list[Judgment]]:
        """Judgments per metric from log-likelihoods of each question's ``choices`` (:attr:`Request.LIKELIHOOD` only).

        ``policy`` holds the subject's log-probabilities of every choice, ``reference`` the base
        model's (None when the subject is the base model itself). Each metric is stored and shown as
        the benchmark ``<name>.<metric>``.
        """
        raise NotImplementedError(f"benchmark '{self.name}' scores generated answers, not given ones")


class Judge(ABC):
    """Base class of judges."""

    name: ClassVar[str]

    @abstractmethod
    def judge(self, questions: Sequence[Question], answers: Sequence[str]) -> list[Judgment]:
        """One judgment per (question, answer), raw reply kept."""

    swap: bool = False
    """Whether the judge grades each comparison in both answer orders (position-bias control); in
    multi-answer grading fedbench then also reports how often both orders rank the same answer first."""

    @property
    def setting(self) -> str:
        """How this judge scores (model, keyword list, ...), stored beside every score it makes."""
        return self.name

    def judge_together(self, question: Question, answers: Sequence[str]) -> tuple[list[float] | None, str]:
        """Optional multi-answer grading: one score per answer from one prompt (None if the reply does not parse)
        and the raw reply. Used with ``judge_mode = "together"``; a judge without it grades answers one by one."""
        raise NotImplementedError(f"judge '{self.name}' grades one answer at a time")

    def read_scores(self, reply: str, n: int) -> list[float] | None:
        """Scores of n answers graded together, read from a reply this judge's model wrote (None: it does not parse).

        ``fedbench import`` reads published judgments with it, so a judge plugin that knows its model's
        reply format also imports that model's judgments; a judge without it cannot import."""
        raise NotImplementedError(f"judge '{self.name}' cannot read another run's replies")

    def judge_pair(self, question: Question, first: str, second: str) -> tuple[str | None, str]:
        """Head-to-head verdict on two answers shown in this order: ``first``, ``second``, ``tie``, or None (the reply
        does not parse), and the raw reply. Used with ``pairwise = true``; fedbench asks both orders itself.

        By default the two answers are graded together and the higher score wins (equal scores tie); a judge with
        a prompt made for pairs (FastChat's pair-v2) overrides this."""
        scores, reply = self.judge_together(question, [first, second])
        if scores is None:
            return None, reply
        return ("first" if scores[0] > scores[1] else "second" if scores[1] > scores[0] else "tie"), reply

    @property
    def judges_together(self) -> bool:
        """Whether this judge implements :meth:`judge_together`."""
        return type(self).judge_together is not Judge.judge_together

    @property
    def judges_pairs(self) -> bool:
        """Whether this judge can compare two answers head to head (:meth:`judge_pair`, or grading together)."""
        return type(self).judge_pair is not Judge.judge_pair or self.judges_together
