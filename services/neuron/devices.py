"""Device discovery: NVIDIA GPUs through NVML, else one ``cpu`` device with system memory.

Memory is attributed per model: NVML's per-process list for GPUs, the worker's resident
set (RSS) for the CPU. NVML is read with ``nvidia-ml-py`` (``pynvml``); on a host
without the NVIDIA driver it is simply absent and the CPU device is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psutil

from cortex.common.neuron import Device, ProcessMemory

log = logging.getLogger("cortex.neuron.devices")


class DeviceProbe:
    """Reads devices on demand. ``workers`` maps worker pid -> model id for attribution."""

    def __init__(self, budget_for, allowed: list[str] | None = None) -> None:
        self._budget_for = budget_for  # (device id, total bytes) -> budget bytes
        self._allowed = set(allowed or [])
        self._nvml: Any = None  # the pynvml module, once NVML answered
        try:
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() > 0:
                self._nvml = pynvml
        except Exception as exc:  # no driver, no library: a CPU host
            log.debug("NVML unavailable: %s", exc)

    @property
    def has_cuda(self) -> bool:
        return self._nvml is not None

    def default_device(self) -> str:
        return "cuda:0" if self.has_cuda else "cpu"

    def known_ids(self) -> list[str]:
        ids = ["cpu"]
        if self._nvml is not None:
            ids = [f"cuda:{i}" for i in range(self._nvml.nvmlDeviceGetCount())] + ids
        return [i for i in ids if not self._allowed or i in self._allowed or i == "cpu"]

    def read(self, workers: Mapping[int, str]) -> list[Device]:
        devices = self._read_gpus(workers) if self._nvml is not None else []
        if not self._allowed or "cpu" in self._allowed or not devices:
            devices.append(self._read_cpu(workers))
        return [d for d in devices if not self._allowed or d.id in self._allowed or d.id == "cpu"]

    def _read_cpu(self, workers: Mapping[int, str]) -> Device:
        memory = psutil.virtual_memory()
        used = memory.total - memory.available
        processes = []
        if not self.has_cuda:
            for pid, model in workers.items():
                rss = process_rss(pid)
                if rss is not None:
                    processes.append(ProcessMemory(model=model, pid=pid, bytes=rss))
        return Device(
            id="cpu",
            kind="cpu",
            name=cpu_name(),
            memory_total=memory.total,
            memory_used=used,
            memory_free=memory.available,
            utilization=psutil.cpu_percent(interval=None),
            budget=self._budget_for("cpu", memory.total),
            processes=processes,
        )

    def _read_gpus(self, workers: Mapping[int, str]) -> list[Device]:
        nvml = self._nvml
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            device = Device(
                id=f"cuda:{index}",
                kind="cuda",
                index=index,
                name=_text(nvml.nvmlDeviceGetName(handle)),
                uuid=_optional(lambda h=handle: _text(nvml.nvmlDeviceGetUUID(h))),
                memory_total=int(memory.total),
                memory_used=int(memory.used),
                memory_free=int(memory.free),
                utilization=_optional(
                    lambda h=handle: float(nvml.nvmlDeviceGetUtilizationRates(h).gpu)
                ),
                temperature_c=_optional(
                    lambda h=handle: float(
                        nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)
                    )
                ),
                power_w=_optional(lambda h=handle: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0),
                power_limit_w=_optional(
                    lambda h=handle: nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
                ),
                budget=self._budget_for(f"cuda:{index}", int(memory.total)),
                processes=self._gpu_processes(handle, workers),
            )
            devices.append(device)
        return devices

    def _gpu_processes(self, handle, workers: Mapping[int, str]) -> list[ProcessMemory]:
        try:
            running = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except Exception:
            return []
        found = []
        for proc in running:
            model = workers.get(int(proc.pid))
            used = getattr(proc, "usedGpuMemory", None)
            if model is not None and isinstance(used, int):
                found.append(ProcessMemory(model=model, pid=int(proc.pid), bytes=used))
        return found


def process_rss(pid: int) -> int | None:
    try:
        return psutil.Process(pid).memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"CPU ({psutil.cpu_count()} threads)"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(read):
    try:
        return read()
    except Exception:  # a field this GPU or driver does not report
        return None
