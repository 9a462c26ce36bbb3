"""Every training objective, in one place, with one signature: an ``Objective``'s loss
``(model, batch, key, state, frozen) -> (loss, aux, state)`` (:mod:`nlp_jax.objectives.base`); a stateless
objective is written ``loss_fn(model, batch, key) -> (loss, aux)`` and lifted by ``Objective.of``. Each one's
equation is an op in ``nlp_jax.ops``; here it meets a model's batch.

- language models: :func:`~nlp_jax.objectives.lm.lm_loss` (GPT-2), :func:`~nlp_jax.objectives.lm.bptt_loss`
  (RNN and LSTM LMs, truncated BPTT);
- :func:`~nlp_jax.objectives.seq2seq.seq2seq_loss` (the encoder-decoders);
- :func:`~nlp_jax.objectives.bert.pretraining_loss` (BERT's MLM + NSP);
- :func:`~nlp_jax.objectives.classification.classification_loss` (BERT),
  :func:`~nlp_jax.objectives.classification.bilstm_classification_loss`;
- preferences: :func:`~nlp_jax.objectives.preference.reward_loss` (Bradley-Terry),
  :func:`~nlp_jax.objectives.preference.dpo_objective` (the DPO family: DPO, IPO, cDPO, robust, hinge,
  SimPO, ORPO), :func:`~nlp_jax.objectives.preference.kto_objective` (KTO, on unpaired examples);
- :func:`~nlp_jax.objectives.ppo.ppo_objective` (RLHF with PPO; its rollouts come from
  ``train.ppo.PPORollouts``), :func:`~nlp_jax.objectives.group_rl.group_rl_objective` (critic-free RL: GRPO,
  Dr. GRPO, RLOO, REINFORCE++; its rollouts come from ``train.group_rl.GroupRollouts``);
- :func:`~nlp_jax.objectives.sampling.rollout`: the one function that samples a policy on prompts.
"""

from nlp_jax.objectives.base import Objective
from nlp_jax.objectives.bert import pretraining_loss
from nlp_jax.objectives.classification import bilstm_classification_loss, classification_loss
from nlp_jax.objectives.group_rl import GroupRLConfig, group_rl_objective
from nlp_jax.objectives.lm import bptt_loss, lm_loss
from nlp_jax.objectives.ppo import PPOConfig, ppo_objective
from nlp_jax.objectives.preference import dpo_objective, kto_objective, reward_loss
from nlp_jax.objectives.sampling import rollout
from nlp_jax.objectives.seq2seq import seq2seq_loss

__all__ = ["GroupRLConfig", "Objective", "PPOConfig", "bilstm_classification_loss", "bptt_loss",
           "classification_loss", "dpo_objective", "group_rl_objective", "kto_objective", "lm_loss", "ppo_objective",
           "pretraining_loss", "reward_loss", "rollout", "seq2seq_loss"]
