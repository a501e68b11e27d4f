"""How well a network predicts choices: NLL, accuracy, AIC and BIC."""

from __future__ import annotations

import math

import numpy as np
import torch

from spicedsl.runtime.batch import IGNORE, Batch
from spicedsl.runtime.network import BaseRNN


def choice_metrics(net: BaseRNN, batch: Batch, n_params: int) -> dict[str, float]:
    """Per-trial metrics of ``net`` on ``batch``.

    Each target choice of ``batch`` is predicted from the trials before it.
    ``nll_per_trial`` is the mean negative log-likelihood of those choices, and
    ``trial_likelihood`` the exponential of minus that (the geometric mean of the
    probabilities given to the choices: the "normalised likelihood" of disRNN, SPICE and
    CogFunSearch); ``aic = 2 k + 2 NLL`` and ``bic = k ln(n) + 2 NLL`` with the summed
    NLL, ``k = n_params`` and ``n = n_trials``, the number of predicted choices.
    """
    logits, picked, valid = _predictions(net, batch)
    n = int(valid.sum())
    if n == 0:
        raise ValueError("no trial to predict: every session has a single trial")
    total = float(-picked[valid].sum())
    correct = int((logits.argmax(-1) == batch.targets)[valid].sum())
    return {
        "nll_per_trial": total / n,
        "trial_likelihood": math.exp(-total / n),
        "accuracy": correct / n,
        "n_trials": n,
        "n_params": n_params,
        "aic": 2 * n_params + 2 * total,
        "bic": n_params * math.log(n) + 2 * total,
    }


def chance_nll(batch: Batch) -> float:
    """The NLL per predicted trial of guessing: a uniform choice among the actions
    offered."""
    if "offered" not in batch.trials[0]:
        return math.log(batch.chosen.shape[-1])
    offered = torch.stack([trial["offered"].sum(-1) for trial in batch.trials])
    return float(torch.log(offered[batch.targets != IGNORE].double()).mean())


def participant_nll(
    net: BaseRNN, batch: Batch, n_participants: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each participant's summed NLL of the choices of ``batch``, and how many there are."""
    nll, counts = session_nll(net, batch)
    owner = batch.participants.cpu().numpy()
    return (
        np.bincount(owner, nll, minlength=n_participants),
        np.bincount(owner, counts, minlength=n_participants),
    )


def session_nll(net: BaseRNN, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Each session's summed NLL of its choices in ``batch`` (float64), and how many
    there are."""
    nll, valid = trial_nll(net, batch)
    return nll.sum(0), valid.sum(0)


def trial_nll(net: BaseRNN, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """The NLL of each choice of ``batch`` (float64, ``(trials, sessions)``, 0 where
    there is none to predict), and where there is one."""
    _, picked, valid = _predictions(net, batch)
    return -torch.where(valid, picked, 0).cpu().numpy(), valid.cpu().numpy()


def _predictions(net: BaseRNN, batch: Batch):
    """The logits of ``batch`` under ``net`` (evaluation mode), the float64 log-probability
    of each actual choice, and which of them are real choices (not padding)."""
    net.eval()
    with torch.no_grad():
        logits = net(batch.trials, batch.chosen, batch.participants)
    log_p = torch.log_softmax(logits.double(), dim=-1)
    picked = log_p.gather(-1, batch.targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logits, picked, batch.targets != IGNORE
