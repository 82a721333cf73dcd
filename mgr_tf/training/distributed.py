"""Training on several devices or machines: `--distribute mirrored | multiworker | auto` (tf.distribute).

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras#20585), and under
`MirroredStrategy` it keeps batch-norm moving statistics per replica and scales batch-level losses (the
soft-Spearman term) and the L2 penalty by the number of replicas. So both strategies train here with one
custom step (`strategy.run`), and the run is otherwise the single-process one: the same model, phases,
callbacks (early stopping, learning-rate reduction on plateau, the best-weights rule, the best checkpoint,
the history CSV, TensorBoard), report and export.

- **Batch and loss.** `--batch-size` is the global batch B; each of the R replicas takes B / R. A replica's loss
  is the single-process loss of its own batch (the task's losses, fixed or learned multitask weights, the L2
  penalty) times its share of the global batch, n_r / sum(n), so the summed gradients are those of the
  global batch's loss. Batch normalisation is synchronised (statistics of the global batch), so with the
  same data order a run matches the single-process one up to float rounding; only the soft-Spearman term is
  computed over each replica's batch instead of the global one.
- **Input.** Each worker reads its own contiguous part of the TFDS records (`make_dataset(shard=...)` inside
  `distribute_datasets_from_function`) with its own seeded shuffle, patch crops and mixup, repeated; an
  epoch is max over workers of ceil(clips / per-worker batch) steps, so every worker sees all its clips each
  epoch and all take the same number of steps. Dropout and SpecAugment draw per replica (seeds offset by rank).
- **Validation and decisions.** The chief scores the whole validation split (as `fit` does) and its values
  reach every worker through one all-reduce, so all workers take the same early-stopping and learning-rate
  decisions from the same numbers.
- **Fault tolerance.** Every epoch each worker saves a `tf.train.CheckpointManager` checkpoint (model,
  optimizer, epoch, callback state, best weights): the chief into `RUN_DIR/backup/<phase>_distributed`,
  the others into their scratch folders. A restarted cluster restores the chief's latest checkpoint and goes
  on with the next epoch (the data order after a restart is a fresh one, as with `BackupAndRestore`). When a
  worker dies the others stop with one line (TensorFlow's coordination service notices within seconds);
  restarting every worker with the same command resumes the run.
- **Chief only.** The chief keeps the run folder; the others run in `RUN_DIR/workertemp_<rank>/`, removed at
  the end (`mgr_tf.training.cluster`), without baseline or export.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mgr_tf.core.cli import UserError
from mgr_tf.core.config import ModelConfig, RegressionConfig, TrainConfig
from mgr_tf.data import make_dataset
from mgr_tf.data.pipeline import split_ids
from mgr_tf.data.spec import DataSpec
from mgr_tf.losses import build_learned_weighting_model
from mgr_tf.models import get_backbone
from mgr_tf.models.build import load_keras_model, set_backbone_trainable
from mgr_tf.tasks import Task
from mgr_tf.training import cluster
from mgr_tf.training import fit as one_process
from mgr_tf.training.fit import callbacks, task_callbacks
from mgr_tf.training.plan import Plan

SUM = tf.distribute.ReduceOp.SUM
# Offset of replica k's dropout / augmentation seed: k * this (replica 0 keeps the single-process stream).
SEED_STRIDE = 7919
# Callback attributes saved in a checkpoint, so a resumed phase keeps its patience counters and best values.
CALLBACK_STATE = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")
# Errors of a collective whose peer has gone away.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
               tf.errors.AbortedError)

_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


# ----------------------------------------------------------------------------------------------- strategy
def strategy_for(mode: str) -> tf.distribute.Strategy | None:
    """The strategy of `--distribute mode` (created once per process; None = train in this process alone).

    Raises:
        UserError: TF_CONFIG is missing or bad, or the multi-worker strategy comes too late (it must be created
            before TensorFlow runs its first op: `runner.run` does so first).
    """
    problem = cluster.problem(mode)
    if problem:
        raise UserError(problem)
    if mode == "auto":
        task = cluster.this_task()
        several = task is not None and task.num_workers > 1
        mode = cluster.resolve_mode(mode, gpus=0 if several else len(tf.config.list_physical_devices("GPU")))
    if mode == "none":
        return None
    if mode not in _STRATEGIES:
        if mode == "multiworker":
            try:
                _STRATEGIES[mode] = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as exc:
                raise UserError(f"--distribute multiworker: {exc} (start it as python -m mgr_tf.train)") from None
        else:
            devices = ([d.name for d in tf.config.list_logical_devices("GPU")]
                       or [d.name for d in tf.config.list_logical_devices("CPU")])
            _STRATEGIES[mode] = tf.distribute.MirroredStrategy(devices)
    return _STRATEGIES[mode]


def _task(strategy) -> cluster.Task | None:
    """This process's cluster task under a multi-worker strategy (None for one process)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return cluster.this_task()
    return None


def for_this_task(plan: Plan) -> Plan:
    """The plan this process runs: creates the strategy now (the multi-worker one must come before any
    TensorFlow op) and gives a worker other than the chief a scratch run folder, no export and no baseline."""
    if plan.train.distribute == "none":
        return plan
    task = _task(strategy_for(plan.train.distribute))
    if task is None or task.is_chief:
        return plan
    scratch = cluster.scratch_dir(plan.run_dir, task.rank)
    shutil.rmtree(scratch, ignore_errors=True)  # left by a killed run: scratch only
    return dataclasses.replace(plan, run_dir=scratch, export_name=None, baseline=False)


def discard_scratch(plan: Plan) -> None:
    """Removes a worker's scratch run folder (nothing for the chief's)."""
    if plan.train.distribute != "none" and plan.run_dir.name.startswith(cluster.SCRATCH_PREFIX):
        shutil.rmtree(plan.run_dir, ignore_errors=True)


def replica_batch(strategy, global_batch: int) -> int:
    """The per-replica batch of a global batch.

    Raises:
        UserError: the global batch does not split evenly over the replicas.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise UserError(f"--batch-size {global_batch} is the global batch: it must be a multiple of the "
                        f"{replicas} replicas")
    return global_batch // replicas


def input_pipelines(strategy) -> int:
    """Input pipelines of a strategy: one per worker."""
    task = _task(strategy)
    return task.num_workers if task is not None else 1


def train_input(strategy, spec: DataSpec):
    """(distributed training dataset, steps per epoch): each input pipeline reads its own shard of the records,
    batched per replica and repeated; an epoch lets every pipeline see each of its clips once."""
    batch = replica_batch(strategy, spec.config.batch_size)
    pipelines = input_pipelines(strategy)
    task = _task(strategy)
    mine = task.rank if task is not None else 0  # = the input pipeline id of this worker
    shards = [(i, pipelines) if pipelines > 1 else None for i in range(pipelines)]
    counts = [len(split_ids(spec, "train", shard=shard)) for shard in shards]
    if min(counts) == 0:
        raise UserError(f"the training split has too few clips for {pipelines} workers (per worker: {counts})")
    data = dataclasses.replace(spec.config, batch_size=batch)
    if data.variable_length and not spec.patch:
        # Batches by length: sum over buckets of ceil(clips / batch), more than ceil(clips / batch). This
        # worker counts its own in one pass; a sum over the workers tells each the others' counts.
        own = int(make_dataset(data, "train", shard=shards[mine], shuffle=False).reduce(
            np.int64(0), lambda n, *_: n + 1))
        batches = [own] if pipelines == 1 else all_sum_fn(strategy)(np.eye(pipelines)[mine] * own).round()
    else:
        batches = [math.ceil(n / batch) for n in counts]
    local = strategy.num_replicas_in_sync // pipelines
    steps = max(math.ceil(int(n) / local) for n in batches)

    def dataset_fn(context: tf.distribute.InputContext):
        return make_dataset(data, "train", shard=shards[context.input_pipeline_id]).repeat()

    return strategy.distribute_datasets_from_function(dataset_fn), steps


# ----------------------------------------------------------------------------------------------- losses, logs
def unreduced(loss: keras.losses.Loss) -> keras.losses.Loss:
    """A copy of a Keras loss that returns its values unreduced (so no replica scaling of Keras's applies)."""
    return type(loss).from_config({**loss.get_config(), "reduction": None})


def batch_losses(losses: dict, y: dict, pred: dict, sample_weight=None) -> dict:
    """{output: the loss of one batch}, as Keras's default reduction computes it (sum / number of values)."""
    out = {}
    for name, loss in losses.items():
        values = loss(y[name], pred[name]) if sample_weight is None else loss(y[name], pred[name], sample_weight)
        values = tf.cast(values, tf.float32)
        out[name] = tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.size(values), tf.float32))
    return out


def total_loss(fit_model, per_output: dict, weights: dict):
    """The training objective of one batch: the weighted (fixed or learned) task losses plus the L2 penalty."""
    if hasattr(fit_model, "weighted_total"):  # learned multitask weights (mgr_tf.losses)
        total = fit_model.weighted_total(per_output)
    else:
        total = tf.add_n([value * weights.get(name, 1.0) for name, value in per_output.items()])
    if fit_model.losses:
        total += tf.add_n([tf.cast(loss, tf.float32) for loss in fit_model.losses])
    return total


class Trackers:
    """The epoch's logged values, named as `fit` names them: loss, `<output>_loss` (several outputs) and the
    task's metrics (`accuracy`, or `<output>_spearman` ...). Plain (not distributed) Keras metrics.

    Args:
        task: the task.
        learned: learned multitask weights (whose per-output losses `fit` averages per batch).
    """

    def __init__(self, task: Task, learned: bool):
        several = len(task.outputs) > 1
        self.loss = keras.metrics.Mean()
        self.output_losses = {name: keras.metrics.Mean() for name in task.outputs} if several else {}
        self.per_batch = learned
        self.metrics = {name: metrics for name, metrics in task.metrics().items()}
        self.names = ["loss", *(f"{name}_loss" for name in self.output_losses)]
        self.names += [f"{name}_{m.name}" if several else m.name for name, ms in self.metrics.items() for m in ms]

    def update(self, total, per_output: dict, n, y: dict, pred: dict) -> None:
        """Adds one batch: its total loss, its per-output losses, its size, targets and predictions."""
        self.loss.update_state(total, sample_weight=n)
        for name, tracker in self.output_losses.items():
            tracker.update_state(per_output[name], sample_weight=1.0 if self.per_batch else n)
        for name, metrics in self.metrics.items():
            for metric in metrics:
                metric.update_state(y[name], pred[name])

    def reset(self) -> None:
        for tracker in [self.loss, *self.output_losses.values(), *self.all_metrics()]:
            tracker.reset_state()

    def all_metrics(self) -> list:
        return [m for ms in self.metrics.values() for m in ms]

    def results(self, prefix: str = "") -> dict[str, float]:
        values = [self.loss, *self.output_losses.values(), *self.all_metrics()]
        return {prefix + name: float(v.result()) for name, v in zip(self.names, values)}


# ----------------------------------------------------------------------------------------------- steps
def train_step(strategy, fit_model, task: Task, regression: RegressionConfig, trackers: Trackers):
    """A tf.function(iterator) running one synchronous step on every replica (see the module docstring)."""
    losses = {name: unreduced(loss) for name, loss in task.losses(regression).items()}
    weights = task.loss_weights(regression) or {}
    variables = fit_model.trainable_variables
    optimizer = fit_model.optimizer

    def replica_step(batch):
        features, targets, *rest = batch
        n = tf.cast(tf.shape(next(iter(targets.values())))[0], tf.float32)
        share = n / tf.distribute.get_replica_context().all_reduce(SUM, n)
        with tf.GradientTape() as tape:
            pred = fit_model(features, training=True)
            per_output = batch_losses(losses, targets, pred, rest[0] if rest else None)
            scaled = total_loss(fit_model, per_output, weights) * share
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        sums = tf.stack([scaled, n, *(per_output[k] * share for k in task.outputs)])
        return sums, targets, {k: pred[k] for k in task.outputs}

    @tf.function
    def step(iterator):
        sums, targets, pred = strategy.run(replica_step, args=(next(iterator),))
        sums = strategy.reduce(SUM, sums, axis=None)
        targets = {k: strategy.gather(v, axis=0) for k, v in targets.items()}
        pred = {k: strategy.gather(v, axis=0) for k, v in pred.items()}
        per_output = {k: sums[2 + i] for i, k in enumerate(task.outputs)}
        trackers.update(sums[0], per_output, sums[1], targets, pred)

    return step


def validate_fn(fit_model, task: Task, regression: RegressionConfig, trackers: Trackers):
    """fn(dataset) -> the validation logs (`val_...`) of the whole split, in this process (as `fit` does)."""
    losses = {name: unreduced(loss) for name, loss in task.losses(regression).items()}
    weights = task.loss_weights(regression) or {}

    @tf.function
    def batch_step(features, targets):
        pred = fit_model(features, training=False)
        per_output = batch_losses(losses, targets, pred)
        n = tf.cast(tf.shape(next(iter(targets.values())))[0], tf.float32)
        trackers.update(total_loss(fit_model, per_output, weights), per_output, n, targets, pred)

    def validate(ds) -> dict[str, float]:
        trackers.reset()
        for features, targets, *_ in ds:
            batch_step({k: v for k, v in features.items() if k != "track_id"}, targets)
        return trackers.results("val_")

    return validate


def all_sum_fn(strategy):
    """fn(values) -> the sum over workers of each worker's values (one all-reduce; float64 vectors)."""
    local = strategy.num_replicas_in_sync // input_pipelines(strategy)

    @tf.function
    def all_sum(values):
        return strategy.run(lambda v: tf.distribute.get_replica_context().all_reduce(SUM, v / local), args=(values,))

    return lambda values: strategy.experimental_local_results(all_sum(tf.constant(values, tf.float64)))[0].numpy()


# ----------------------------------------------------------------------------------------------- the model
def _layers(layer):
    for sub in getattr(layer, "layers", []):
        yield sub
        yield from _layers(sub)


def replicate(model, strategy, rank: int):
    """The model's twin with distributed variables (a .keras round trip inside the strategy's scope), its batch
    normalisation synchronised over the replicas and its random streams offset per replica."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        with strategy.scope():
            twin = load_keras_model(path)
    # A .keras file does not keep the random streams' states (and their names are numbered): copy them in order.
    for source, variable in zip(_seed_states(model), _seed_states(twin), strict=True):
        variable.assign(source.numpy())
    for layer in _layers(twin):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
    offset_seeds(twin, strategy, rank)
    return twin


def _seed_states(model) -> list:
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def offset_seeds(model, strategy, rank: int) -> None:
    """Gives each replica its own dropout / augmentation stream: replica k's seeds are offset by k * SEED_STRIDE."""
    local = strategy.num_replicas_in_sync // input_pipelines(strategy)
    for variable in _seed_states(model):
        for j, component in enumerate(strategy.experimental_local_results(variable.value)):
            replica = rank * local + j
            if replica:
                state = component.numpy()
                component.assign(state + np.array([replica * SEED_STRIDE, 0], state.dtype))


# ----------------------------------------------------------------------------------------------- phases
def fit_phases(model, spec: DataSpec, model_config: ModelConfig, train: TrainConfig, regression: RegressionConfig,
               run_dir: Path, train_ds, val_ds) -> None:
    """`mgr_tf.training.fit.fit_phases` under the run's strategy: the same phases, callbacks and files; `model`
    ends with the trained weights. `train_ds` is not used (each worker reads its own shard)."""
    strategy = strategy_for(train.distribute)
    if strategy is None:  # auto, with one device and no cluster
        one_process.fit_phases(model, spec, model_config, train, regression, run_dir, train_ds, val_ds)
        return
    if get_backbone(model_config.family).encoder is not None and not train.init_from:
        raise UserError(f"--distribute {train.distribute}: heads on frozen encoder features train in one process")
    task = _task(strategy)
    rank = task.rank if task is not None else 0
    twin = replicate(model, strategy, rank)
    phases = [("main", train.epochs, train.learning_rate)]  # as in fit.fit_phases
    if train.init_from:
        freeze = min(train.freeze_epochs, train.epochs)
        phases = [("frozen", freeze, train.learning_rate),
                  ("finetune", train.epochs - freeze, train.learning_rate * train.finetune_lr_factor)]
    for phase, epochs, lr in phases:
        if epochs <= 0:
            continue
        if train.init_from:
            set_backbone_trainable(twin, phase != "frozen")
        try:
            fit_phase(strategy, twin, spec, train, regression, run_dir, phase, epochs, lr, val_ds, rank)
        except PEER_ERRORS as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            why = next((line for line in lines if "unhealthy" in line or "/task:" in line), lines[0] if lines else "")
            raise UserError(f"a worker of the cluster stopped ({type(exc).__name__}: {why[:300]}); restart every "
                            "worker with the same command: the run resumes from its last checkpoint") from None
    model.set_weights(twin.get_weights())


def fit_phase(strategy, model, spec: DataSpec, train: TrainConfig, regression: RegressionConfig, run_dir: Path,
              phase: str, epochs: int, lr: float, val_ds, rank: int = 0) -> None:
    """One phase on every replica: the custom step, the run's callbacks, a checkpoint every epoch."""
    task = spec.task
    learned = regression.learned_weights and not task.classification
    with strategy.scope():
        fit_model = build_learned_weighting_model(model, task.losses(regression)) if learned else model
        fit_model.compile(optimizer=keras.optimizers.Adam(lr))  # the optimizer of compile_for
        fit_model.optimizer.build(fit_model.trainable_variables)
    checkpoint = PhaseCheckpoint(fit_model, run_dir, phase)
    chief = rank == 0
    if checkpoint.restore():
        offset_seeds(model, strategy, rank)
        if checkpoint.state.get("done"):
            print(f"[train] phase {phase}: done in an earlier run ({checkpoint.epoch} epochs)", flush=True)
            return
        print(f"[train] phase {phase}: resuming after epoch {checkpoint.epoch} from {checkpoint.restored}",
              flush=True)
    phase_callbacks = [c for c in callbacks(run_dir, phase, task.monitor, train, task_callbacks(task, fit_model))[0]
                       if not isinstance(c, keras.callbacks.BackupAndRestore)]  # replaced by the checkpoints
    callback_list = keras.callbacks.CallbackList(phase_callbacks, model=fit_model)
    dataset, steps = train_input(strategy, spec)
    trackers, val_trackers = Trackers(task, learned), Trackers(task, learned)
    step = train_step(strategy, fit_model, task, regression, trackers)
    validate = validate_fn(fit_model, task, regression, val_trackers)
    share = all_sum_fn(strategy) if input_pipelines(strategy) > 1 else None  # the chief's values: others send 0
    val_names = [f"val_{name}" for name in val_trackers.names]
    print(f"[train] phase {phase}: up to {epochs} epochs, learning rate {lr:g}, {strategy.num_replicas_in_sync} "
          f"replicas on {input_pipelines(strategy)} worker(s), global batch {spec.config.batch_size}, {steps} "
          "steps per epoch", flush=True)
    fit_model.stop_training = False
    callback_list.on_train_begin()
    checkpoint.apply_state(phase_callbacks)
    iterator = iter(dataset)
    for epoch in range(checkpoint.epoch, epochs):
        started = time.time()
        callback_list.on_epoch_begin(epoch)
        trackers.reset()
        for _ in range(steps):
            step(iterator)
        logs = trackers.results()
        values = validate(val_ds) if chief else dict.fromkeys(val_names, 0.0)
        if share is not None:
            values = dict(zip(val_names, share([values[k] for k in val_names]).tolist()))
        logs.update(values)
        callback_list.on_epoch_end(epoch, logs)
        print(f"Epoch {epoch + 1}/{epochs}: {steps} steps, {time.time() - started:.1f} s - "
              + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        checkpoint.save(epoch + 1, phase_callbacks)
        if fit_model.stop_training:
            break
    callback_list.on_train_end()
    checkpoint.save(checkpoint.epoch, phase_callbacks, done=True)


class PhaseCheckpoint:
    """The checkpoints of one phase: model, optimizer, epoch, callback state and the early-stopping best weights.

    Each worker saves into its own run folder (a non-chief's is its scratch folder); all restore the chief's.

    Args:
        fit_model: the model being fitted (with its optimizer).
        run_dir: this worker's run folder.
        phase: the phase name.
    """

    def __init__(self, fit_model, run_dir: Path, phase: str):
        self.fit_model = fit_model
        self.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.state_var = tf.Variable("{}", dtype=tf.string, trainable=False)
        self.best = tf.Module()
        self.best.weights = [tf.Variable(w, trainable=False) for w in fit_model.get_weights()]
        self.checkpoint = tf.train.Checkpoint(model=fit_model, optimizer=fit_model.optimizer, epoch=self.epoch_var,
                                              state=self.state_var, best=self.best)
        folder = f"{phase}_distributed"
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(Path(run_dir) / "backup" / folder),
                                                  max_to_keep=2)
        self.chief_folder = cluster.chief_dir(run_dir) / "backup" / folder
        self.epoch, self.state, self.restored = 0, {}, None

    def restore(self) -> bool:
        """Restores the chief's latest checkpoint of the phase, if any."""
        latest = tf.train.latest_checkpoint(str(self.chief_folder))
        if latest is None:
            return False
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        self.epoch, self.state, self.restored = int(self.epoch_var.numpy()), json.loads(self.state_var.numpy()), latest
        return True

    def apply_state(self, phase_callbacks: list) -> None:
        """Puts the restored callback state back (after `on_train_begin`, which resets it)."""
        for i, callback in enumerate(phase_callbacks):
            for key, value in self.state.get("callbacks", {}).get(str(i), {}).items():
                setattr(callback, key, value)
            if isinstance(callback, keras.callbacks.EarlyStopping) and self.state.get("has_best"):
                callback.best_weights = [v.numpy() for v in self.best.weights]

    def save(self, epoch: int, phase_callbacks: list, *, done: bool = False) -> None:
        """Saves the state after `epoch` epochs (`done`: the phase has ended, best weights restored)."""
        states, has_best = {}, False
        for i, callback in enumerate(phase_callbacks):
            values = {key: _json_number(getattr(callback, key)) for key in CALLBACK_STATE if hasattr(callback, key)}
            if values:
                states[str(i)] = values
            if isinstance(callback, keras.callbacks.EarlyStopping) and callback.best_weights is not None:
                for variable, weights in zip(self.best.weights, callback.best_weights):
                    variable.assign(weights)
                has_best = True
        self.epoch = epoch
        self.epoch_var.assign(epoch)
        self.state = {"callbacks": states, "has_best": has_best, "done": done}
        self.state_var.assign(json.dumps(self.state))
        self.manager.save(checkpoint_number=epoch + (1 if done else 0))


def _json_number(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        print(f"[train] cannot checkpoint callback value {value!r}", file=sys.stderr)
        return None
