"""The Ray backend: the batches of a run computed by Ray actors on one or many machines.

The driver (the process that calls :func:`robcurves.distances` with ``backend="ray"``) cuts
the points into the same batches as the local backend, hands the batches not yet in the store
to worker actors, and writes each finished batch into the same per-batch store as it arrives.
Each actor loads the model once (:class:`ModelSpec` or a pickled model) and sets torch to the
driver's thread count, and each batch is computed by the very function the local backend calls,
with the seed of its start index, so the distances are byte-identical to a local run. A killed
worker loses only the batches it held (the one it was computing and, while the queue is longer
than the pool, the next one waiting in its own queue so that it starts without a round trip to
the driver; :data:`PIPELINE`): they are handed to a replacement actor; a killed driver loses
only the batches in flight, and rerunning the same call resumes. After an error, workers that
hold no batch stay in the pool (a worker that started computing one is ended).

Ray is an optional extra: ``pip install "robcurves[ray]"``.
"""

from __future__ import annotations

import pickle
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .results import Distances
from .store import BatchStore, batch_spans

__all__ = ["ModelSpec", "RayOptions", "run_batches_ray", "INSTALL"]

#: What a user without Ray runs.
INSTALL = 'pip install "robcurves[ray]"'
#: Seconds to reach a cluster at an address before giving up.
CONNECT_TIMEOUT_S = 30.0
#: Seconds a worker may take to start and load the model before the run is abandoned.
READY_TIMEOUT_S = 300.0
#: How often the driver looks for finished batches (seconds); no wait is unbounded.
POLL_S = 0.5


@dataclass(frozen=True)
class ModelSpec:
    """A model each Ray worker loads itself, instead of receiving a pickled copy.

    ``spec`` is what ``robcurves curve --model`` takes (a robcurves model file, TorchScript,
    ``.pt2``, Keras, ONNX or scikit-learn file, or ``package.module:factory``); ``wrap`` holds
    the keyword arguments of :func:`robcurves.wrap` (``bounds``, ``preprocessing``, ``device``,
    ``batch_size``, ...). A file must be readable at the same path on every machine of the
    cluster (a shared file system), a ``module:factory`` importable there.
    """

    spec: str
    wrap: dict = field(default_factory=dict)

    def load(self, module: Any = None):
        """The wrapped :class:`~robcurves.model.Classifier`, loaded once per process (a copy
        sent to a worker loads it again there); ``module``: the model this process already
        loaded from ``spec``, wrapped instead of reading it again."""
        loaded = self.__dict__.get("_loaded")
        if loaded is None:
            from .cli._common import load_model_spec
            from .model import wrap

            loaded = wrap(load_model_spec(self.spec) if module is None else module, **self.wrap)
            object.__setattr__(self, "_loaded", loaded)
        return loaded

    def __getstate__(self) -> dict:
        return {"spec": self.spec, "wrap": self.wrap}

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: ``address`` ``None`` (the Ray instance this process is
    connected to, else a new local one), ``"auto"`` (the cluster this machine belongs to) or
    ``"HOST:PORT"``; ``workers`` actors (default: as many as the cluster has room for);
    ``gpus_per_worker`` GPUs reserved by each actor (fractions share a GPU)."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.workers is not None and (isinstance(self.workers, bool) or
                                         not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"workers must be a whole number >= 1; got {self.workers!r}")
        g = self.gpus_per_worker
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not (g >= 0):
            raise ValueError(f"gpus_per_worker must be a number >= 0; got {g!r}")
        if self.address is not None and not isinstance(self.address, str):
            raise ValueError(f"ray_address must be None, 'auto' or 'HOST:PORT'; got "
                             f"{self.address!r}")
        if self.address not in (None, "auto"):
            _host_port(self.address)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"ray_address must be None, 'auto' or 'HOST:PORT'; got {address!r}")
    return host, int(port)


def import_ray():
    """The ``ray`` module, or ``ImportError`` naming the install command."""
    try:
        import ray
    except ImportError:
        raise ModuleNotFoundError(f"backend='ray' needs Ray, which is not installed; install "
                                  f"it with: {INSTALL}", name="ray") from None
    return ray


def backend_options(backend: str, address: str | None = None, workers: int | None = None,
                    gpus_per_worker: float = 0.0) -> RayOptions | None:
    """Check ``backend`` (``"local"`` or ``"ray"``); for Ray, check the options and connect
    now, so that a missing extra or a wrong address fails before any work. Returns the
    :class:`RayOptions` (``None`` for the local backend)."""
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray'; got {backend!r}")
    if backend == "local":
        return None
    options = RayOptions(address, workers, gpus_per_worker)
    connect(address)
    return options


def connect(address: str | None):
    """Connect to Ray (see :class:`RayOptions`); fails within :data:`CONNECT_TIMEOUT_S`
    naming the address when nothing answers there."""
    ray = import_ray()
    if address not in (None, "auto"):
        host, port = _host_port(address)
        try:  # Ray itself retries an unreachable address for minutes
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S / 2).close()
        except OSError as exc:
            raise ConnectionError(f"no Ray cluster reachable at {address} ({exc}); start one "
                                  "with `ray start --head` there, or check the address"
                                  ) from None
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto") and _host_port(current) != _host_port(address):
            raise ConnectionError(f"this process is connected to Ray at {current}, not "
                                  f"{address}; call ray.shutdown() first or pass that address")
        return ray
    box: dict[str, Any] = {}

    def init() -> None:
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        except Exception as exc:  # noqa: BLE001 - reported below with the address
            box["error"] = exc

    where = "a new local Ray instance" if address is None else f"Ray at {address}"
    if address in (None, "auto"):
        # a local start spawns Ray's processes, which die with the thread that started them
        # (Linux parent-death signal), so it runs here; it and "auto" fail fast by themselves
        init()
    else:  # joining a running cluster starts no process: a thread bounds the wait
        t = threading.Thread(target=init, daemon=True)
        t.start()
        t.join(CONNECT_TIMEOUT_S)
        if t.is_alive():
            raise ConnectionError(f"could not connect to {where} within "
                                  f"{CONNECT_TIMEOUT_S:.0f} s (something answers there, but "
                                  "not a Ray cluster?)")
    if "error" in box:
        exc = box["error"]
        raise ConnectionError(f"could not connect to {where}: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                              ) from None
    return ray


def _worker_class(ray):
    @ray.remote(max_restarts=0, max_task_retries=0)
    class BatchWorker:
        """One actor: loads a run's model once, then computes its batches on request."""

        def __init__(self, threads: int) -> None:
            from ._threads import set_threads

            set_threads(threads)
            self.model = self.compute = None

        def load(self, model: Any, compute: Callable | None, fingerprint: str = "") -> bool:
            self.model = self.compute = None  # free the previous run's model first
            if compute is not None:
                from .evaluate import fingerprint_model

                self.model = model.load() if isinstance(model, ModelSpec) else model
                mine = fingerprint_model(self.model)
                if fingerprint and mine != fingerprint:
                    raise ValueError(f"the model this worker loaded (fingerprint {mine}) is "
                                     f"not the driver's ({fingerprint}): a file differs on "
                                     "this machine, or a factory returns other weights "
                                     "each call")
                self.compute = compute
            return True

        def run(self, start: int, stop: int) -> Distances:
            return self.compute(self.model, start, stop)

    return BatchWorker


#: Idle workers kept between runs of this process (starting one takes seconds: a new Python
#: process importing torch), by (Ray job, CPUs, GPUs, threads); each loads the next run's
#: model. A run with other resources or threads ends the workers of the others.
_POOL: dict[tuple, list] = {}


def run_batches_ray(n: int, batch_size: int, compute: Callable[[Any, int, int], Any],
                    model: Any, store: BatchStore | None, options: RayOptions, threads: int,
                    progress: str | None = None, fingerprint: str = "",
                    join: Callable[[list], Any] = Distances.concatenate) -> Any:
    """:func:`robcurves.store.run_batches` on Ray actors.

    ``compute(model, start, stop)`` computes one batch with the worker's own ``model`` (a
    :class:`ModelSpec` each worker loads, or a picklable object sent once through Ray's object
    store: a model, a certifier's network, the reference set of an inter-class search);
    ``threads`` is the torch thread count every worker sets; ``fingerprint`` (see
    :func:`robcurves.evaluate.fingerprint_model`) that of the driver's model, which each
    worker's copy must have. Returns ``join`` of the batches in order (a store holds
    :class:`Distances` only).
    """
    ray = connect(options.address)
    spans = batch_spans(n, batch_size)
    done: dict[tuple[int, int], Distances] = {}
    if store is not None:
        done = {s: part for s in spans if (part := store.get(*s)) is not None}
    todo = [s for s in spans if s not in done]
    bar = None
    if progress is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, initial=sum(b - a for a, b in done), desc=progress, unit="pt")
    try:
        if todo:
            _run_todo(ray, todo, compute, model, store, options, threads, done, bar, fingerprint)
    finally:
        if bar is not None:
            bar.close()
    return join([done[s] for s in spans])


def _model_ref(ray, model: Any):
    if isinstance(model, ModelSpec):
        return model
    try:
        return ray.put(model)
    except (TypeError, pickle.PicklingError, AttributeError) as exc:
        raise ValueError(f"the model ({type(model).__name__}) cannot be sent to Ray workers "
                         f"({type(exc).__name__}: {exc}); pass robcurves.ModelSpec(file or "
                         "'module:factory', wrap={...}) so that each worker loads it") from None


def _capacity(ray, options: RayOptions, threads: int) -> int:
    res = ray.cluster_resources()
    if options.gpus_per_worker > 0:
        return int(res.get("GPU", 0) // options.gpus_per_worker)
    return int(res.get("CPU", 0) // threads)


#: Batches a worker holds at once while the queue is longer than the pool: the next one
#: waits in the worker's own queue, so it starts without a round trip to the driver.
PIPELINE = 2


def _run_todo(ray, todo, compute, model, store, options, threads, done, bar,
              fingerprint) -> None:
    from ray.exceptions import RayActorError, RayTaskError

    cpus = 1 if options.gpus_per_worker > 0 else threads
    fit = _capacity(ray, options, threads)
    if fit < 1:
        need = (f"{options.gpus_per_worker} GPU" if options.gpus_per_worker > 0
                else f"{threads} CPU")
        raise RuntimeError(f"the Ray cluster has no room for one worker ({need} each; cluster: "
                           f"{ray.cluster_resources()})")
    n_workers = min(options.workers or fit, len(todo))
    key = (ray.get_runtime_context().get_job_id(), cpus, options.gpus_per_worker, threads)
    for other in [k for k in _POOL if k != key]:  # free what workers of other shapes hold
        for actor in _POOL.pop(other):
            ray.kill(actor)
    Worker = _worker_class(ray).options(num_cpus=cpus, num_gpus=options.gpus_per_worker)
    model_ref = _model_ref(ray, model)
    compute_ref = ray.put(compute)
    what = model.spec if isinstance(model, ModelSpec) else type(model).__name__
    pool = _POOL.setdefault(key, [])

    queue = list(todo)
    loading: dict[Any, Any] = {}  # load() ref -> actor
    ready_actors: list[Any] = []  # loaded workers, alive
    held: dict[Any, list[tuple[Any, tuple[int, int]]]] = {}  # actor -> its (ref, span), in order
    running: dict[Any, tuple[Any, tuple[int, int]]] = {}  # run() ref -> (actor, span)
    replacements = 2 * n_workers + 2  # workers that die are replaced at most this often
    t_wait = time.monotonic()

    def start_worker() -> None:
        actor = pool.pop() if pool else Worker.remote(threads)
        loading[actor.load.remote(model_ref, compute_ref, fingerprint)] = actor

    def lost(exc: BaseException, actor: Any) -> None:
        """A worker died: every batch it held goes back to the front of the queue."""
        nonlocal replacements
        if replacements == 0:
            raise RuntimeError(f"Ray workers keep dying ({_cause(exc)}); the batches stored "
                               "so far are kept") from None
        replacements -= 1
        spans = []
        for ref, span in held.pop(actor, []):
            running.pop(ref, None)
            spans.append(span)
        if actor in ready_actors:
            ready_actors.remove(actor)
        queue[:0] = spans  # they were in flight on the dead worker: computed again
        if spans:
            which = ", ".join(f"{a}..{b - 1}" for a, b in spans)
            warnings.warn(f"a Ray worker died ({_cause(exc)}); its batch{'es' * (len(spans) > 1)}"
                          f" of points {which} {'are' if len(spans) > 1 else 'is'} computed "
                          "again", stacklevel=4)
        start_worker()

    def submit() -> None:
        """Give every worker a batch, and a second one while the queue outlasts the pool."""
        for depth in range(1, PIPELINE + 1):
            if depth > 1 and len(queue) <= len(ready_actors):
                return
            for actor in ready_actors:
                if queue and len(held.get(actor, ())) < depth:
                    span = queue.pop(0)
                    ref = actor.run.remote(*span)
                    running[ref] = (actor, span)
                    held.setdefault(actor, []).append((ref, span))

    for _ in range(n_workers):
        start_worker()
    ok = False
    try:
        while queue or running:
            ready, _ = ray.wait([*loading, *running], num_returns=1, timeout=POLL_S)
            for ref in ready:
                if ref in loading:
                    actor = loading.pop(ref)
                    try:
                        ray.get(ref, timeout=POLL_S)
                    except RayTaskError as exc:
                        ready_actors.append(actor)  # alive, holding no model: kept for later
                        raise RuntimeError(f"a Ray worker could not load the model {what!r}: "
                                           f"{_cause(exc)}") from None
                    except RayActorError as exc:
                        lost(exc, actor)
                        continue
                    ready_actors.append(actor)
                    t_wait = time.monotonic()
                    continue
                if ref not in running:  # a dead worker's batch, already queued again
                    continue
                actor, span = running.pop(ref)
                try:
                    part = ray.get(ref, timeout=POLL_S)
                except RayActorError as exc:
                    running[ref] = (actor, span)
                    lost(exc, actor)
                    continue
                finally:
                    if ref not in running and actor in held:
                        held[actor] = [h for h in held[actor] if h[0] != ref]
                if store is not None:
                    store.put(*span, part)
                done[span] = part
                if bar is not None:
                    bar.update(span[1] - span[0])
            submit()
            if running:
                t_wait = time.monotonic()
            elif time.monotonic() - t_wait > READY_TIMEOUT_S:
                raise RuntimeError(f"no Ray worker started within {READY_TIMEOUT_S:.0f} s "
                                   f"(cluster resources: {ray.cluster_resources()}; each "
                                   f"worker asks for {cpus} CPU, {options.gpus_per_worker} GPU)")
        ok = True
    finally:
        busy = {a for a, _ in running.values()}
        for actor in [*loading.values(), *ready_actors]:
            if ok or (actor in ready_actors and actor not in busy):
                # kept for the next run, without this run's model (a worker that holds no
                # batch is kept after an error too: it computes nothing)
                actor.load.remote(None, None)
                pool.append(actor)
            else:  # an error or an interrupt: nothing may keep computing
                ray.kill(actor)


def _cause(exc: BaseException) -> str:
    """The first line of the error that ended a worker (the user's error, not Ray's frames)."""
    text = str(exc)
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and ("Error" in line or "Exception" in line) and not line.startswith("File "):
            return line[:500]
    return (text.strip().splitlines() or [type(exc).__name__])[0][:500]

