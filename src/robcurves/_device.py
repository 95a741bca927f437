"""Where torch work runs: device names, batch sizes from free GPU memory, reproducible kernels.

One place for the three questions every entry point with a ``device=`` asks:

- :func:`resolve_device`: ``None`` means the model's own device (where its parameters live;
  CPU for a model without parameters), ``"auto"`` means CUDA when available (else CPU), any
  other name must exist here: ``"cuda"`` on a machine without CUDA is refused naming the
  devices that exist, never silently replaced by the CPU.
- :func:`batch_size_for`: on CUDA, the number of points whose working memory fits in a share of
  the free memory (``torch.cuda.mem_get_info``), capped; elsewhere the cap.
- :func:`set_deterministic`: cuDNN and cuBLAS settings under which the same inputs give the
  same bits on a GPU (slower kernels; the CPU is deterministic already).
"""

from __future__ import annotations

import os

import torch

__all__ = ["available_devices", "attack_batch_size", "batch_size_for", "resolve_device",
           "set_deterministic"]


def available_devices() -> list[str]:
    """The torch devices of this machine: ``cpu``, ``cuda:0`` .. and ``mps`` where present."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def module_device(module: object) -> torch.device:
    """Where a torch module's parameters (else buffers) live; CPU for anything else."""
    if isinstance(module, torch.nn.Module):
        for t in (*module.parameters(), *module.buffers()):
            return t.device
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None, module: object = None) -> torch.device:
    """The device to use: ``None`` -> ``module``'s device (CPU without one), ``"auto"`` -> the
    first CUDA device when available, else CPU; any other name must exist on this machine.

    Raises:
        ValueError: an unknown device name, or a device this machine does not have (naming
            the devices it has).
    """
    if device is None:
        return module_device(module)
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r} ({exc}); expected 'auto', 'cpu', 'cuda' "
                         f"or 'cuda:N'; this machine has: {', '.join(available_devices())}"
                         ) from None
    have = available_devices()
    if dev.type == "cuda":
        index = 0 if dev.index is None else dev.index
        if f"cuda:{index}" not in have:
            why = ("CUDA is not available (a CPU-only torch, or no GPU)"
                   if not torch.cuda.is_available() else f"there is no GPU {index}")
            raise ValueError(f"device {str(device)!r} is not available here: {why}; this "
                             f"machine has: {', '.join(have)} (device='auto' picks CUDA when "
                             "available)")
    elif dev.type == "mps" and "mps" not in have:
        raise ValueError(f"device {str(device)!r} is not available here; this machine has: "
                         f"{', '.join(have)}")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(device)!r} is not supported; expected one of "
                         f"{', '.join(have)} or 'auto'")
    return dev


#: Largest batch :func:`batch_size_for` picks (beyond it a GPU gains little and a batch's loss
#: on an interrupt grows).
BATCH_CAP = 4096
#: Share of the free GPU memory one batch may plan to use (the rest: the allocator's slack,
#: other processes, the model's own peaks).
MEMORY_SHARE = 0.5


def batch_size_for(device: str | torch.device, bytes_per_point: float, *, cap: int = BATCH_CAP,
                   share: float = MEMORY_SHARE) -> int:
    """Points per batch: on CUDA, as many as ``share`` of the device's free memory holds at
    ``bytes_per_point`` each (at least 1, at most ``cap``); on other devices ``cap``.

    ``bytes_per_point``: the working memory of one point (inputs, activations kept for the
    backward pass, the attack's buffers), e.g. measured with ``torch.cuda.max_memory_allocated``
    on a small batch.
    """
    if not bytes_per_point > 0:
        raise ValueError(f"bytes_per_point must be > 0; got {bytes_per_point!r}")
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError(f"cap must be an integer >= 1; got {cap!r}")
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1]; got {share!r}")
    dev = torch.device(device)
    if dev.type != "cuda":
        return cap
    free, _total = torch.cuda.mem_get_info(dev)
    return max(1, min(cap, int(free * share // bytes_per_point)))


#: An attack keeps a few input-sized buffers per point besides one forward and backward pass
#: (the best adversarial, the perturbation, momentum, the step's candidate).
ATTACK_MEMORY_FACTOR = 3.0


def attack_batch_size(model: object, x: object, probe: int = 8, cap: int = BATCH_CAP) -> int:
    """Points per attack batch for a model on CUDA, from the peak memory of one forward and
    backward pass of ``probe`` points of ``x`` (times :data:`ATTACK_MEMORY_FACTOR`) and the
    free memory (:func:`batch_size_for`); ``cap`` elsewhere."""
    dev = torch.device(getattr(model, "device", "cpu"))
    if dev.type != "cuda":
        return cap
    xb = torch.as_tensor(x[:probe], dtype=torch.float32, device=dev)
    yb = torch.zeros(xb.shape[0], dtype=torch.int64, device=dev)
    torch.cuda.synchronize(dev)
    before = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    f0, b0 = model.n_forward, model.n_backward
    model.value_and_grad(xb, yb, lambda z, t: torch.nn.functional.cross_entropy(
        z, t, reduction="none"))
    model.n_forward, model.n_backward = f0, b0  # a probe, not the attack's cost
    peak = torch.cuda.max_memory_allocated(dev) - before
    per_point = max(peak, 1) / xb.shape[0] * ATTACK_MEMORY_FACTOR
    return batch_size_for(dev, per_point, cap=cap)


def set_deterministic(enabled: bool = True) -> None:
    """Reproducible GPU results (or back to torch's defaults with ``enabled=False``):
    ``torch.backends.cudnn.deterministic``, no cuDNN autotuning (``benchmark``), and
    ``torch.use_deterministic_algorithms`` (an operation without a deterministic kernel then
    raises instead of varying). cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, set here
    when unset (it takes effect for CUDA contexts created afterwards)."""
    torch.backends.cudnn.deterministic = bool(enabled)
    torch.backends.cudnn.benchmark = not enabled and torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(bool(enabled))
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
