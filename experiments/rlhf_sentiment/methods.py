"""A DPO recipe as data: :class:`DPOMethod` names one preference-optimised policy (its loss, beta, learning
rate, epochs, and for iterative DPO its rounds and how each round's pairs are drawn), so the
controlled-sentiment experiment and its study can list many, record each one's settings, and name each
curve the same way in its table and plot.

Iterative DPO: round 1 trains on the shared pairs (or, for a method with pairs of its own, pairs drawn its
own way from the start policy); each further round draws samples from the policy so far on fresh
prefixes, labels them by the oracle and trains on them from that policy; the reference stays fixed.
Online DPO (``online_steps``, ``nlp_jax.train.online_dpo``) draws every step's pairs from the policy at that step:
the best against the worst of ``samples`` (default 2) per prefix.
A method that ``continues`` another (listed earlier, with fewer rounds and the same objective: beta, loss,
label smoothing) starts from that method's last policy at the round after its last
(:func:`check_continuations`). With the same settings it extends that method's curve; with others (a
learning rate, epochs, or pairs drawn another way) it is a curve of its own from that point
(:func:`curve_label`).
"""

from __future__ import annotations

import dataclasses

from nlp_jax.validate import at_least, check_fields, optional, positive

# a loss_type as tables and plots name it ('kto': KTO on the pairs' completions, each alone, labelled by its side)
LOSS_NAMES = {"sigmoid": "DPO", "ipo": "IPO", "cdpo": "cDPO", "orpo": "ORPO", "simpo": "SimPO", "kto": "KTO"}
OBJECTIVE_FIELDS = ("beta", "loss_type", "label_smoothing", "gamma")  # what a continuation keeps from its start


@dataclasses.dataclass(frozen=True, kw_only=True)
class DPOMethod:
    """One preference-optimised policy: its loss and, where set, its own learning rate and epochs over the
    pairs (else the experiment's defaults)."""
    name: str
    beta: float
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    gamma: float = 0.0  # SimPO's target margin
    lr: float | None = None  # peak; the schedule decays to a tenth
    epochs: int | None = None
    rounds: int = 1  # > 1: iterative DPO, each further round on pairs of the policy so far
    min_gap: float = 0.0  # > 0: only pairs whose oracle scores differ by more
    soft_labels: float = 0.0  # tau > 0: each pair's label sigma((s_w - s_l) / tau) of its oracle scores
    samples: int | None = None  # samples per prefix when the method draws its own pairs (else the experiment's)
    extremes: bool = False  # of each prefix's samples only the best against the worst (else every pair)
    continues: str = ""  # the name of an earlier-listed method whose last policy this one trains on for more rounds
    online_steps: int = 0  # > 0: online DPO (train.online_dpo) for that many steps, each on pairs of the policy then

    def __post_init__(self):
        check_fields(self, beta=positive(), lr=optional(positive()), epochs=optional(at_least(1)),
                     rounds=at_least(1), min_gap=at_least(0.0), soft_labels=at_least(0.0),
                     samples=optional(at_least(2)), online_steps=at_least(0))
        if self.loss_type == "kto" and (self.online_steps or self.soft_labels):
            raise ValueError(f"{self.name}: KTO trains on the completions of stored pairs, each labelled by its side: "
                             "online_steps and soft_labels do not apply")
        if self.online_steps and (self.rounds > 1 or self.continues or self.epochs or self.min_gap):
            raise ValueError(f"{self.name}: online DPO (online_steps={self.online_steps}) draws its pairs every step "
                             "from its best and worst samples: rounds, continues, epochs and min_gap do not apply")

    @property
    def own_pairs(self) -> bool:
        """Whether round 1 draws pairs its own way, which pairs shared by every method (all pairs of the
        experiment's samples per prefix, hard labels) cannot serve."""
        return bool(self.min_gap or self.soft_labels or self.samples or self.extremes or self.online_steps)

    @property
    def label(self) -> str:
        """The method as a table and plot name it: the loss's name, or for iterative DPO (or a method with
        pairs of its own) a curve of its own per beta and setting (its points are the rounds, or an online
        run's judged steps)."""
        kind = LOSS_NAMES.get(self.loss_type, self.loss_type)
        if self.rounds == 1 and not self.own_pairs:
            return kind
        extra = {"lr": self.lr, "oracle gap >": self.min_gap, "soft labels tau": self.soft_labels}
        drawn = self.samples or (2 if self.online_steps else "the")
        pairs = f", best vs worst of {drawn} samples" if self.extremes or self.online_steps else (
            f", {self.samples} samples" if self.samples else "")
        # an online run's step count names its curve: runs of other lengths decay their lr on other schedules
        how = f", online {self.online_steps:,} steps" if self.online_steps else ", iterative" * (self.rounds > 1)
        return (f"{kind}{how}, beta {self.beta:g}"
                + "".join(f", {k} {v:g}" for k, v in extra.items() if v) + pairs)


def check_continuations(methods: tuple[DPOMethod, ...]) -> None:
    """Refuse a method whose ``continues`` does not name a method listed before it with fewer rounds and the
    same objective (so its run has finished, its last policy is this one's start, and the reference and the
    loss stay those its policy was trained under)."""
    for i, m in enumerate(methods):
        if not m.continues:
            continue
        earlier = {e.name: e for e in methods[:i]}.get(m.continues)
        if earlier is None or m.rounds <= earlier.rounds or any(
                getattr(m, f) != getattr(earlier, f) for f in OBJECTIVE_FIELDS):
            raise ValueError(f"methods: {m.name} continues={m.continues!r} must name a method listed before it "
                             f"with fewer rounds and the same {', '.join(OBJECTIVE_FIELDS)}")


def curve_label(methods: tuple[DPOMethod, ...], method: DPOMethod) -> str:
    """The curve ``method``'s points belong to: its :attr:`DPOMethod.label`, which a continuation with the
    same settings shares with the method it continues; one that changes them (its learning rate, epochs or
    pairs) is a curve of its own, named after the run it starts from."""
    earlier = find_method(methods, method.continues) if method.continues else None
    if earlier is None or dataclasses.replace(method, name=earlier.name, rounds=earlier.rounds,
                                              continues=earlier.continues) == earlier:
        return method.label
    return f"{method.label}, after {earlier.name}"


def find_method(methods: tuple[DPOMethod, ...], name: str) -> DPOMethod:
    for m in methods:
        if m.name == name:
            return m
    raise KeyError(f"no method named {name!r}; the methods are {', '.join(m.name for m in methods)}")
