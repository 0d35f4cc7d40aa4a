"""The :class:`Trainer`: AdamW with warm-up + cosine decay, guards, validation, checkpoints.

One run lives in an output folder::

    checkpoint.pt   latest state (model, optimiser, scheduler, RNG, step), written atomically
    best.pt         model with the best validation loss so far (validation NLL, flow-sample
                    reverse KL, or their mix weighted as in training)
    metrics.jsonl   one JSON object per logged step, validation or event
    final.json      metrics at the end of the run

Rerunning with the same folder resumes from ``checkpoint.pt``; on the CPU the resumed run
reproduces the uninterrupted one exactly (same steps, same random numbers).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from confflow.distributions.flow import Flow
from confflow.models import BoltzmannGenerator
from confflow.training.checkpoint import (
    CheckpointMismatchError,
    check_compatible,
    check_same_training,
    flow_fingerprint,
    read_checkpoint,
    restore_rng_states,
    rng_states,
    write_checkpoint,
)
from confflow.training.checks import check_seed, sample_check
from confflow.training.config import TrainConfig
from confflow.training.objectives import Objective, make_objective
from confflow.training.outcome import TrainingDivergedError, TrainResult, resolve_device
from confflow.training.runlog import RunLog

__all__ = ["Trainer"]


class Trainer:
    """The one training loop: any objective, any flow, one policy for everything around it.

    The objective (:mod:`confflow.training.objectives`: maximum likelihood, reverse KL,
    importance-weighted forward KL, their mix, or flow matching; or a custom
    :class:`~confflow.training.objectives.Objective`) gives each step's loss. The Trainer owns
    the rest: AdamW with warm-up and cosine decay, gradient clipping, the non-finite policy
    (see :class:`~confflow.training.TrainConfig`), validation every ``val_every`` steps, the
    best model (``best.pt``), early stopping, checkpoints and exact resume.

    Args:
        model: a :class:`~confflow.models.BoltzmannGenerator` (validation then also reports the
            ESS of flow samples reweighted to its target), or a bare
            :class:`~confflow.distributions.Flow` (objectives on data only). Moved to the
            configured device.
        config: training hyper-parameters.
        train_data: ``[M, *event_shape]`` training samples (positions in nm for molecules);
            required when the objective trains on data.
        val_data: optional validation samples, for the objective's validation loss and early
            stopping.
        out_dir: folder for checkpoints and logs (``None``: keep nothing on disk).
        log_every: steps between training-loss log lines.
        objective: the loss; default: ``config.objective`` built from ``config``.
        atom_classes: ``[N]`` exchangeable-atom labels for flow matching on positions.

    Raises:
        ValueError: missing or mis-shaped data, or an objective the model cannot serve.
    """

    def __init__(
        self,
        model: BoltzmannGenerator,
        config: TrainConfig,
        train_data: Tensor | None = None,
        val_data: Tensor | None = None,
        out_dir: str | Path | None = None,
        log_every: int = 10,
        objective: Objective | None = None,
        atom_classes: Tensor | None = None,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.generator = model if isinstance(model, BoltzmannGenerator) else None
        self.flow: Flow = model.flow if self.generator is not None else model
        self.objective = objective or make_objective(config, atom_classes)
        objective = self.objective
        if objective.needs_target and self.generator is None:
            raise ValueError(
                f"train.objective: {config.objective!r} with kl_weight = {config.kl_weight} "
                "needs a target energy (a Boltzmann generator), not a bare flow"
            )
        shape = tuple(model.event_shape) if self.generator is not None else None
        for name, data in (("train_data", train_data), ("val_data", val_data)):
            if (
                data is not None
                and shape is not None
                and (data.dim() != 1 + len(shape) or tuple(data.shape[1:]) != shape)
            ):
                raise ValueError(
                    f"{name}: expected [M, {', '.join(map(str, shape))}], got {tuple(data.shape)}"
                )
        if objective.needs_data and train_data is None:
            why = (
                f"for kl_weight = {config.kl_weight} < 1 (NLL term)"
                if config.objective == "likelihood"
                else f"by the {config.objective!r} objective"
            )
            raise ValueError(f"train_data: required {why}")
        if log_every < 1:
            raise ValueError(f"log_every: must be >= 1, got {log_every}")
        self.log_every = log_every
        dtype = next(self.flow.parameters()).dtype
        self.train_data = None if train_data is None else train_data.to(self.device, dtype)
        self.val_data = None if val_data is None else val_data.to(self.device, dtype)
        self.out_dir = None if out_dir is None else Path(out_dir)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.out_dir)
        self.optimizer = torch.optim.AdamW(
            self.flow.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.batch_gen = torch.Generator().manual_seed(config.seed)
        self.sample_gen = torch.Generator(self.device).manual_seed(config.seed + 1)
        self.step = 0
        self.skipped = 0
        self.best = math.inf
        self.since_best = 0
        self.evaluations = 0
        self.metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ schedule
    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """Checkpoint payload: model, optimiser, scheduler, RNG states, counters, configs."""
        return {
            "fingerprint": self._fingerprint(),
            "model_config": {} if self.generator is None else self.generator.config.to_dict(),
            "train_config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states(self.batch_gen, self.sample_gen),
            "step": self.step,
            "skipped": self.skipped,
            "best": self.best,
            "since_best": self.since_best,
            "evaluations": self.evaluations,
            "metrics": dict(self.metrics),
        }

    def _fingerprint(self) -> str:
        """The generator's fingerprint, or for a bare flow one of its parameter shapes."""
        if self.generator is not None:
            return self.generator.fingerprint
        return flow_fingerprint(self.flow)

    def load_state(self, data: dict[str, Any], path: str | Path) -> None:
        """Restores a checkpoint written by :meth:`state` (after checking it fits the model)."""
        if self.generator is not None:
            check_compatible(data, self.generator, path)
        elif data["fingerprint"] != self._fingerprint():
            raise CheckpointMismatchError(f"checkpoint {path}: written for another flow")
        check_same_training(data, self.config.to_dict(), path)
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        restore_rng_states(data["rng"], self.batch_gen, self.sample_gen)
        self.step = int(data["step"])
        self.skipped = int(data["skipped"])
        self.best = float(data["best"])
        self.since_best = int(data["since_best"])
        self.evaluations = int(data["evaluations"])
        self.metrics = dict(data["metrics"])

    def _checkpoint(self, name: str = "checkpoint.pt") -> None:
        if self.out_dir is not None:
            write_checkpoint(self.out_dir / name, self.state())

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation metrics of the current model.

        Returns:
            ``val_nll`` (nats, when there is validation data) and the metrics of
            :meth:`ess_check` on ``val_batch_size`` flow samples.
        """
        cfg = self.config
        self.model.eval()
        out: dict[str, float] = {}
        if self.val_data is not None:
            gen = torch.Generator(self.device).manual_seed(check_seed(cfg.seed, self.step))
            out.update(self.objective.validation(self.model, self.val_data, gen))
        if self.generator is not None:
            out.update(self.ess_check(cfg.val_batch_size))
        self.model.train()
        return out

    @torch.no_grad()
    def ess_check(self, n: int, salt: int = 0) -> dict[str, float]:
        """:func:`~confflow.training.checks.sample_check` of ``n`` fresh flow samples.

        Args:
            n: flow samples.
            salt: 0 draws the samples of :meth:`validate` at this step; another value draws
                independent ones (a second opinion on a check).

        Raises:
            ValueError: the model is a bare flow, without a target to weigh against.
        """
        if self.generator is None:
            raise ValueError("an ESS check needs a Boltzmann generator (a flow with a target)")
        training = self.model.training
        self.model.eval()
        seed = check_seed(self.config.seed, self.step, salt)
        out, evaluations = sample_check(
            self.generator, n, torch.Generator(self.device).manual_seed(seed)
        )
        self.evaluations += evaluations
        self.model.train(training)
        return out

    # ------------------------------------------------------------------ one step
    def _train_step(self) -> tuple[str | None, dict[str, float]]:
        cfg = self.config
        batch = None
        if self.objective.needs_data:
            idx = torch.randint(
                self.train_data.shape[0], (cfg.batch_size,), generator=self.batch_gen
            )
            batch = self.train_data[idx.to(self.device)]
            if not bool(torch.isfinite(batch).all()):
                return "non-finite values in the data batch", {}
        out = self.objective.step(self.model, batch, self.sample_gen)
        self.evaluations += out.evaluations
        if out.skip is not None:
            return out.skip, out.logs
        loss = out.loss
        if loss is None or not bool(torch.isfinite(loss)):
            return "non-finite loss", out.logs
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.flow.parameters(), cfg.clip)
        if not bool(torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return "non-finite gradient", out.logs
        self.optimizer.step()
        out.logs["loss"] = float(loss.detach())
        out.logs["grad_norm"] = float(norm)
        return None, out.logs

    def snapshot(self) -> dict[str, Tensor]:
        """A detached copy of the model's parameters and buffers (for ``load_state_dict``)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def fit_more(self, steps: int, max_seconds: float | None = None) -> TrainResult:
        """Trains ``steps`` more steps in memory: ``config.steps`` grows, nothing is resumed.

        The learning-rate schedule is evaluated at the new ``config.steps``, so a constant
        schedule (``min_lr_ratio = 1``) is the one that does not jump. ``max_seconds`` stops
        (and validates) earlier, as in :meth:`fit`.
        """
        self.config = replace(self.config, steps=self.step + steps)
        return self.fit(resume=False, max_seconds=max_seconds)

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        resume: bool = True,
        max_seconds: float | None = None,
        callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> TrainResult:
        """Runs (or resumes) training until ``config.steps``, early stopping or the budget.

        Args:
            resume: continue from ``out_dir/checkpoint.pt`` when it exists.
            max_seconds: wall-clock budget of this call; when spent, the run validates,
                checkpoints and stops (``out_of_time`` in the result).
            callback: called as ``callback(step, logs)`` at the end of every step, taken or
                skipped, after its validation and checkpoint (``logs`` holds the step's loss
                terms; empty or partial for a skipped step).

        Returns:
            The :class:`TrainResult`.

        Raises:
            TrainingDivergedError: more than ``config.max_nonfinite`` skipped steps.
            CheckpointError: the checkpoint to resume from is corrupt or of another system.
        """
        from rich.progress import Progress

        start = time.perf_counter()
        cfg = self.config
        resumed_from = None
        ckpt = None if self.out_dir is None else self.out_dir / "checkpoint.pt"
        if resume and ckpt is not None and ckpt.exists():
            self.load_state(read_checkpoint(ckpt, self.device), ckpt)
            resumed_from = self.step
            self.log.truncate(self.step)
            self.log.write({"step": self.step, "event": "resumed"})
        else:
            self.log.restart()
        self.model.train()
        stopped_early = out_of_time = False
        show = cfg.progress and sys.stderr.isatty()
        with Progress(disable=not show, transient=True) as bar:
            task = bar.add_task("training", total=cfg.steps, completed=self.step)
            while self.step < cfg.steps:
                reason, logs = self._train_step()
                with warnings.catch_warnings():
                    # a skipped first step leaves the optimiser unstepped: the schedule still
                    # follows the step count, which is what we want
                    warnings.filterwarnings(
                        "ignore", "Detected call of `lr_scheduler.step", UserWarning
                    )
                    self.scheduler.step()
                self.step += 1
                bar.update(task, advance=1)
                if reason is not None:
                    self.skipped += 1
                    self.log.write({"step": self.step, "event": "skipped", "reason": reason})
                    if self.skipped > cfg.max_nonfinite:
                        raise TrainingDivergedError(
                            f"training stopped at step {self.step}: {self.skipped} steps skipped "
                            f"(> max_nonfinite = {cfg.max_nonfinite}); last cause: {reason}"
                        )
                elif self.step % self.log_every == 0:
                    lr = self.scheduler.get_last_lr()[0]
                    self.log.write({"step": self.step, "lr": lr, **logs})
                if max_seconds is not None and time.perf_counter() - start > max_seconds:
                    out_of_time = True
                if self.step % cfg.val_every == 0 or self.step == cfg.steps or out_of_time:
                    self.metrics = self.validate()
                    self.log.write({"step": self.step, "event": "validation", **self.metrics})
                    monitored = self.objective.monitor(self.metrics)
                    if monitored < self.best:
                        self.best, self.since_best = monitored, 0
                        self._checkpoint("best.pt")
                    else:
                        self.since_best += 1
                    stopped_early = 0 < cfg.patience <= self.since_best
                if (
                    stopped_early
                    or out_of_time
                    or self.step == cfg.steps
                    or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0)
                ):
                    self._checkpoint()
                if callback is not None:
                    callback(self.step, logs)
                if stopped_early or out_of_time:
                    event = "early_stop" if stopped_early else "out_of_time"
                    self.log.write({"step": self.step, "event": event})
                    break
        self.model.eval()
        result = TrainResult(
            step=self.step,
            skipped=self.skipped,
            stopped_early=stopped_early,
            resumed_from=resumed_from,
            out_of_time=out_of_time,
            metrics=dict(self.metrics),
            target_evaluations=self.evaluations,
            seconds=time.perf_counter() - start,
        )
        self.log.write_final(
            {
                "step": result.step,
                "skipped": result.skipped,
                "stopped_early": stopped_early,
                "target_evaluations": self.evaluations,
                **self.metrics,
            }
        )
        return result
