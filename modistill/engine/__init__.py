"""modistill.engine: one training loop for every stage, checkpoints, resume, evaluation, DDP.

Generic on purpose: it trains any nn.Module through two callables, so it knows nothing of the models,
losses or data of the rest of the library.

    cfg = TrainConfig(epochs=30, batch_size=5)
    result = train_stage(model, loss_fn=..., predict_fn=..., train_set=..., val_set=..., cfg=cfg,
                         run_dir=Path("runs/x/step1_rgb"))
    test = evaluate_checkpoint(model, result.best_checkpoint, predict_fn, test_set, **eval_kwargs(cfg))
"""

from modistill.engine.checkpoint import (
    CheckpointError,
    checkpoint_base,
    load_checkpoint,
    load_weights,
    read_checkpoint_meta,
    save_checkpoint,
    unwrap_model,
)
from modistill.engine.config import TrainConfig
from modistill.engine.distributed import init_distributed
from modistill.engine.evaluate import EvalResult, eval_kwargs, evaluate, evaluate_checkpoint
from modistill.engine.files import CheckpointMeta, MetricsHeader, RunConfigFile
from modistill.engine.trainer import StageResult, train_stage

__all__ = [
    "CheckpointError",
    "CheckpointMeta",
    "EvalResult",
    "MetricsHeader",
    "RunConfigFile",
    "StageResult",
    "TrainConfig",
    "checkpoint_base",
    "eval_kwargs",
    "evaluate",
    "evaluate_checkpoint",
    "init_distributed",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint_meta",
    "save_checkpoint",
    "train_stage",
    "unwrap_model",
]
