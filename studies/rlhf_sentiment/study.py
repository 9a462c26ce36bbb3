"""The controlled-sentiment study: every DPO recipe tried beside the experiment's default run, on its pairs
and its workdir (``runs/rlhf_sentiment``), so only the methods not yet judged there are trained.

    make study S=rlhf_sentiment C=sweep       # one-round DPO at other learning rates and epochs, and iterative
    make study S=rlhf_sentiment C=iterative   # iterative DPO alone (with the default methods)
    make study S=rlhf_sentiment C=online      # three more online DPO runs on soft labels (beta 0.5)

Each needs the default run first (``make rlhf-sentiment``: its SFT policy, judges and pairs are read back).
The results and the log of attempts are in this folder's README.md.
"""

from __future__ import annotations

import dataclasses

from experiments.rlhf_sentiment import Config, run  # noqa: F401  (run: the launcher's entry point)
from experiments.rlhf_sentiment.config import DPO_METHODS
from experiments.rlhf_sentiment.methods import DPOMethod

# More DPO points on the default run's pairs: a lower learning rate, more epochs, both, and more epochs at
# beta 0.5, so the one-round DPO frontier is traced by more than beta
DPO_SWEEP = (DPOMethod(name="dpo_b0.1_lr5e-5", beta=0.1, lr=5e-5),
             DPOMethod(name="dpo_b0.1_lr1e-4_e2", beta=0.1, lr=1e-4, epochs=2),
             DPOMethod(name="dpo_b0.1_e3", beta=0.1, epochs=3),
             DPOMethod(name="dpo_b0.5_e3", beta=0.5, epochs=3))

# Iterative DPO: each round after the first trains on oracle-labelled pairs of the previous round's policy,
# on fresh training prefixes, the reference staying SFT; every round's policy is judged (rows
# ``<name>_round<r>``), so each method traces a curve. Then online DPO (every step's pairs drawn from the
# policy at that step)
DPO_ITERATIVE = (DPOMethod(name="dpo_b0.5_iter4", beta=0.5, rounds=4),
                 DPOMethod(name="dpo_b1_iter4", beta=1.0, rounds=4),
                 DPOMethod(name="dpo_b0.5_gap0.3_iter6", beta=0.5, rounds=6, min_gap=0.3),
                 DPOMethod(name="dpo_b1_soft0.1", beta=1.0, soft_labels=0.1),
                 DPOMethod(name="dpo_b0.5_lr5e-5_iter16", beta=0.5, lr=5e-5, rounds=16),
                 DPOMethod(name="dpo_b0.5_lr5e-5_iter26", beta=0.5, lr=5e-5, rounds=26,
                           continues="dpo_b0.5_lr5e-5_iter16"),
                 DPOMethod(name="dpo_b0.5_bw8_iter12", beta=0.5, rounds=12, samples=8, extremes=True),
                 DPOMethod(name="dpo_b0.5_bw8_lr1e-4_iter30", beta=0.5, lr=1e-4, rounds=30, samples=8,
                           extremes=True, continues="dpo_b0.5_lr5e-5_iter26"),
                 DPOMethod(name="dpo_b0.5_bw8_lr1e-4_iter12", beta=0.5, lr=1e-4, rounds=12, samples=8, extremes=True),
                 DPOMethod(name="dpo_b0.5_online_bw4_lr1e-4", beta=0.5, lr=1e-4, online_steps=600, samples=4),
                 DPOMethod(name="dpo_b0.5_online_bw4_lr1e-4_s1200", beta=0.5, lr=1e-4, online_steps=1200,
                           samples=4))

# Online DPO on soft labels at beta 0.5, beside the default run's beta 0.35: each step's best against worst
# of 4 samples (tau 0.1) or of 8 (tau 0.05, tau 0.02) of 32 training prefixes
DPO_ONLINE_SOFT = (DPOMethod(name="dpo_b0.5_online_bw4_soft0.1", beta=0.5, soft_labels=0.1, lr=1.5e-4,
                             online_steps=1000, samples=4, extremes=True),
                   DPOMethod(name="dpo_b0.5_online_bw8_soft0.05", beta=0.5, soft_labels=0.05, lr=2e-4,
                             online_steps=1000, samples=8, extremes=True),
                   DPOMethod(name="dpo_b0.5_online_bw8_soft0.02", beta=0.5, soft_labels=0.02, lr=3e-4,
                             online_steps=800, samples=8, extremes=True))

CONFIGS = {"sweep": DPO_METHODS + DPO_SWEEP + DPO_ITERATIVE, "iterative": DPO_METHODS + DPO_ITERATIVE,
           "online": DPO_METHODS + DPO_ONLINE_SOFT}


def get_config(arg: str | None = None) -> Config:
    if arg not in CONFIGS:
        raise ValueError(f"unknown config {arg!r}; choose {', '.join(CONFIGS)}")
    return dataclasses.replace(Config(), methods=CONFIGS[arg])
