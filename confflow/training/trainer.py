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

import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from confflow.atomic import write_json, write_text
from confflow.errors import RunError
from confflow.models import BoltzmannGenerator
from confflow.reweighting import kish_ess, largest_weight_share
from confflow.training.checkpoint import (
    check_compatible,
    check_same_training,
    read_checkpoint,
    write_checkpoint,
)
from confflow.training.config import TrainConfig
from confflow.training.losses import energy_loss, mixed_loss, nll_loss

__all__ = ["TrainResult", "Trainer", "TrainingDivergedError", "resolve_device"]


class TrainingDivergedError(RunError):
    """Too many steps were skipped for non-finite batches, losses or gradients."""


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are checked and returned."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    return device


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        step: steps completed.
        skipped: steps skipped by the non-finite guard.
        stopped_early: early stopping ended the run.
        out_of_time: the wall-clock budget of :meth:`Trainer.fit` ended the run.
        resumed_from: step of the checkpoint the run resumed from (``None``: fresh start).
        metrics: last validation metrics (``val_nll`` nats, ``ess`` fraction, ...).
        target_evaluations: energy evaluations spent by training (reverse-KL samples) and
            validation (ESS estimates).
        seconds: wall time of this process's part of the run.
    """

    step: int
    skipped: int
    stopped_early: bool
    resumed_from: int | None
    out_of_time: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    target_evaluations: int = 0
    seconds: float = 0.0


def _jsonable(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Trainer:
    """Trains a :class:`~confflow.models.BoltzmannGenerator` by NLL, reverse KL or a mix.

    Args:
        model: the Boltzmann generator (moved to the configured device).
        config: training hyper-parameters.
        train_data: ``[M, *event_shape]`` training samples (positions in nm for molecules);
            required unless ``config.kl_weight == 1``.
        val_data: optional validation samples, for ``val_nll`` and early stopping.
        out_dir: folder for checkpoints and logs (``None``: keep nothing on disk).
        log_every: steps between training-loss log lines.

    Raises:
        ValueError: missing or mis-shaped data.
    """

    def __init__(
        self,
        model: BoltzmannGenerator,
        config: TrainConfig,
        train_data: Tensor | None = None,
        val_data: Tensor | None = None,
        out_dir: str | Path | None = None,
        log_every: int = 10,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        shape = tuple(model.event_shape)
        for name, data in (("train_data", train_data), ("val_data", val_data)):
            if data is not None and (
                data.dim() != 1 + len(shape) or tuple(data.shape[1:]) != shape
            ):
                raise ValueError(
                    f"{name}: expected [M, {', '.join(map(str, shape))}], got {tuple(data.shape)}"
                )
        if config.kl_weight < 1 and train_data is None:
            raise ValueError(
                f"train_data: required for kl_weight = {config.kl_weight} < 1 (NLL term)"
            )
        if log_every < 1:
            raise ValueError(f"log_every: must be >= 1, got {log_every}")
        self.log_every = log_every
        self.train_data = None if train_data is None else train_data.to(self.device, torch.float32)
        self.val_data = None if val_data is None else val_data.to(self.device, torch.float32)
        self.out_dir = None if out_dir is None else Path(out_dir)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.optimizer = torch.optim.AdamW(
            model.flow.parameters(), lr=config.lr, weight_decay=config.weight_decay
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
        rng = {
            "torch": torch.get_rng_state(),
            "batch": self.batch_gen.get_state(),
            "sample": self.sample_gen.get_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "fingerprint": self.model.fingerprint,
            "model_config": self.model.config.to_dict(),
            "train_config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "step": self.step,
            "skipped": self.skipped,
            "best": self.best,
            "since_best": self.since_best,
            "evaluations": self.evaluations,
            "metrics": dict(self.metrics),
        }

    def load_state(self, data: dict[str, Any], path: str | Path) -> None:
        """Restores a checkpoint written by :meth:`state` (after checking it fits the model)."""
        check_compatible(data, self.model, path)
        check_same_training(data, self.config.to_dict(), path)
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        rng = data["rng"]
        torch.set_rng_state(rng["torch"])
        self.batch_gen.set_state(rng["batch"])
        self.sample_gen.set_state(rng["sample"].to(self.sample_gen.device))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step = int(data["step"])
        self.skipped = int(data["skipped"])
        self.best = float(data["best"])
        self.since_best = int(data["since_best"])
        self.evaluations = int(data["evaluations"])
        self.metrics = dict(data["metrics"])

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        clean = {k: _jsonable(v) if isinstance(v, float) else v for k, v in record.items()}
        with open(self.out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(clean) + "\n")

    def _truncate_log(self, step: int) -> None:
        """Drops log lines written after the checkpoint we resume from."""
        path = self.out_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the crash
            if record.get("step", 0) <= step:
                kept.append(line)
        write_text(path, "".join(k + "\n" for k in kept))

    def _checkpoint(self, name: str = "checkpoint.pt") -> None:
        if self.out_dir is not None:
            write_checkpoint(self.out_dir / name, self.state())

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation metrics of the current model.

        Returns:
            ``val_nll`` (nats, when there is validation data) and, from ``val_batch_size``
            fresh flow samples seeded by the step (so resumed runs agree): ``ess`` (fraction),
            ``largest_weight``, ``kl`` (``E_q[u + log q]`` over weighted samples, nats) and
            ``invalid`` (fraction of samples whose energy is not finite).
        """
        self.model.eval()
        out: dict[str, float] = {}
        n = self.config.val_batch_size
        if self.val_data is not None:
            total = 0.0
            for chunk in self.val_data.split(n):
                total += float(-self.model.log_prob(chunk).double().sum())
            out["val_nll"] = total / self.val_data.shape[0]
        gen = torch.Generator(self.device).manual_seed(self.config.seed * 1_000_003 + self.step)
        x, log_q = self.model.sample(n, gen)
        log_w = self.model.log_weights(x, log_q)
        self.evaluations += int(torch.isfinite(log_q).sum())
        if bool(torch.isfinite(log_w).any()):
            out["ess"] = kish_ess(log_w)
            out["largest_weight"] = largest_weight_share(log_w)
            finite = torch.isfinite(log_w)
            out["kl"] = float(-log_w[finite].mean())
            out["invalid"] = float((~finite).double().mean())
        self.model.train()
        return out

    def _monitor(self, metrics: dict[str, float]) -> float:
        """The validation form of the training loss: ``(1 - w) val_nll + w kl`` (nats)."""
        w = self.config.kl_weight
        nll, kl = metrics.get("val_nll"), metrics.get("kl", math.inf)
        if nll is None or w == 1:
            return kl
        return nll if w == 0 else (1 - w) * nll + w * kl

    # ------------------------------------------------------------------ one step
    def _train_step(self) -> tuple[str | None, dict[str, float]]:
        cfg = self.config
        nll = kl = None
        logs: dict[str, float] = {}
        if cfg.kl_weight < 1:
            idx = torch.randint(
                self.train_data.shape[0], (cfg.batch_size,), generator=self.batch_gen
            )
            batch = self.train_data[idx.to(self.device)]
            if not bool(torch.isfinite(batch).all()):
                return "non-finite values in the data batch", logs
            nll = nll_loss(self.model, batch)
            logs["nll"] = float(nll.detach())
        if cfg.kl_weight > 0:
            kl, log_w = energy_loss(
                self.model,
                cfg.kl_batch_size,
                cfg.cap_threshold,
                cfg.cap_scale,
                cfg.forward_weight,
                self.sample_gen,
            )
            self.evaluations += cfg.kl_batch_size
            logs["kl"] = float(kl.detach())
            if bool(torch.isfinite(log_w).all()):
                logs["train_ess"] = kish_ess(log_w)
        loss = mixed_loss(nll, kl, cfg.kl_weight)
        if not bool(torch.isfinite(loss)):
            return "non-finite loss", logs
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.flow.parameters(), cfg.clip)
        if not bool(torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return "non-finite gradient", logs
        self.optimizer.step()
        logs["loss"] = float(loss.detach())
        logs["grad_norm"] = float(norm)
        return None, logs

    def snapshot(self) -> dict[str, Tensor]:
        """A detached copy of the model's parameters and buffers (for ``load_state_dict``)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def fit_more(self, steps: int) -> TrainResult:
        """Trains ``steps`` more steps in memory: ``config.steps`` grows, nothing is resumed.

        The learning-rate schedule is evaluated at the new ``config.steps``, so a constant
        schedule (``min_lr_ratio = 1``) is the one that does not jump.
        """
        self.config = replace(self.config, steps=self.step + steps)
        return self.fit(resume=False)

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = True, max_seconds: float | None = None) -> TrainResult:
        """Runs (or resumes) training until ``config.steps``, early stopping or the budget.

        Args:
            resume: continue from ``out_dir/checkpoint.pt`` when it exists.
            max_seconds: wall-clock budget of this call; when spent, the run validates,
                checkpoints and stops (``out_of_time`` in the result).

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
            self._truncate_log(self.step)
            self._log({"step": self.step, "event": "resumed"})
        elif self.out_dir is not None:
            (self.out_dir / "metrics.jsonl").unlink(missing_ok=True)
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
                    self._log({"step": self.step, "event": "skipped", "reason": reason})
                    if self.skipped > cfg.max_nonfinite:
                        raise TrainingDivergedError(
                            f"training stopped at step {self.step}: {self.skipped} steps skipped "
                            f"(> max_nonfinite = {cfg.max_nonfinite}); last cause: {reason}"
                        )
                elif self.step % self.log_every == 0:
                    lr = self.scheduler.get_last_lr()[0]
                    self._log({"step": self.step, "lr": lr, **logs})
                if max_seconds is not None and time.perf_counter() - start > max_seconds:
                    out_of_time = True
                if self.step % cfg.val_every == 0 or self.step == cfg.steps or out_of_time:
                    self.metrics = self.validate()
                    self._log({"step": self.step, "event": "validation", **self.metrics})
                    monitored = self._monitor(self.metrics)
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
                if stopped_early or out_of_time:
                    event = "early_stop" if stopped_early else "out_of_time"
                    self._log({"step": self.step, "event": event})
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
        if self.out_dir is not None:
            final = {
                "step": result.step,
                "skipped": result.skipped,
                "stopped_early": stopped_early,
                "target_evaluations": self.evaluations,
                **{k: _jsonable(v) for k, v in self.metrics.items()},
            }
            write_json(self.out_dir / "final.json", final)
        return result
