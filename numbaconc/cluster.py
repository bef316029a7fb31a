"""The heavy stages on a dask.distributed cluster, with the single-process results.

The setting works like the memory budget: ``set_scheduler(spec)`` (the CLI's
``--scheduler``) or ``with use(spec):``, where spec is a scheduler address
(``tcp://host:8786``), ``"local:N"`` (a LocalCluster of N worker processes,
one thread each, started on first use and closed with the setting) or a
``distributed.Client``. ``current()`` is the Client, or None when no scheduler
is set: then every stage runs in this process as before and dask is never
imported.

Stages hand their loop over blocks to ``map_blocks`` (row blocks) or to a
stage-specific helper here (kNN query ranges, half-space direction batches).
Each task is a pure module-level function of (a data source, a row range or a
batch, parameters); results come back in submission order, never in
completion order, so every reduction adds the same terms in the same order as
the in-process loop and the results are bit-identical for any number of
workers and any task order. Progress callbacks advance as tasks complete.

Data goes to workers as a *source*: a read-only memmap or an h5py dataset is
sent as (file path, offset / dataset name), so every worker must see the file
at the same path (a shared filesystem, or one machine); a ``RowView`` as its
matrix's source plus its row indices (scattered once per call); any other
array is scattered once per call (to every worker). A worker dying mid-run is handled by dask:
its tasks run again elsewhere, and since every task is pure the result is the
same.
"""

from __future__ import annotations

import atexit
import logging
import mmap
import os
import re
import threading
import uuid
from contextlib import contextmanager

import numpy as np

from . import budget
from .errors import NumbaconcError

TASKS_PER_WORKER = 4    # tasks per worker for stages split by rows (load balance vs overhead)
CONNECT_TIMEOUT = "20s"
_WORKER_ENV = ("NUMBA_CACHE_DIR", "NUMBACONC_CACHE", "NUMBACONC_MEMORY", "OMP_WAIT_POLICY")

_log = logging.getLogger("numbaconc")
_spec = None            # None, an address, "local:N" or a Client
_client = None          # the connected Client (lazily, on the first current())
_owned = None           # (client, cluster) that this module started and must close
_in_task = threading.local()  # set while a work unit runs: its stages stay in its process


# ---------------------------------------------------------------- the setting


def _check_spec(spec):
    if spec is None:
        return None
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower().startswith("local"):
            match = re.fullmatch(r"local:(\d+)", text, re.IGNORECASE)
            if match is None or int(match.group(1)) < 1:
                raise NumbaconcError(f"scheduler {spec!r}: write local:N with N >= 1 worker processes")
            return f"local:{int(match.group(1))}"
        if not text or any(c.isspace() for c in text):
            raise NumbaconcError(f"scheduler {spec!r}: expected an address such as tcp://host:8786 or local:N")
        return text
    if callable(getattr(spec, "submit", None)) and hasattr(spec, "scheduler_info"):
        return spec  # a distributed.Client
    raise NumbaconcError(f"scheduler: expected an address, 'local:N' or a distributed.Client, "
                         f"got {type(spec).__name__}")


def set_scheduler(spec) -> None:
    """Run the heavy stages on ``spec`` (None: back to this process). A cluster
    started here for an earlier setting is closed."""
    global _spec
    checked = _check_spec(spec)
    close()
    _spec = checked


def current():
    """The ``distributed.Client`` of the setting (connecting on first use), or None."""
    global _client, _owned
    if _spec is None or getattr(_in_task, "active", False):
        return None  # a task on a threaded in-process worker must not wait on tasks of its own
    if _client is None:
        _client, _owned = _connect(_spec)
    return _client


def close() -> None:
    """Close the client and cluster this module started (a Client given by the user stays open)."""
    global _client, _owned
    owned, _client, _owned = _owned, None, None
    if owned is not None:
        client, local = owned
        client.close()
        if local is not None:
            local.close()


atexit.register(close)  # a local:N cluster must not outlive the run


@contextmanager
def use(spec):
    """Run a block on another scheduler (address, ``local:N`` or Client), restoring the previous setting."""
    global _spec, _client, _owned
    before = (_spec, _client, _owned)
    _spec, _client, _owned = _check_spec(spec), None, None
    try:
        yield current()
    finally:
        close()
        _spec, _client, _owned = before


def worker_env() -> dict:
    """Environment for locally started workers: the same Numba cache folder (compiled
    kernels are reused, not recompiled per worker), scratch folder and budget."""
    return {name: os.environ[name] for name in _WORKER_ENV if name in os.environ}


def dask_settings():
    """Dask settings for a cluster started here: no active memory manager, whose
    ReduceReplicas policy would drop the copies of scattered inputs that every
    worker keeps, so that a worker's death could lose the only copy."""
    import dask

    return dask.config.set({"distributed.scheduler.active-memory-manager.start": False})


def _connect(spec):
    if not isinstance(spec, str):
        return spec, None
    try:
        import distributed
    except ImportError:
        raise NumbaconcError("a scheduler needs dask.distributed: pip install 'numbaconc[dask]'") from None
    if spec.startswith("local:"):
        with dask_settings():
            local = distributed.LocalCluster(n_workers=int(spec[6:]), threads_per_worker=1,
                                             processes=True, env=worker_env())
        client = distributed.Client(local)
        owned = (client, local)
    else:
        try:
            client = distributed.Client(spec, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise NumbaconcError(f"scheduler {spec}: cannot connect ({type(exc).__name__}: {exc})") from None
        owned = (client, None)
    _log.info("dask scheduler %s, dashboard %s", client.scheduler.address, client.dashboard_link)
    return client, owned


def n_workers(client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


# ---------------------------------------------------------------- data sources


def _file_position(X: np.memmap) -> int:
    """File offset of X's first byte (views of a memmap keep the parent's ``offset``)."""
    start = X.offset - X.offset % mmap.ALLOCATIONGRANULARITY  # where np.memmap maps from
    return start + (X.ctypes.data - np.frombuffer(X._mmap, dtype=np.uint8).ctypes.data)


def source_of(X, client, scattered: dict):
    """What a worker needs to read X (see the module docstring). ``scattered``
    memoises the arrays scattered in this call (by id)."""
    import h5py

    from .datasets import RowView, Split

    if isinstance(X, Split):
        X = X.x
    if isinstance(X, RowView):
        inner = source_of(X.matrix, client, scattered)
        if X.rows is None:
            return inner
        return ("rows", inner, _scatter(X.rows, client, scattered))
    if isinstance(X, np.memmap) and getattr(X, "_mmap", None) is not None and X.mode == "r" \
            and X.filename and os.path.isfile(X.filename) and X.flags.c_contiguous:
        return ("memmap", str(X.filename), int(_file_position(X)), X.dtype.str, tuple(X.shape),
                _identity(X.filename))
    if isinstance(X, h5py.Dataset):
        return ("h5", str(X.file.filename), X.name, _identity(X.file.filename))
    return _scatter(np.ascontiguousarray(X), client, scattered)


def _identity(path) -> tuple:
    """Part of a file source's key: a worker keeps files open, and a file replaced
    at the same path (another inode, size or mtime) must not be served from that."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _scatter(array, client, scattered: dict):
    key = id(array)
    if key not in scattered:
        # a copy on every worker: a worker that dies does not take the only copy with it
        # (unless the cluster's active memory manager drops the copies: see dask_settings)
        future = client.scatter(array, hash=False, broadcast=True)
        scattered[key] = (array, ("array", future.key, future))  # the array: keeps id(array) unique
    return scattered[key][1]


def _source_key(src):
    if src is None or src[0] in ("memmap", "h5"):
        return src
    if src[0] == "array":
        return ("array", src[1])
    return ("rows", _source_key(src[1]), src[2][1])


_opened: dict = {}
_state: list = [None, None]     # (key, value): the one heavy prepared state a worker holds
_state_lock = threading.Lock()
_projector_lock = threading.Lock()


def open_source(src):
    """The array a source stands for, on a worker (files are opened once per worker)."""
    if src is None:
        return None
    kind = src[0]
    if kind == "array":
        return src[2]  # dask put the scattered array in place of its future
    key = _source_key(src)
    if key not in _opened:
        if kind == "memmap":
            _, path, offset, dtype, shape, _ = src
            _opened[key] = np.memmap(path, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
        elif kind == "h5":
            import h5py

            _opened[key] = h5py.File(src[1], "r")[src[2]]
        else:
            from .datasets import RowView

            return RowView(open_source(src[1]), src[2][2])
    return _opened[key]


def drop_worker_state(key) -> None:
    """Free the state a worker holds for ``key`` (run on every worker by ``Client.run``)."""
    with _state_lock:
        if _state[0] == key:
            _state[0] = _state[1] = None


def worker_state(key, make):
    """``make()`` once per worker for ``key`` (a kNN plan, a projector): the
    worker keeps the latest one only, so memory holds one stage's state."""
    with _state_lock:
        if _state[0] != key:
            _state[0] = _state[1] = None
            _state[1] = make()
            _state[0] = key
        return _state[1]


# ---------------------------------------------------------------- running tasks


def _on_worker(unit, memory, args):
    """Run one work unit under the client's memory budget, on one Numba thread:
    as with dask's own tasks, a worker's parallelism is its task threads (dask
    also runs the workers' BLAS on one thread), so a worker with T threads runs T
    tasks, not T x T threads."""
    import numba

    numba.set_num_threads(1)
    _in_task.active = True
    try:
        with budget.budget(memory):
            return unit(*args)
    finally:
        _in_task.active = False


def map_ordered(unit, arg_list, *, weights=None, progress=None, total=None, workers=None):
    """Yield ``unit(*args)`` for each args of ``arg_list``, run as tasks on the
    current cluster, **in the order of arg_list** (results that complete early
    wait). ``progress(done, total)`` is called as tasks complete, ``done`` the
    sum of their ``weights`` (default 1 each). ``workers``: per task, the
    address of the worker it should run on (another one if that one is gone).
    A failing task raises its error here and the remaining tasks are cancelled."""
    from distributed import as_completed

    client = current()
    arg_list = list(arg_list)
    weights = [1] * len(arg_list) if weights is None else list(weights)
    total = sum(weights) if total is None else total
    memory = budget.get_budget()
    where = [{} if workers is None else dict(workers=[workers[i]], allow_other_workers=True)
             for i in range(len(arg_list))]
    futures = [client.submit(_on_worker, unit, memory, args, pure=False, priority=len(arg_list) - i,
                             **where[i]) for i, args in enumerate(arg_list)]
    position = {future.key: i for i, future in enumerate(futures)}
    ready, next_i, done = {}, 0, 0
    try:
        # results come with the completions (no round trip per task to fetch each one)
        for future, result in as_completed(futures, with_results=True):  # a task's error is raised here
            if future.status != "finished":  # cancelled: e.g. its scattered input was lost with a worker
                raise NumbaconcError(f"a task was {future.status} on the cluster ({type(result).__name__}: "
                                     f"{result}); rerun to resume from the caches")
            i = position[future.key]
            ready[i] = result
            done += weights[i]
            if progress is not None:
                progress(done, total)
            while next_i in ready:
                yield ready.pop(next_i)
                next_i += 1
    finally:
        client.cancel([f for f in futures if not f.done()])


def _read_rows(X, start: int, stop: int) -> np.ndarray:
    return np.ascontiguousarray(X[start:stop])


def _block_unit(src, start, stop, reader, fn, args):
    return fn(reader(open_source(src), start, stop), *args)


def map_blocks(fn, X, block_rows: int, args=(), *, reader=_read_rows):
    """Yield ``fn(reader(X, a, b), *args)`` for the row blocks [a, b) of
    ``block_rows`` rows, in block order: in this process when no scheduler is
    set, else one task per block (``fn`` and ``reader`` must be module-level
    functions or partials of them). Callers reduce the results in this order."""
    n = int(X.shape[0])
    bounds = [(a, min(n, a + int(block_rows))) for a in range(0, n, int(block_rows))]
    client = current()
    if client is None:
        for a, b in bounds:
            yield fn(reader(X, a, b), *args)
        return
    src = source_of(X, client, {})
    yield from map_ordered(_block_unit, [(src, a, b, reader, fn, args) for a, b in bounds])


# ---------------------------------------------------------------- kNN


def _knn_unit(token, base_src, query_src, k, metric, include_self, block_rows, lo, hi):
    """Lists of the queries at visit-order positions [lo, hi): (query rows, indices, stored
    distances). The search plan is prepared once per worker and call (``token``)."""
    from . import neighbours as _knn

    base, queries = open_source(base_src), open_source(query_src)
    plan = worker_state(("knn", token), lambda: _knn.plan_search(
        base, k, metric=metric, queries=queries, include_self=include_self, block_rows=block_rows))
    idx_type, dist_type, _ = _knn.list_dtypes(metric, base.dtype, base.shape[0], base.shape[1])
    idx = np.empty((hi - lo, k), dtype=idx_type)
    dist = np.empty((hi - lo, k), dtype=dist_type)

    def store(qa, qb, topd, topi):
        idx[qa - lo:qb - lo] = topi
        dist[qa - lo:qb - lo] = plan.stored(topd)

    plan.run(lo, hi, store)
    return plan.query_order[lo:hi], idx, dist


def knn_on_cluster(base, k, *, metric, queries, include_self, block_rows, progress, out):
    """``knn``'s query loop as tasks: runs of query blocks, each against the whole
    base, written into ``out`` = (indices, stored distances). The lists are exact
    (sorted by (distance, index)), so they equal the in-process ones bit for bit."""
    from . import neighbours as _knn

    client = current()
    scattered = {}
    base_src = source_of(base, client, scattered)
    query_src = None if queries is None else source_of(queries, client, scattered)
    m = int((base if queries is None else queries).shape[0])
    block = int(block_rows) if block_rows else _knn._QUERY_BLOCK
    per_task = -(-m // (TASKS_PER_WORKER * n_workers(client)))
    per_task = max(block, -(-per_task // block) * block)  # whole query blocks
    ranges = [(a, min(m, a + per_task)) for a in range(0, m, per_task)]
    token = uuid.uuid4().hex
    args = [(token, base_src, query_src, int(k), metric, bool(include_self), block_rows, a, b)
            for a, b in ranges]
    out_idx, out_dist = out
    for rows, idx, dist in map_ordered(_knn_unit, args, weights=[b - a for a, b in ranges],
                                       progress=progress, total=m):
        out_idx[rows] = idx
        out_dist[rows] = dist


# ---------------------------------------------------------------- half-spaces


def _halfspace_unit(token, src, select_src, batch, Wt, shifts, k, lu_src):
    from . import halfspace as _hs

    X, X_select = open_source(src), open_source(select_src)
    lu = None if lu_src is None else (open_source(lu_src[0]), lu_src[1])
    projectors = worker_state(("halfspace", token), lambda: (
        _hs._Projector(X, batch, "X"),
        None if X_select is None else _hs._Projector(X_select, batch, "X_select")))
    with _projector_lock:  # the projectors' buffers are shared by the worker's task threads
        return _hs._batch_counts(*projectors, Wt, shifts, k, lu)


def halfspace_batches(X, X_select, batches, batch: int, k: int, lu=None):
    """The half-space search's direction batches as tasks: yields, per (Wt,
    shifts) of ``batches`` in order, what ``halfspace._batch_counts`` returns.
    Each worker projects the whole of X (and X_select) for its batches, so a
    batch gives the same float32 products as in this process. ``lu``: (LU
    weights of X, G) of numbaconc.lu, the weights scattered once."""
    client = current()
    scattered = {}
    src = source_of(X, client, scattered)
    select_src = None if X_select is None else source_of(X_select, client, scattered)
    lu_src = None if lu is None else (source_of(lu[0], client, scattered), int(lu[1]))
    token = uuid.uuid4().hex
    yield from map_ordered(_halfspace_unit, [(token, src, select_src, int(batch), Wt, shifts, int(k),
                                              lu_src) for Wt, shifts in batches])


# ---------------------------------------------------------------- boxes


def _boxes_model(token, model_src):
    from .boxes import BoxesModel

    x_src, scores_src, scale, shape, kmeans_metric, max_iter = model_src
    return worker_state(("boxes", token), lambda: BoxesModel(
        open_source(x_src), open_source(scores_src), scale, shape=shape,
        kmeans_metric=kmeans_metric, max_iter=max_iter))


def _boxes_search_unit(token, model_src, select_src, n_clusters, options):
    from .boxes import search_q

    return search_q(_boxes_model(token, model_src), open_source(select_src),
                    n_clusters=n_clusters, **options)


def _boxes_fit_unit(token, model_src, n_clusters, q, seed):
    return _boxes_model(token, model_src).boxes(n_clusters, q, seed)


def _model_source(model, client, scattered):
    return (source_of(model.X, client, scattered), _scatter(np.asarray(model.scores), client, scattered),
            model.scale, model.shape, model.kmeans_metric, model.max_iter)


def boxes_grid(model, X_select, t_values, options, progress, total):
    """``search_q`` for each T of ``t_values`` as one task each (the q bisection
    of one T is sequential); rows in ``t_values`` order. Workers rebuild the
    model from its sources (the fitting rows, the density scores)."""
    client = current()
    scattered = {}
    model_src = _model_source(model, client, scattered)
    select_src = source_of(X_select, client, scattered)
    token = uuid.uuid4().hex
    return list(map_ordered(_boxes_search_unit,
                            [(token, model_src, select_src, int(t), options) for t in t_values],
                            progress=progress, total=total))


def boxes_fits(model, keys):
    """``model.boxes(n_clusters, q, seed)`` for each key, one task each, in key order."""
    client = current()
    model_src = _model_source(model, client, {})
    token = uuid.uuid4().hex
    return list(map_ordered(_boxes_fit_unit, [(token, model_src, int(t), float(q), int(seed))
                                              for t, q, seed in keys]))


# ---------------------------------------------------------------- k-means


_kmeans_lock = threading.Lock()


def _kmeans_unit(token, src, start, stop, step, labels):
    from distributed import get_worker

    from . import kmeans as _km

    X = open_source(src)
    states = worker_state(("kmeans", token), dict)
    with _kmeans_lock:  # the range states are shared by the worker's task threads
        return get_worker().address, _km.assign_range(X, start, stop, step, states, labels)


class KMeansPasses:
    """The assignment passes of one k-means fit as tasks: the rows are cut
    into one range of whole chunks per worker, and each range's task goes to
    the worker that ran its last one, which keeps the range's bounds between
    iterations (``kmeans.assign_range``). This process keeps the labels: a
    range whose worker is gone is sent, with its labels, to another one, and
    gives the same labels. Sums of relabelled uint8 rows are exact integers, so
    adding the ranges' sums in range order gives the in-process bits."""

    def __init__(self, X, chunk_rows: int):
        self.client = current()
        self._scattered = {}
        self.src = source_of(X, self.client, self._scattered)
        addresses = sorted(self.client.scheduler_info().get("workers", {})) or [None]
        n = int(X.shape[0])
        chunks = -(-n // int(chunk_rows))
        cuts = [min(n, int(c) * int(chunk_rows))
                for c in np.linspace(0, chunks, min(len(addresses), chunks) + 1).round()]
        self.ranges = [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if a < b]
        self.pins = [addresses[i % len(addresses)] for i in range(len(self.ranges))]
        self.token = uuid.uuid4().hex

    def assign(self, step, labels, dist, totals):
        """One assignment: ``labels`` (and, l1, ``dist``) updated in place, the
        uint8 sum changes added into ``totals``; returns (n_changed, n_refined, n_scores)."""
        from .kmeans import STATE_LOST

        args = [(self.token, self.src, a, b, step, None) for a, b in self.ranges]
        results = self._run(list(range(len(args))), args)
        lost = [i for i, r in enumerate(results) if isinstance(r, str) and r == STATE_LOST]
        if lost:
            again = [(self.token, self.src, *self.ranges[i], step,
                      self.client.scatter(np.array(labels[slice(*self.ranges[i])]), hash=False,
                                          broadcast=True)) for i in lost]
            for i, result in zip(lost, self._run(lost, again)):
                results[i] = result
        counts = np.zeros(3, np.int64)
        for (a, b), result in zip(self.ranges, results):
            labels[result["rows"]] = result["labels"]
            if result["dist"] is not None:
                dist[a:b] = result["dist"]
            if result["totals"] is not None:
                for total, part in zip(totals, result["totals"]):
                    total += part
            counts += result["counts"]
        return tuple(int(c) for c in counts)

    def _run(self, which, args):
        """The tasks of the ranges ``which``; a range's next task goes to the
        worker its last one ran on (where its state now is)."""
        pins = None if self.pins[0] is None else [self.pins[i] for i in which]
        results = []
        for i, (address, result) in zip(which, map_ordered(_kmeans_unit, args, workers=pins)):
            self.pins[i] = address
            results.append(result)
        return results

    def close(self):
        """Free the workers' range states."""
        try:
            self.client.run(drop_worker_state, ("kmeans", self.token))
        except Exception:  # a worker gone or a client closing: its memory goes with it
            pass


# ---------------------------------------------------------------- balls


_evaluator_lock = threading.Lock()


def _ball_evaluator(token, src, settings):
    from .balls import _ExactEvaluator

    X = open_source(src)
    integer, linf, lw_src, G = settings
    return worker_state(("balls", token), lambda: _ExactEvaluator(X, integer, linf,
                                                                  open_source(lw_src), G))


def _ball_gains_unit(token, src, settings, cand, covered, expanded, n_lo, n_hi, eps, hint):
    evaluator = _ball_evaluator(token, src, settings)
    with _evaluator_lock:  # its buffers are shared by the worker's task threads
        return tuple(np.array(a) for a in evaluator.gains(cand, covered, expanded, n_lo, n_hi,
                                                           eps, hint))


def _ball_penalties_unit(token, src, settings, rows, reach):
    evaluator = _ball_evaluator(token, src, settings)
    increment = np.zeros(len(reach), dtype=np.int64)
    with _evaluator_lock:
        evaluator.add_penalties(rows, reach, increment)
    return increment


class BallEvaluator:
    """``fit_balls``' exact candidate evaluation on the cluster, with the
    interface of ``balls._ExactEvaluator``: each batch of candidates is split
    into one piece per worker (every candidate's row of exact distances is its
    own, so the pieces give the rows of the whole batch); the choice among
    them stays on the client. The per-ball state (covered, expanded) is
    scattered once per ball, the data (and the LU weights ``lw``, threshold
    ``G`` of numbaconc.lu) once per fit; ``linf``: cubes (l-inf keys)."""

    def __init__(self, X, integer: bool, capacity: int, linf: bool = False, lw=None, G: int = 0):
        self.client = current()
        self._scattered = {}
        self.src = source_of(X, self.client, self._scattered)
        self.integer = bool(integer)
        lw_src = None if lw is None else source_of(np.asarray(lw, dtype=np.int64), self.client,
                                                   self._scattered)
        self.settings = (self.integer, bool(linf), lw_src, int(G))
        self.capacity = int(capacity)
        self.token = uuid.uuid4().hex
        self._ball_key, self._ball_state = None, None
        # how many pieces a batch is split into; counted once per ball, since
        # scheduler_info() is a round trip fetching every worker's record
        self._workers = n_workers(self.client)

    def _state(self, covered, expanded):
        key = (int(covered.sum()), int(expanded.sum()))  # both grow with every ball
        if key != self._ball_key:
            self._ball_state = self.client.scatter([covered.copy(), expanded.copy()], hash=False,
                                                   broadcast=True)
            self._ball_key = key
            self._workers = n_workers(self.client)
        return self._ball_state

    def _pieces(self, rows, size):
        count = max(self._workers, -(-len(rows) // size))
        return [piece for piece in np.array_split(np.asarray(rows, dtype=np.int64), count) if len(piece)]

    def __call__(self, cand, covered, expanded, n_lo, n_hi, eps, top_hint):
        covered_f, expanded_f = self._state(covered, expanded)
        args = [(self.token, self.src, self.settings, piece, covered_f, expanded_f, int(n_lo),
                 int(n_hi), float(eps), np.ascontiguousarray(top_hint[piece]))
                for piece in self._pieces(cand, self.capacity)]
        parts = list(map_ordered(_ball_gains_unit, args))
        return tuple(np.concatenate([part[j] for part in parts]) for j in range(4))

    def add_penalties(self, rows, reach, penalty):
        reach_f = self.client.scatter(reach, hash=False, broadcast=True)
        args = [(self.token, self.src, self.settings, piece, reach_f)
                for piece in self._pieces(rows, self.capacity)]
        for increment in map_ordered(_ball_penalties_unit, args):
            penalty += increment
