"""Stage one of SPICE: fit the network to the choices (masked next-choice cross-entropy)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from spicedsl.errors import FitError
from spicedsl.runtime.batch import IGNORE, Batch
from spicedsl.runtime.network import BaseRNN
from spicedsl.runtime.progress import Progress
from spicedsl.settings import FitSettings


def choice_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the predicted choices; padding never counts."""
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )


def batch_nll(net: BaseRNN, batch: Batch) -> float:
    """Mean per-trial NLL of ``batch`` under ``net`` in evaluation mode."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        loss = choice_nll(net(batch.trials, batch.chosen, batch.participants), batch.targets)
    net.train(was_training)
    return float(loss)


@dataclass
class TrainingLog:
    """What happened in training: per-epoch losses and why it stopped."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    stopped: str = "max_epochs"  # or "converged", "interrupted"
    best_epoch: int = 0
    # The monitored loss (validation, else training) of the kept weights.
    best_loss: float = math.inf
    # Fresh initialisations trained after networks that stayed at chance.
    restarts: int = 0


def train_network(
    net: BaseRNN,
    train: Batch,
    settings: FitSettings,
    validation: Batch | None = None,
    progress: bool = True,
) -> TrainingLog:
    """Fit ``net`` with Adam on full batches; keep the best weights.

    Training stops after ``settings.epochs``, or when the smoothed relative change of the
    loss stays below ``settings.convergence`` for ``settings.patience`` epochs. Ctrl-C
    stops it too; the best weights so far are kept and the log says "interrupted".

    Raises
    ------
    FitError
        When the loss becomes non-finite; the message names the first module or param
        whose gradient or value stopped being finite.
    """
    optimizer = torch.optim.Adam(
        net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    log = TrainingLog()
    best_loss, best_state = math.inf, _copy_state(net)
    smoothed_change, calm_epochs, previous = None, 0, None
    bar = Progress(settings.epochs, "training", enabled=progress, unit="epochs")
    net.train()
    # When validation sessions run in the training batch (see Batch.predicting) and no
    # dropout makes training logits differ from evaluation ones, one forward pass serves both.
    shared_forward = (
        validation is not None and validation.trials is train.trials and not net.has_dropout
    )
    try:
        for epoch in range(settings.epochs):
            logits = net(train.trials, train.chosen, train.participants)
            loss = choice_nll(logits, train.targets)
            value = loss.item()
            monitored = value
            if validation is not None:
                if shared_forward:
                    monitored = choice_nll(logits.detach(), validation.targets).item()
                else:
                    monitored = batch_nll(net, validation)
                log.validation_loss.append(monitored)
            log.train_loss.append(value)
            # The weights that produced this epoch's losses are those before the step.
            if monitored < best_loss:
                best_loss, best_state, log.best_epoch = monitored, _copy_state(net), epoch + 1
                log.best_loss = monitored
            optimizer.zero_grad()
            loss.backward()
            if not math.isfinite(value) or not _gradients_finite(net):
                raise FitError(
                    f"training diverged at epoch {epoch + 1}: {_first_non_finite(net)}; "
                    "try a smaller learning_rate"
                )
            optimizer.step()
            if previous is not None:
                change = abs(previous - value) / max(abs(previous), 1e-12)
                smoothed_change = (
                    change if smoothed_change is None else (0.9 * smoothed_change + 0.1 * change)
                )
                calm_epochs = calm_epochs + 1 if smoothed_change < settings.convergence else 0
            previous = value
            bar.update(epoch + 1, loss=value, validation=monitored if validation else None)
            if calm_epochs >= settings.patience:
                log.stopped = "converged"
                break
    except KeyboardInterrupt:
        log.stopped = "interrupted"
    finally:
        bar.close()
    net.load_state_dict(best_state)
    net.eval()
    return log


def _copy_state(net: BaseRNN) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _gradients_finite(net: BaseRNN) -> bool:
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in net.parameters())


def _first_non_finite(net: BaseRNN) -> str:
    for name, parameter in net.named_parameters():
        where = _describe_parameter(name)
        if not torch.isfinite(parameter).all():
            return f"{where} is no longer finite"
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
            return f"the gradient of {where} is not finite"
    return "the loss is not finite"


def _describe_parameter(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "nets":
        return f"module '{parts[1]}'"
    if parts[0] in ("raw_params", "param_embeddings"):
        return f"param '{parts[1]}'"
    if parts[0] == "embedding":
        return "the participant embedding"
    return f"the weights '{name}'"


# Strength of the pull of refit params toward their starting values (see refit_params).
ANCHOR = 1e-4


def refit_params(
    net: BaseRNN,
    batch: Batch,
    max_iterations: int = 100,
    held: Mapping[str, torch.Tensor] | None = None,
) -> float:
    """Fit the learnable params of a network with no learnable module (an equation
    model) by L-BFGS on the choices; return the final mean NLL (infinite or NaN when the
    fit diverged).

    ``held`` maps a per-participant param to a boolean mask of the participants whose
    value stays where it is.

    With a handful of scalars and no network weights, a quasi-Newton method converges in
    a few full-batch steps. A weak pull toward the starting values (``ANCHOR`` times the
    squared distance) decides only the directions the choices leave free: without a
    hard-coded equation that fixes the scale of a state, scaling the state's equations up
    and its inverse temperature down predicts the same choices.
    """
    parameters = [p for p in net.parameters() if p.requires_grad]
    if not parameters:
        return batch_nll(net, batch)
    start = [p.detach().clone() for p in parameters]
    optimizer = torch.optim.LBFGS(
        parameters, lr=1, max_iter=max_iterations, line_search_fn="strong_wolfe"
    )
    net.eval()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = choice_nll(net(batch.trials, batch.chosen, batch.participants), batch.targets)
        pull = sum(((p - p0) ** 2).sum() for p, p0 in zip(parameters, start, strict=True))
        loss = loss + ANCHOR * pull
        loss.backward()
        return loss

    hooks = [
        net.raw_params[name].register_hook(lambda grad, mask=mask: grad.masked_fill(mask, 0))
        for name, mask in (held or {}).items()
    ]
    try:
        optimizer.step(closure)
    except RuntimeError:
        # The line search overflowed: the params left every range the choices allow.
        return math.inf
    finally:
        for hook in hooks:
            hook.remove()
    return batch_nll(net, batch)
