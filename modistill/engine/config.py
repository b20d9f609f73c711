"""The typed training configuration of one stage (embedded in the experiment YAML under a stage's `train:`).

No `from __future__ import annotations` here on purpose: the project's config loader reads
`dataclasses.fields(TrainConfig)[i].type`, which must be a real type object, not a string.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from modistill.core.errors import UsageError

OPTIMIZERS = ("adam", "sgd", "adamw")
AMP_MODES = ("off", "bf16")


@dataclass
class TrainConfig:
    """How one stage is trained; every field has a default so a YAML file only names what it changes.

    Paper defaults (Garcia et al. 2018, REF §3): Adam, lr 1e-3 (Fig. 4 shows a later drop to 1e-4), a batch of
    5 videos, model selection on the best validation epoch.

    `batch_size` is the GLOBAL batch: under torchrun each of the `W` ranks loads `batch_size // W` samples per
    step, so the same config gives the same optimisation on 1 or W processes.
    Epochs in `lr_milestones` count completed epochs: milestone `m` multiplies the lr by `lr_gamma` from the
    (m+1)-th epoch on, like `torch.optim.lr_scheduler.MultiStepLR` stepped once per epoch.
    """

    epochs: int = 10
    batch_size: int = 8
    optimizer: Literal["adam", "sgd", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    grad_clip: float | None = None  # max global L2 norm of the gradients; None = no clipping
    amp: Literal["off", "bf16"] = "off"  # bf16 autocast on CPU and CUDA (no loss scaling needed for bf16)
    device: str = "auto"  # "auto" -> cuda if available else cpu; "cpu", "cuda", "cuda:1", ...
    num_workers: int = 0
    seed: int = 0
    deterministic: bool = True
    eval_every: int = 1  # validate every n epochs (the last epoch is always validated)
    eval_batch_size: int | None = None  # global; None = batch_size
    select_metric: str = "accuracy"  # an EvalResult.metrics() key, higher is better (REF §3)
    log_every: int = 10  # steps between step records in metrics.jsonl / TensorBoard
    progress: bool = True  # tqdm bars (rank 0 only)
    tensorboard: bool = True  # also write TensorBoard events under run_dir/tb (when tensorboard is installed)
    find_unused_parameters: bool = False  # DDP: needed when some trainable params get no gradient in a step
    drop_last: bool = False  # drop the last incomplete training batch
    # torch.compile the training forward/backward (after DDP wrapping). Off by default: measured on the 2-core
    # CPU it does not pay for itself (docs/benchmarks_model.md, "torch.compile"); try it on GPUs.
    compile: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise UsageError (a ValueError) listing every bad field (wrong type or out of range)."""
        problems: list[str] = []

        def num(name: str, lo: float, strict: bool, integer: bool = False, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            kinds = (int,) if integer else (int, float)
            if isinstance(v, bool) or not isinstance(v, kinds):
                what = "an int" if integer else "a number"
                problems.append(f"{name} must be {what}, got {v!r} ({type(v).__name__})")
            elif (v <= lo) if strict else (v < lo):
                problems.append(f"{name} must be {'>' if strict else '>='} {lo:g}, got {v!r}")

        num("epochs", 0, False, integer=True)
        num("batch_size", 1, False, integer=True)
        num("eval_batch_size", 1, False, integer=True, optional=True)
        num("lr", 0, True)
        num("weight_decay", 0, False)
        num("momentum", 0, False)
        num("lr_gamma", 0, True)
        num("grad_clip", 0, True, optional=True)
        num("num_workers", 0, False, integer=True)
        num("seed", 0, False, integer=True)
        num("eval_every", 1, False, integer=True)
        num("log_every", 1, False, integer=True)
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.amp not in AMP_MODES:
            problems.append(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if not isinstance(self.lr_milestones, (list, tuple)) or any(
            isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in self.lr_milestones
        ):
            problems.append(f"lr_milestones must be a list of ints >= 1, got {self.lr_milestones!r}")
        if not isinstance(self.select_metric, str) or not self.select_metric:
            problems.append(f"select_metric must be a metric name, got {self.select_metric!r}")
        if not isinstance(self.device, str):
            problems.append(f"device must be a string such as 'auto', 'cpu', 'cuda:0', got {self.device!r}")
        for name in (
            "deterministic",
            "progress",
            "tensorboard",
            "find_unused_parameters",
            "drop_last",
            "compile",
        ):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false, got {getattr(self, name)!r}")
        if problems:
            raise UsageError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (lists, not tuples)."""
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(d["lr_milestones"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict`; unknown keys are an error (a typo must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UsageError(f"unknown TrainConfig keys: {unknown} (known: {sorted(names)})")
        return cls(**d)
