"""The Ray backend (issue 18): byte-identical to the local backend, resumable, clear errors.

One local Ray cluster (``ray.init(num_cpus=2)``) serves the whole file: starting it and its
first workers takes most of the file's time. CI needs ``pip install "ray>=2.9"`` (the
``robcurves[ray]`` extra) for these tests to run; without Ray the file is skipped.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "robcurves[ray]")')

from robcurves import ModelSpec, distances  # noqa: E402
from robcurves import _ray as rray  # noqa: E402
from robcurves.cli import main  # noqa: E402
from robcurves.store import BatchStore, batch_spans  # noqa: E402

# the modules defined here travel to the workers by value (they cannot import this file)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

ATTACK = {"attack": "fmn", "steps": 15}


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    rray._POOL.clear()
    ray.shutdown()


def _problem(n: int = 40, dim: int = 12, classes: int = 3):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(dim, 24), nn.ReLU(), nn.Linear(24, classes)).eval()
    x = np.random.default_rng(0).random((n, dim), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, classes, n)
    return net, x, y


class Slow(nn.Module):
    """``net`` that sleeps on every call, so that batches are in flight long enough to kill a
    worker; it raises on workers (not in the driver, pid ``driver``) while the file ``trip``
    exists and a batch holds a point whose first feature is ``trip_value``."""

    def __init__(self, net: nn.Module, pause: float, trip: str = "", trip_value: float = -1.0,
                 driver: int = 0) -> None:
        super().__init__()
        self.net, self.pause, self.trip, self.trip_value, self.driver = (
            net, pause, trip, trip_value, driver)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.pause)
        if (self.trip and os.getpid() != self.driver and os.path.exists(self.trip)
                and bool((x[:, 0] == self.trip_value).any())):
            raise RuntimeError("tripped on purpose")
        return self.net(x)


def _count_puts(monkeypatch) -> list[tuple[int, int]]:
    puts: list[tuple[int, int]] = []
    put = BatchStore.put

    def counting(self, start, stop, result):
        puts.append((start, stop))
        put(self, start, stop, result)

    monkeypatch.setattr(BatchStore, "put", counting)
    return puts


def test_ray_distances_are_byte_identical_to_local(tmp_path):
    net, x, y = _problem()
    for norm in ("l2", "inf"):
        local = distances(net, x, y, norm, batch_size=8, return_adversarials=True, **ATTACK)
        remote = distances(net, x, y, norm, batch_size=8, return_adversarials=True,
                           backend="ray", workers=2, store=tmp_path / norm, **ATTACK)
        assert np.array_equal(local.distances, remote.distances)
        assert np.array_equal(local.adversarials, remote.adversarials, equal_nan=True)
        assert np.isfinite(local.distances).sum() > 30  # the attack broke most points
        assert local.settings == remote.settings and local.cost.keys() == remote.cost.keys()
        assert sorted(p.name for p in (tmp_path / norm).glob("batch-*.npz")) == [
            f"batch-{a:09d}-{b:09d}.npz" for a, b in batch_spans(40, 8)]


def test_curve_files_from_the_cli_are_byte_identical(tmp_path):
    from robcurves.train.archs import build
    from robcurves.train.io import save_model

    torch.manual_seed(0)
    path = save_model(build("mlp", (1, 8, 8), 10, width=32).eval(), tmp_path / "net.rcm",
                      meta={"arch": "mlp", "arch_kwargs": {"width": 32},
                            "input_shape": [1, 8, 8], "num_classes": 10})
    common = ["curve", "--model", str(path), "--data", "digits", "--n", "24", "--norms", "l2",
              "--attack", "fmn", "--attack-opt", "steps=10", "--batch-size", "6",
              "--certify", "crown", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--backend", "ray",
                 "--workers", "2"]) == 0
    for name in ("curve-l2.json", "certified-l2.json"):  # attacks and certificates
        a = (tmp_path / "local" / name).read_bytes()
        assert a == (tmp_path / "ray" / name).read_bytes()
    assert len(list((tmp_path / "ray" / "work" / "certify-crown-l2").glob("batch-*"))) == 4


def test_killing_a_worker_recomputes_only_its_batch(tmp_path, monkeypatch):
    net, x, y = _problem(n=48)
    slow = Slow(net, pause=0.02)
    expected = distances(net, x, y, "l2", batch_size=6, **ATTACK)  # the sleep changes nothing
    # two warm workers from the earlier tests: the run takes them from the pool
    distances(slow, x[:4], y[:4], "l2", batch_size=2, backend="ray", workers=2, **ATTACK)
    key = next(k for k, v in rray._POOL.items() if len(v) >= 2)
    victims = list(rray._POOL[key])
    puts = _count_puts(monkeypatch)
    store = tmp_path / "s"

    def kill_after_first_batch() -> None:
        deadline = time.monotonic() + 60
        while not list(store.glob("batch-*.npz")) and time.monotonic() < deadline:
            time.sleep(0.01)
        ray.kill(victims[0])

    killer = threading.Thread(target=kill_after_first_batch)
    killer.start()
    with pytest.warns(UserWarning, match="a Ray worker died") as record:
        got = distances(slow, x, y, "l2", batch_size=6, backend="ray", workers=2,
                        store=store, **ATTACK)
    killer.join(5)
    lost = [w for w in record if "a Ray worker died" in str(w.message)]
    assert len(lost) == 1  # one worker died: the batches it held (computing, queued) again
    assert 1 <= str(lost[0].message).count("..") <= rray.PIPELINE
    assert sorted(puts) == batch_spans(48, 6)  # every batch stored exactly once, none lost
    assert np.array_equal(got.distances, expected.distances)


def test_a_killed_driver_resumes_with_only_the_missing_batches(tmp_path, monkeypatch, capsys):
    net, x, y = _problem(n=48)
    x[30, 0] = 0.123  # the point that trips the worker (batch 30..35)
    trip = tmp_path / "trip"
    trip.touch()
    model = Slow(net, pause=0.0, trip=str(trip), trip_value=float(x[30, 0]), driver=os.getpid())
    store = tmp_path / "s"
    with pytest.raises(RuntimeError, match="tripped on purpose"):
        distances(model, x, y, "l2", batch_size=6, backend="ray", workers=1, store=store,
                  **ATTACK)
    before = {p.name for p in store.glob("batch-*.npz")}
    assert 0 < len(before) < 8 and "batch-000000030-000000036.npz" not in before
    trip.unlink()
    puts = _count_puts(monkeypatch)
    capsys.readouterr()
    got = distances(model, x, y, "l2", batch_size=6, backend="ray", workers=1, store=store,
                    progress=True, **ATTACK)
    bar = capsys.readouterr().err  # the bar starts at the stored points, ends at all of them
    assert f"{6 * len(before)}/48" in bar
    assert "48/48" in bar
    missing = [s for s in batch_spans(48, 6)
               if f"batch-{s[0]:09d}-{s[1]:09d}.npz" not in before]
    assert sorted(puts) == missing  # the stored batches were read back, not recomputed
    assert np.array_equal(got.distances, distances(net, x, y, "l2", batch_size=6,
                                                   **ATTACK).distances)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_address_fails_fast_naming_it(tmp_path, capsys):
    net, x, y = _problem(n=4)
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=address):
        distances(net, x, y, "l2", backend="ray", ray_address=address, store=tmp_path / "s",
                  **ATTACK)
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "s").exists()  # before any work
    out = tmp_path / "o"
    assert main(["curve", "--model", "m.pt", "--data", "digits", "--out", str(out),
                 "--backend", "ray", "--address", address]) == 2
    assert address in capsys.readouterr().err and not out.exists()


def test_a_missing_extra_names_the_install_command(monkeypatch, tmp_path, capsys):
    net, x, y = _problem(n=4)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r'pip install "robcurves\[ray\]"'):
        distances(net, x, y, "l2", backend="ray", **ATTACK)
    # the CLI: a one-line error before any work (m.pt does not exist: not read yet)
    assert main(["curve", "--model", "m.pt", "--data", "digits", "--out", str(tmp_path / "o"),
                 "--backend", "ray"]) == 2
    assert 'pip install "robcurves[ray]"' in capsys.readouterr().err


def test_a_model_file_a_worker_cannot_load_is_a_clear_error(tmp_path):
    net, x, y = _problem(n=8)
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    spec = ModelSpec(str(path), {"bounds": (0.0, 1.0)})
    spec.load()  # the driver has it; the workers' machine does not
    path.unlink()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="could not load the model .*net.pt"):
        distances(spec, x, y, "l2", batch_size=4, backend="ray", workers=1, **ATTACK)
    assert time.monotonic() - t0 < 60
    # the worker is alive (the error was the model's): kept in the pool, not ended
    kept = [a for pool in rray._POOL.values() for a in pool]
    assert kept and all(ray.get(a.load.remote(None, None), timeout=60) for a in kept)


def test_bad_backend_options_are_refused_before_work():
    net, x, y = _problem(n=4)
    with pytest.raises(ValueError, match="backend must be 'local' or 'ray'; got 'spark'"):
        distances(net, x, y, "l2", backend="spark")
    with pytest.raises(ValueError, match="workers must be a whole number >= 1; got 0"):
        distances(net, x, y, "l2", backend="ray", workers=0)
    with pytest.raises(ValueError, match="'HOST:PORT'; got 'nowhere'"):
        distances(net, x, y, "l2", backend="ray", ray_address="nowhere")



def test_a_local_start_runs_in_the_calling_thread(monkeypatch):
    # Ray's processes die with the thread that started them (Linux parent-death signal): a
    # local start from a helper thread killed the new cluster a minute later
    threads = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: threads.append(threading.current_thread()))
    rray.connect(None)
    assert threads == [threading.main_thread()]


# -- certify and inter-class distances on Ray -------------------------------------------------

def test_ray_certify_is_byte_identical_and_resumes_from_the_store(tmp_path, monkeypatch):
    from robcurves import certify

    net, x, y = _problem(n=30)
    up = distances(net, x, y, "l2", batch_size=10, **ATTACK)
    for method, norm in (("crown", "l2"), ("ibp", "inf")):
        kw = {"upper": up.distances if norm == "l2" else None, "batch_size": 8, "iters": 8}
        local = certify(net, x, y, norm, method, **kw)
        store = tmp_path / method
        remote = certify(net, x, y, norm, method, backend="ray", workers=2, store=store, **kw)
        assert np.array_equal(local.distances, remote.distances)
        assert np.array_equal(local.predictions, remote.predictions)
        assert local.settings == remote.settings and local.method == remote.method
        assert np.isfinite(local.distances).any() and (local.distances > 0).any()
        assert sorted(p.name for p in store.glob("batch-*.npz")) == [
            f"batch-{a:09d}-{b:09d}.npz" for a, b in batch_spans(30, 8)]
    # a driver killed after some batches: the rerun computes only the missing ones
    lost = sorted(store.glob("batch-*.npz"))[1:3]
    for f in lost:
        f.unlink()
    puts = _count_puts(monkeypatch)
    again = certify(net, x, y, "inf", "ibp", backend="ray", workers=2, store=store,
                    batch_size=8, iters=8)
    assert sorted(puts) == [(8, 16), (16, 24)]
    assert np.array_equal(again.distances, local.distances)


def _pass2_batches(monkeypatch) -> list[tuple[int, int]]:
    """(rows, block) of every Ray pass 2 run (the query blocks handed to workers)."""
    calls: list[tuple[int, int]] = []
    real = rray.run_batches_ray

    def spy(n, batch_size, *args, **kwargs):
        calls.append((n, batch_size))
        return real(n, batch_size, *args, **kwargs)

    monkeypatch.setattr(rray, "run_batches_ray", spy)
    return calls


def test_ray_interclass_distances_are_byte_identical(monkeypatch):
    from robcurves.data import load
    from robcurves.scale import interclass_distances

    ds = load("digits")
    x, y = ds.x[:400], ds.y[:400]
    x[7] = x[3]  # a conflicting duplicate (if the labels differ) and exact ties
    calls = _pass2_batches(monkeypatch)
    for norm in ("inf", "l2", "l1"):
        kw = {"same_class": True, "block_size": 64}
        local = interclass_distances(x, y, norm, **kw)
        remote = interclass_distances(x, y, norm, backend="ray", workers=2, **kw)
        for f in ("distances", "neighbors", "same_distances", "same_neighbors", "conflicts"):
            assert np.array_equal(getattr(local, f), getattr(remote, f)), (norm, f)
        # against brute force: exact distances
        a = x.reshape(len(x), -1).astype(np.float64)
        p = {"inf": np.inf, "l2": 2, "l1": 1}[norm]
        full = np.linalg.norm(a[:, None] - a[None], ord=p, axis=2)
        full[y[:, None] == y[None]] = np.inf
        assert np.allclose(local.distances, full.min(1), rtol=1e-12, atol=0)
    # pass 2 really ran on the workers, in several query blocks, for each norm and class kind
    assert any(n > 64 for n, _ in calls) and all(b == 64 for _, b in calls)


def _slow_engine(marks: str):
    """An inter-class engine that sleeps (0.1 s) per query block and leaves a file named by its
    process id in ``marks`` when it starts one (it travels to the workers by value)."""
    from robcurves._interclass_engine import Engine

    class SlowEngine(Engine):
        def second_pass_block(self, *args, **kwargs):
            open(os.path.join(marks, str(os.getpid())), "w").close()
            time.sleep(0.1)
            return super().second_pass_block(*args, **kwargs)

    return SlowEngine


def test_killing_an_interclass_worker_loses_no_block(monkeypatch, tmp_path):
    import signal

    from robcurves import scale
    from robcurves.data import load
    from robcurves.scale import interclass_distances

    ds = load("digits")
    x, y = ds.x[:300], ds.y[:300]
    expected = interclass_distances(x, y, "inf", block_size=16)  # pass 2: every row
    monkeypatch.setattr(scale, "Engine", _slow_engine(str(tmp_path)))
    calls = _pass2_batches(monkeypatch)

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = list(tmp_path.iterdir())
            if busy:  # a worker process in the middle of a block
                os.kill(int(busy[0].name), signal.SIGKILL)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    with pytest.warns(UserWarning, match="a Ray worker died") as record:
        got = interclass_distances(x, y, "inf", block_size=16, backend="ray", workers=2)
    killer.join(5)
    assert len([w for w in record if "a Ray worker died" in str(w.message)]) == 1
    assert calls and calls[0][0] > 3 * 16  # several blocks: the kill lands mid-run
    assert np.array_equal(got.distances, expected.distances)
    assert np.array_equal(got.neighbors, expected.neighbors)


def test_scale_cli_with_ray_writes_the_same_files(tmp_path, capsys):
    import json

    common = ["scale", "digits", "--limit", "200", "--norms", "linf,l2", "--block-size", "32",
              "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--backend", "ray",
                 "--workers", "2"]) == 0

    def strip(path):  # every byte but the run's seconds
        data = json.loads(path.read_text())
        for entry in data["data"]:
            for res in entry["norms"].values():
                res.pop("seconds")
        return data

    assert strip(tmp_path / "local" / "scale.json") == strip(tmp_path / "ray" / "scale.json")
    assert ((tmp_path / "local" / "scale.md").read_bytes()
            == (tmp_path / "ray" / "scale.md").read_bytes())
    address = f"127.0.0.1:{_free_port()}"
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "x"), "--backend", "ray",
                 "--address", address]) == 2
    assert address in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main([*common, "--out", str(tmp_path / "y"), "--workers", "2"]) == 2
    assert "--workers applies to --backend ray only" in capsys.readouterr().err


def test_certify_and_interclass_fail_fast_on_a_wrong_address_or_missing_extra(monkeypatch,
                                                                              tmp_path):
    from robcurves import certify
    from robcurves.scale import interclass_distances

    net, x, y = _problem(n=4)
    calls = (lambda **kw: certify(net, x, y, "l2", "crown", store=tmp_path / "c", **kw),
             lambda **kw: interclass_distances(x, y, "l2", **kw))
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    for call in calls:
        t0 = time.monotonic()
        with pytest.raises(ConnectionError, match=address):
            call(backend="ray", ray_address=address)
        assert time.monotonic() - t0 < 30
        with pytest.raises(ValueError, match="backend must be 'local' or 'ray'; got 'dask'"):
            call(backend="dask")
    assert not (tmp_path / "c").exists()  # refused before any work
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    for call in calls:
        with pytest.raises(ImportError, match=r'pip install "robcurves\[ray\]"'):
            call(backend="ray")
