r"""The training loop shared by every recommender of this package."""
from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch_geometric.data import HeteroData

from mllmrec_pyg import distributed
from mllmrec_pyg.data import train_edge_index
from mllmrec_pyg.metrics import EvaluationResult, Evaluator
from mllmrec_pyg.metrics.ranking import RANKING_METRICS
from mllmrec_pyg.nn.models.base import Recommender
from mllmrec_pyg.utils.paths import save_tensors
from mllmrec_pyg.utils.progress import progress_bar

from .early_stopping import EarlyStopping
from .metric_logger import MetricLogger
from .negative_sampler import UniformNegativeSampler

#: Settings a resumed run must share with the run that wrote the checkpoint.
_RESUME_KEYS = ('lr', 'weight_decay', 'batch_size', 'patience', 'val_metric', 'seed',
                'all_items_negatives', 'exclude_val_at_test', 'ks')


#: The fix a corrupt checkpoint met by ``--resume`` suggests.
RESUME_FIX = 'delete it or rerun without --resume'

#: The entries of a checkpoint written by :meth:`Trainer.save_checkpoint`.
_CHECKPOINT_KEYS = ('epoch', 'settings', 'model', 'optimizer', 'generator', 'torch_rng',
                    'early_stopping', 'best_state', 'history')


def read_checkpoint(path: str, fix: str = 'delete it or rerun with --force train'
                    ) -> dict[str, Any]:
    r"""Reads a checkpoint of :meth:`Trainer.save_checkpoint`; a missing file
    is a :class:`FileNotFoundError`, a corrupt, truncated or foreign one a
    one-line :class:`ValueError` naming the file and :obj:`fix`."""
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no checkpoint to resume from')
    if os.path.isdir(path):
        raise ValueError(f'{path}: is a folder, not a checkpoint; {fix}')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except (PermissionError, FileNotFoundError, IsADirectoryError):
        raise
    except Exception as exc:  # RuntimeError, KeyError, EOFError, OSError(EINVAL), ...
        raise ValueError(f'{path}: not a readable checkpoint (corrupt or truncated); '
                         f'{fix}') from exc
    if (not isinstance(state, dict) or any(k not in state for k in _CHECKPOINT_KEYS)
            or not isinstance(state['settings'], dict)):
        raise ValueError(f'{path}: not a checkpoint of this trainer; {fix}')
    return state


def history_mean(history: Sequence[dict[str, Any]], column: str) -> float:
    r"""The mean of :obj:`column` over the per-epoch log rows
    :obj:`history` (:obj:`0.0` without a row)."""
    values = [row[column] for row in history]
    return sum(values) / max(len(values), 1)


def loss_couples_batch(model: Recommender) -> bool:
    r"""Whether :obj:`model`'s loss on a batch differs from the mean of
    its losses on a split of the batch beyond the row-wise means (e.g.
    SOIL's in-batch InfoNCE), as the model's :obj:`loss_couples_batch`
    class attribute says (default: :obj:`False`)."""
    return bool(getattr(model, 'loss_couples_batch', False))


class _LossForward(torch.nn.Module):
    r"""Routes a recommender's :meth:`loss` through :meth:`forward`, so that
    :class:`~torch.nn.parallel.DistributedDataParallel` sees the call (its
    gradient all-reduce is armed by the wrapper's :meth:`forward`; calling
    :obj:`ddp.module.loss` would bypass it)."""
    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, user: torch.Tensor, pos_item: torch.Tensor,
                neg_item: torch.Tensor) -> torch.Tensor:
        return self.model.loss(user, pos_item, neg_item)


@dataclass
class TrainResult:
    r"""The outcome of :meth:`Trainer.fit`.

    Attributes:
        best_epoch (int): The (1-based) epoch with the best validation score;
            the model holds its parameters after :meth:`Trainer.fit`.
        epochs_trained (int): Epochs run in total (resumed runs included).
        stopped_early (bool): Whether patience ran out before
            :obj:`max_epochs`.
        val (EvaluationResult): Validation metrics of the best epoch.
        test (EvaluationResult, optional): Test metrics of the best epoch,
            computed once, after training.
        history (List[Dict[str, Any]]): The per-epoch log rows.
    """
    best_epoch: int
    epochs_trained: int
    stopped_early: bool
    val: EvaluationResult
    test: Optional[EvaluationResult]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mean_epoch_time(self) -> float:
        r"""Mean seconds of one training epoch (sampling and updates)."""
        return history_mean(self.history, 'train_time_s')

    @property
    def mean_eval_time(self) -> float:
        r"""Mean seconds of one validation evaluation."""
        return history_mean(self.history, 'eval_time_s')


class Trainer:
    r"""Trains a :class:`~mllmrec_pyg.nn.models.base.Recommender` with BPR
    as MMRec does, and selects the model on VALIDATION only.

    Each epoch draws one uniform negative per training interaction
    (:class:`UniformNegativeSampler`, batches of :obj:`batch_size`, Adam),
    then evaluates the validation split by full ranking
    (:class:`~mllmrec_pyg.metrics.Evaluator`).  Training stops when
    :obj:`val_metric` has not STRICTLY improved for more than
    :obj:`patience` epochs (:class:`EarlyStopping`) or after
    :obj:`max_epochs`.  The parameters of the best validation epoch are then
    restored and the test split is evaluated once, with them.

    With :obj:`out_dir`, every :obj:`checkpoint_every` epochs the full state
    (model, optimiser, sampler generator, early stopping, best parameters,
    history) is written to :obj:`out_dir/checkpoint.pt`, and per-epoch
    metrics to :obj:`out_dir/log.csv`; :meth:`fit` with :obj:`resume=True`
    continues from the checkpoint and reaches the same result as an
    uninterrupted run.

    Under :obj:`torchrun` (a :mod:`torch.distributed` process group with
    :math:`W > 1` ranks, see :mod:`mllmrec_pyg.distributed`) the model is
    trained with :class:`~torch.nn.parallel.DistributedDataParallel` and
    the result is the single-process one up to float rounding:

    * every rank draws the epoch's permutation and ALL its negatives from
      the same seeded generator (:obj:`seed`), so the global batches are
      exactly the single-process batches; rank :math:`r` takes the
      contiguous rows :func:`~mllmrec_pyg.distributed.shard_bounds` gives it
      (:math:`\lceil B / W \rceil` or :math:`\lfloor B / W \rfloor` rows
      when :math:`W` does not divide :math:`B`, e.g. the last batch);
    * the model's mean loss over a shard of :math:`n_r` rows is scaled by
      :math:`n_r W / B` before the backward pass, so DDP's mean all-reduce
      of the gradients is the gradient of the full batch's mean loss, also
      for unequal shards; a rank with an empty shard (:math:`B < W`) runs
      one row with weight :math:`0` so that it still joins the all-reduce.
      This is exact for losses that are means over the rows of the batch
      (BPR) and for :func:`~mllmrec_pyg.nn.loss.embedding_norm_loss` (the
      norm of the whole batch, made shard-aware by one all-reduce of three
      scalars).  A loss that couples the rows of a batch (SOIL's in-batch
      InfoNCE; a model says so with :obj:`loss_couples_batch = True`) is
      not split: every rank computes the whole global batch, which keeps
      the single-process update but divides no work;
    * the logged loss is the all-reduced global batch loss, validation
      shards the users (:class:`~mllmrec_pyg.metrics.Evaluator`) and
      gathers them in order, so early stopping decides identically on every
      rank;
    * only rank :obj:`0` writes :obj:`checkpoint.pt`, :obj:`log.csv` and
      TensorBoard; every rank reads the checkpoint on :obj:`resume`.

    Args:
        model (Recommender): The model, already on its device.
        data (torch_geometric.data.HeteroData): The dataset with its split.
        lr (float): Adam's learning rate. (default: :obj:`1e-3`)
        weight_decay (float): Adam's weight decay; models add their own
            regularisation in their loss. (default: :obj:`0.0`)
        batch_size (int): Training triples per step. (default: :obj:`2048`)
        max_epochs (int): Epoch budget. (default: :obj:`1000`)
        patience (int): Early-stopping patience. (default: :obj:`20`)
        val_metric (str): The selection metric. (default: :obj:`'recall@20'`)
        ks (Sequence[int]): Evaluation cut-offs. (default: :obj:`(5, 10, 20, 50)`)
        eval_batch_size (int): Users scored at once. (default: :obj:`1024`)
        exclude_val_at_test (bool): Exclude validation items when ranking
            for the test split. (default: :obj:`False`, as MMRec)
        seed (int): Seed of the negative sampler's generator.
            (default: :obj:`2024`)
        all_items_negatives (bool): Draw negatives from the whole catalogue
            instead of the items seen in training. (default: :obj:`False`)
        out_dir (str, optional): Where to write the checkpoint and the CSV
            log. (default: :obj:`None`)
        checkpoint_every (int): Epochs between checkpoints. (default: :obj:`1`)
        progress (bool): Show a progress bar. (default: :obj:`True`)
        tensorboard (bool): Also log to TensorBoard in :obj:`out_dir/tb`.
            (default: :obj:`False`)
    """
    def __init__(self, model: Recommender, data: HeteroData, *, lr: float = 1e-3,
                 weight_decay: float = 0.0, batch_size: int = 2048, max_epochs: int = 1000,
                 patience: int = 20, val_metric: str = 'recall@20',
                 ks: Sequence[int] = (5, 10, 20, 50), eval_batch_size: int = 1024,
                 exclude_val_at_test: bool = False, seed: int = 2024,
                 all_items_negatives: bool = False, out_dir: Optional[str] = None,
                 checkpoint_every: int = 1, progress: bool = True,
                 tensorboard: bool = False) -> None:
        if max_epochs < 1:
            raise ValueError(f'max_epochs must be at least 1, got {max_epochs}')
        if checkpoint_every < 1:
            raise ValueError(f'checkpoint_every must be at least 1, got {checkpoint_every}')
        self.model = model
        self.data = data
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_metric = val_metric
        self.ks = tuple(sorted(set(int(k) for k in ks)))
        self.exclude_val_at_test = exclude_val_at_test
        self.seed = seed
        self.all_items_negatives = all_items_negatives
        self.out_dir = out_dir
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.tensorboard = tensorboard

        self.sampler = UniformNegativeSampler(train_edge_index(data), int(data['item'].num_nodes),
                                              batch_size=batch_size,
                                              all_items=all_items_negatives)
        self.evaluator = Evaluator(data, ks=self.ks, batch_size=eval_batch_size,
                                   exclude_val_at_test=exclude_val_at_test)
        name, _, k = val_metric.partition('@')
        per_user = (*RANKING_METRICS, 'novelty')
        if not k.isdigit() or int(k) not in self.ks or name not in per_user:
            raise ValueError(f"val_metric '{val_metric}' must be a per-user metric "
                             f"({', '.join(per_user)}) at one of the cut-offs "
                             f"{list(self.ks)}, e.g. 'recall@20'")
        if 'val' not in self.evaluator.splits:
            raise ValueError('The dataset has no validation split (val_mask); model '
                             'selection needs one')
        params = [p for p in model.parameters() if p.requires_grad]
        # PyTorch's fused Adam kernel is ~4x faster than the per-tensor loop
        # on CPU for embedding tables (same update rule).
        fused = all(p.is_floating_point() and p.device.type in ('cpu', 'cuda') for p in params)
        self.optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay,
                                          fused=fused and len(params) > 0)
        self.generator = torch.Generator().manual_seed(seed)
        self.early_stopping = EarlyStopping(patience)
        self._ddp: Optional[torch.nn.Module] = None
        if distributed.is_distributed() and len(params) > 0:
            self._ddp = self._wrap_ddp(model)
        self._replicate_batches = loss_couples_batch(model)
        self.best_state: Optional[dict[str, torch.Tensor]] = None
        self.history: list[dict[str, Any]] = []
        self.epoch = 0

    @property
    def checkpoint_path(self) -> Optional[str]:
        return None if self.out_dir is None else os.path.join(self.out_dir, 'checkpoint.pt')

    def settings(self) -> dict[str, Any]:
        r"""The settings of this trainer, as stored in checkpoints."""
        return {'lr': self.lr, 'weight_decay': self.weight_decay,
                'batch_size': self.batch_size, 'max_epochs': self.max_epochs,
                'patience': self.patience, 'val_metric': self.val_metric,
                'ks': list(self.ks), 'exclude_val_at_test': self.exclude_val_at_test,
                'seed': self.seed, 'all_items_negatives': self.all_items_negatives}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.model.__class__.__name__}, lr={self.lr}, '
                f'batch_size={self.batch_size}, max_epochs={self.max_epochs}, '
                f'patience={self.patience}, val_metric={self.val_metric})')

    @staticmethod
    def _wrap_ddp(model: Recommender) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        # find_unused_parameters only where the model's loss may leave a
        # parameter without a gradient (FREEDOM with reg_weight=0, SOIL): the
        # search costs one walk of the autograd graph per step.  No buffer
        # sync per forward (forward_sync_buffers, formerly broadcast_buffers): the buffers
        # (graphs) are built identically on every rank.  DDP broadcasts rank
        # 0's parameters and buffers once, here.
        new = 'forward_sync_buffers' in inspect.signature(DistributedDataParallel).parameters
        sync: dict[str, Any] = {'forward_sync_buffers' if new else 'broadcast_buffers': False}
        return DistributedDataParallel(
            _LossForward(model),
            device_ids=[device.index] if device.type == 'cuda' else None,
            find_unused_parameters=bool(model.may_skip_parameters), **sync)

    def _device(self) -> torch.device:
        for tensor in self.model.parameters():
            return tensor.device
        return torch.device('cpu')

    def train_epoch(self) -> float:
        r"""Runs one pass over the training interactions and returns the
        mean batch loss."""
        self.model.train()
        device = self._device()
        total = torch.zeros((), dtype=torch.float64, device=device)
        batches = 0
        for user, pos, neg in self.sampler.epoch(self.generator):
            self.optimizer.zero_grad()
            if self._ddp is None:
                loss = self.model.loss(user.to(device), pos.to(device), neg.to(device))
                loss.backward()
                total += loss.detach()
            else:
                total += self._shard_step(user, pos, neg, device)
            self.optimizer.step()
            batches += 1
        if self._ddp is not None:
            torch.distributed.all_reduce(total)
        mean = float(total) / max(batches, 1)
        if mean != mean:
            raise ValueError(f'The training loss became NaN in epoch {self.epoch + 1}: '
                             f'lower the learning rate or raise the regularisation')
        return mean

    def _shard_step(self, user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                    device: torch.device) -> torch.Tensor:
        r"""The backward pass of this rank's shard of one global batch;
        returns the shard's share of the global batch loss (the shares sum
        to it over the ranks)."""
        assert self._ddp is not None
        if self._replicate_batches:
            # Every rank computes the same full-batch gradient; DDP's mean
            # of identical gradients is that gradient.
            loss = self._ddp(user.to(device), pos.to(device), neg.to(device))
            loss.backward()
            return loss.detach() / distributed.world_size()
        size = user.numel()
        start, end = distributed.shard_bounds(size)
        rows = end - start
        if rows == 0:
            # Fewer rows than ranks: this rank still joins the all-reduce,
            # with one row of weight zero.
            start, end = 0, 1
        weight = rows / size
        with distributed.global_batch(size, rows):
            loss = self._ddp(user[start:end].to(device), pos[start:end].to(device),
                             neg[start:end].to(device))
            (loss * (weight * distributed.world_size())).backward()
        return loss.detach() * weight

    def save_checkpoint(self) -> None:
        r"""Writes the full training state to :attr:`checkpoint_path`."""
        path = self.checkpoint_path
        if path is None or not distributed.is_main_process():
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        state = {
            'epoch': self.epoch,
            'settings': self.settings(),
            'model': self.model.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'generator': self.generator.get_state(),
            'torch_rng': torch.get_rng_state(),
            'early_stopping': self.early_stopping.state_dict(),
            'best_state': self.best_state,
            'history': self.history,
        }
        # Write then rename: an interrupted save never corrupts the last one.
        save_tensors(state, path)

    def load_checkpoint(self, path: str,
                        fix: str = 'delete it or rerun with --force train') -> None:
        r"""Restores the training state from :obj:`path`.

        A corrupt, truncated or foreign file is a one-line :class:`ValueError`
        naming the file and :obj:`fix`."""
        state = read_checkpoint(path, fix)
        mine = self.settings()
        changed = [k for k in _RESUME_KEYS if state['settings'].get(k) != mine[k]]
        if changed:
            diff = ', '.join(f'{k}: {state["settings"].get(k)} -> {mine[k]}' for k in changed)
            raise ValueError(f'{path} was written with other settings ({diff}); resume with '
                             f'the same settings or start a fresh run in another folder')
        try:
            self.model.load_state_dict(state['model'])
            self.optimizer.load_state_dict(state['optimizer'])
            self.generator.set_state(state['generator'])
            torch.set_rng_state(state['torch_rng'])
            self.early_stopping.load_state_dict(state['early_stopping'])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f'{path}: holds the state of another model (its parameter '
                             f'names or shapes differ); {fix}') from exc
        self.best_state = state['best_state']
        self.history = list(state['history'])
        self.epoch = int(state['epoch'])

    def fit(self, resume: bool = False, evaluate_test: bool = True) -> TrainResult:
        r"""Trains until early stopping or :obj:`max_epochs`, restores the
        best validation epoch's parameters and evaluates the test split.

        Args:
            resume (bool): Continue from :obj:`out_dir/checkpoint.pt` when it
                exists. (default: :obj:`False`)
            evaluate_test (bool): Evaluate the test split after training;
                :obj:`False` leaves :obj:`TrainResult.test` :obj:`None`
                (the points of a sweep, whose test is read only at the
                selected one). (default: :obj:`True`)
        """
        path = self.checkpoint_path
        if resume and path is not None and os.path.exists(path):
            self.load_checkpoint(path, fix=RESUME_FIX)
        logger = None
        if self.out_dir is not None and distributed.is_main_process():
            logger = MetricLogger(os.path.join(self.out_dir, 'log.csv'),
                                  os.path.join(self.out_dir, 'tb') if self.tensorboard else None)
            logger.restore(self.history)

        bar = progress_bar(self.max_epochs, self.model.__class__.__name__,
                           self.progress and distributed.is_main_process(),
                           unit='epoch', leave=True, initial=self.epoch)
        try:
            while self.epoch < self.max_epochs and not self.early_stopping.should_stop:
                start = time.perf_counter()
                loss = self.train_epoch()
                self.epoch += 1
                train_time = time.perf_counter() - start

                start = time.perf_counter()
                valid = self.evaluator.evaluate(self.model, splits=('val', ))['val']
                eval_time = time.perf_counter() - start
                score = valid[self.val_metric]
                improved = self.early_stopping.step(score, self.epoch)
                if improved:
                    self.best_state = {k: v.detach().cpu().clone()
                                       for k, v in self.model.state_dict().items()}

                row: dict[str, Any] = {'epoch': self.epoch, 'loss': loss,
                                       'train_time_s': train_time, 'eval_time_s': eval_time,
                                       'improved': int(improved)}
                row.update({f'val_{k}': v for k, v in valid.summary.items()})
                self.history.append(row)
                if logger is not None:
                    logger.log(row)
                if (self.epoch % self.checkpoint_every == 0 or self.early_stopping.should_stop
                        or self.epoch == self.max_epochs):
                    self.save_checkpoint()
                bar.update(1)
                bar.set_postfix(loss=f'{loss:.4f}', valid=f'{score:.4f}',
                                best=f'{self.early_stopping.best:.4f}@{self.early_stopping.best_epoch}')
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        # The other ranks may read what rank 0 just wrote (a grid's best
        # checkpoint).
        distributed.barrier()

        if self.best_state is None:
            raise ValueError('No epoch was trained (max_epochs reached by the checkpoint); '
                             'raise max_epochs to continue')
        self.model.load_state_dict(self.best_state)
        splits = [s for s in ('val', 'test') if s in self.evaluator.splits
                  and (evaluate_test or s != 'test')]
        results = self.evaluator.evaluate(self.model, splits=splits)
        return TrainResult(best_epoch=self.early_stopping.best_epoch, epochs_trained=self.epoch,
                           stopped_early=self.early_stopping.should_stop,
                           val=results['val'], test=results.get('test'),
                           history=list(self.history))
