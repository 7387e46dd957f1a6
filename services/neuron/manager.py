"""The model manager: loads, unloads, crashes, spare workers, and what /status reports.

Owns every ModelRuntime and every worker process. Loading a model that is already
loading or loaded joins it (one load, however many callers). A worker that exits on its
own is a crash: its model is removed, ``model_removed`` (reason ``crashed``) goes out,
its open requests end with an error, and the rest of the neuron carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from cortex.common.config import NeuronSection, parse_size
from cortex.common.errors import CortexError
from cortex.common.neuron import (
    AvailableEvent,
    Device,
    DevicesEvent,
    LoadedModel,
    LoadProgress,
    LoadRequest,
    ModelEvent,
    ModelFile,
    ModelRemovedEvent,
    NodeStatus,
    PrefixCacheStatus,
    RequestEvent,
)
from cortex.services.neuron.backends import BackendChooser
from cortex.services.neuron.catalog import ModelCatalog, ModelInspectionError, inspect_model
from cortex.services.neuron.devices import DeviceProbe
from cortex.services.neuron.events import Coalescer, EventBus
from cortex.services.neuron.metrics import NeuronMetrics
from cortex.services.neuron.models import ModelRuntime
from cortex.services.neuron.requests import RequestHandle
from cortex.services.neuron.worker import protocol as p
from cortex.services.neuron.worker.process import LoadError, WorkerProcess, load_env

log = logging.getLogger("cortex.neuron")

VERSION = "0.1.0"
DEVICES_INTERVAL_S = 5.0
MEMORY_INTERVAL_S = 2.0
RESCAN_INTERVAL_S = 10.0


class ModelManager:
    def __init__(self, settings: NeuronSection, models_dir: Path | None = None) -> None:
        self.settings = settings
        self.name = settings.node_name
        self.started_at = time.time()
        self.probe = DeviceProbe(settings.budget_for, settings.devices)
        self.chooser = BackendChooser(self.probe.has_cuda, settings.backend_default)
        self.catalog = ModelCatalog(
            models_dir or settings.resolved_models_dir(), self.chooser.backends_for
        )
        self.bus = EventBus()
        self.metrics = NeuronMetrics(self.loaded_models, self.device_list)
        self.models: dict[str, ModelRuntime] = {}
        self._coalescer = Coalescer(self._emit_model)
        self._devices: list[Device] = []
        self._spare: WorkerProcess | None = None
        self._spare_task: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._load_tasks: set[asyncio.Task] = set()
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.catalog.scan()
        self._devices = self.probe.read({})
        self._tasks = [
            asyncio.create_task(self._every(DEVICES_INTERVAL_S, self._publish_devices)),
            asyncio.create_task(self._every(MEMORY_INTERVAL_S, self._refresh_live)),
            asyncio.create_task(self._every(RESCAN_INTERVAL_S, self.rescan)),
        ]
        if self.settings.prewarm_worker and self.chooser.available():
            self._ensure_spare()

    async def close(self) -> None:
        self._closing = True
        for task in [*self._tasks, *self._load_tasks]:
            task.cancel()
        workers = [rt.worker for rt in self.models.values() if rt.worker is not None]
        if self._spare_task is not None:
            self._spare_task.cancel()
            with contextlib.suppress(BaseException):
                await self._spare_task
        if self._spare is not None:
            workers.append(self._spare)
        await asyncio.gather(*(w.stop(grace=3) for w in workers), return_exceptions=True)

    async def _every(self, interval: float, action) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                action()
            except Exception:
                log.exception("periodic task %s failed", getattr(action, "__name__", action))

    # ------------------------------------------------------------------ queries

    def loaded_models(self) -> list[LoadedModel]:
        return [rt.info for rt in self.models.values()]

    def device_list(self) -> list[Device]:
        return self._devices

    def worker_pids(self) -> dict[int, str]:
        return {
            rt.worker.pid: rt.id
            for rt in self.models.values()
            if rt.worker is not None and rt.worker.alive
        }

    def read_devices(self) -> list[Device]:
        self._devices = self.probe.read(self.worker_pids())
        return self._devices

    def status(self) -> NodeStatus:
        return NodeStatus(
            name=self.name,
            version=VERSION,
            started_at=self.started_at,
            backends=self.chooser.available(),
            devices=self.read_devices(),
            available=self.catalog.listing(),
            loaded=self.loaded_models(),
            models_dir=str(self.catalog.root),
        )

    def rescan(self) -> list[ModelFile]:
        if self.catalog.scan():
            self.bus.publish(AvailableEvent(available=self.catalog.listing()))
        return self.catalog.listing()

    def runtime_for(self, model: str) -> ModelRuntime:
        """The loaded model serving ``model``, or the 404 that explains why there is none."""
        runtime = self.models.get(model)
        if runtime is not None:
            return runtime
        if self.catalog.get(model) is None:
            self.catalog.scan()
        if self.catalog.get(model) is not None:
            raise CortexError(
                404,
                f"The model {model!r} is on this neuron but not loaded. Load it first: "
                f'POST /models/load with {{"model": "{model}"}}.',
                code="model_not_loaded",
                param="model",
            )
        loaded = ", ".join(sorted(self.models)) or "none"
        raise CortexError(
            404,
            f"The model {model!r} does not exist on this neuron (loaded: {loaded}).",
            code="model_not_found",
            param="model",
        )

    # ------------------------------------------------------------------ load

    def begin_load(self, request: LoadRequest) -> ModelRuntime:
        """Start loading (or join the load of) a model; returns at once."""
        try:
            resolved_id, path = self.catalog.resolve(request.model)
            model_file = self.catalog.get(resolved_id) or inspect_model(
                path, resolved_id, self.chooser.backends_for
            )
        except ModelInspectionError as exc:
            raise CortexError(404, str(exc), code="model_not_found", param="model") from None
        model_id = request.id or resolved_id
        existing = self.models.get(model_id)
        if existing is not None and existing.info.state in ("loading", "loaded"):
            if existing.info.path != str(path):
                raise CortexError(
                    409,
                    f"id {model_id!r} is already serving {existing.info.path}; "
                    "unload it first or load under another id.",
                    code="model_id_in_use",
                    param="id",
                )
            return existing
        backend = self.chooser.choose(request.backend, model_file.format)
        devices = self._devices_for(request.devices, backend)
        model_max = model_file.max_seq_len or self.settings.default_max_seq_len
        if request.max_seq_len and model_file.max_seq_len and request.max_seq_len > model_max:
            # Capping it silently would make the gateway advertise a context the model
            # never had; a longer context needs the model's own config to allow it.
            raise CortexError(
                400,
                f"max_seq_len {request.max_seq_len} is above {model_id}'s own context length "
                f"of {model_max} tokens (max_position_embeddings in {path}/config.json): "
                f"lower max_seq_len (the models.toml profile) to {model_max} or less. To run "
                "it longer, extend the model's context in its config.json (e.g. rope_scaling "
                "with a larger max_position_embeddings) where the model supports that.",
                code="max_seq_len_too_large",
                param="max_seq_len",
            )
        max_seq_len = min(request.max_seq_len or self.settings.default_max_seq_len, model_max)
        if max_seq_len < 16:
            raise CortexError(400, "max_seq_len must be >= 16.", param="max_seq_len")
        concurrency = request.max_concurrency or self.settings.max_concurrency
        if concurrency < 1:
            raise CortexError(400, "max_concurrency must be >= 1.", param="max_concurrency")
        cache_type = request.cache_type or self.settings.default_cache_type
        prefix_cache = self._prefix_cache_bytes(request.prefix_cache)
        info = LoadedModel(
            id=model_id,
            state="loading",
            backend=backend,
            devices=devices,
            path=str(path),
            max_seq_len=max_seq_len,
            cache_type=cache_type,
            max_concurrency=concurrency,
            progress=LoadProgress(stage="queued"),
        )
        runtime = ModelRuntime(
            info,
            max_queue=self.settings.max_queue,
            changed=self._model_changed,
            finished=self._request_finished,
            tokens=self._tokens_generated,
        )
        self.models[model_id] = runtime
        log.info("loading %s from %s (%s on %s)", model_id, path, backend, ",".join(devices))
        self._model_changed(runtime, True)
        load = p.Load(
            model_id=model_id,
            path=str(path),
            backend=backend,
            devices=devices,
            max_seq_len=max_seq_len,
            cache_type=cache_type,
            max_concurrency=concurrency,
            cpu_threads=self.settings.cpu_threads,
            batching=request.batching or self.settings.batching,
            prefix_cache_bytes=prefix_cache,
        )
        task = asyncio.create_task(self._load(runtime, load))
        self._load_tasks.add(task)
        task.add_done_callback(self._load_tasks.discard)
        return runtime

    def _prefix_cache_bytes(self, requested: int | str | None) -> int:
        value = self.settings.prefix_cache if requested is None else requested
        try:
            return parse_size(value)
        except ValueError as exc:
            raise CortexError(400, f"prefix_cache: {exc}", param="prefix_cache") from None

    def _devices_for(self, requested: list[str] | None, backend: str) -> list[str]:
        known = self.probe.known_ids()
        devices = requested or [self.probe.default_device()]
        unknown = [d for d in devices if d not in known]
        if unknown:
            raise CortexError(
                400,
                f"unknown device(s) {', '.join(unknown)}; this neuron has {', '.join(known)}.",
                code="invalid_device",
                param="devices",
            )
        if backend == "exllamav2" and "cpu" in devices:
            raise CortexError(400, "backend exllamav2 runs on CUDA devices only.", param="devices")
        if backend == "transformers" and len(devices) > 1:
            raise CortexError(
                400,
                "backend transformers runs a model on one device; name one in `devices`.",
                param="devices",
            )
        return devices

    async def _load(self, runtime: ModelRuntime, load: p.Load) -> None:
        started = time.monotonic()
        worker: WorkerProcess | None = None
        try:
            runtime.set_progress(LoadProgress(stage="starting"))
            worker = await self.worker_for(load)
            runtime.worker = worker
            runtime.info.pid = worker.pid
            worker.on_exit = lambda w, rt=runtime: self._worker_exited(rt, w)
            runtime.set_progress(LoadProgress(stage="loading"))

            def progress(message: p.Progress) -> None:
                runtime.set_progress(
                    LoadProgress(stage="loading", done=message.done, total=message.total)
                )

            loaded = await worker.load(load, progress)
        except (LoadError, OSError) as exc:
            status = exc.status if isinstance(exc, LoadError) else 500
            message = exc.message if isinstance(exc, LoadError) else str(exc)
            self._load_failed(runtime, worker, status, message)
            return
        except asyncio.CancelledError:
            if worker is not None:
                worker.kill()
            raise
        info = runtime.info
        info.state = "loaded"
        info.max_seq_len = loaded.max_seq_len
        info.max_concurrency = loaded.max_concurrency
        info.devices = loaded.devices
        info.cache_type = loaded.cache_type or info.cache_type
        info.batching = loaded.batching
        if loaded.prefix_cache_bytes:
            info.prefix_cache = PrefixCacheStatus(budget_bytes=loaded.prefix_cache_bytes)
        info.loaded_at = time.time()
        info.load_seconds = round(time.monotonic() - started, 3)
        info.progress = LoadProgress(stage="loaded", done=1, total=1)
        self._refresh_memory(runtime)
        log.info("loaded %s in %.2fs (pid %s)", info.id, info.load_seconds, worker.pid)
        for queue in list(runtime.progress_listeners):
            queue.put_nowait(info.progress)
        if not runtime.ready.done():
            runtime.ready.set_result(info)
        self._model_changed(runtime, True)

    def _load_failed(
        self, runtime: ModelRuntime, worker: WorkerProcess | None, status: int, message: str
    ) -> None:
        info = runtime.info
        log.error("load of %s failed: %s", info.id, message)
        info.state = "failed"
        info.error = message
        info.progress = LoadProgress(stage="failed", message=message)
        for queue in list(runtime.progress_listeners):
            queue.put_nowait(info.progress)
        if self.models.get(info.id) is runtime:
            del self.models[info.id]
        self._coalescer.forget(info.id)
        self.bus.publish(ModelRemovedEvent(id=info.id, reason="failed", message=message))
        if worker is not None:
            worker.on_exit = None
            task = asyncio.create_task(worker.stop(grace=2))
            self._load_tasks.add(task)
            task.add_done_callback(self._load_tasks.discard)
        if not runtime.ready.done():
            code = "backend_unavailable" if status == 400 else "load_failed"
            runtime.ready.set_exception(
                CortexError(status, f"loading {info.id!r} failed: {message}", code=code)
            )
            runtime.ready.exception()  # retrieved: a join may never await it

    async def wait_loaded(self, runtime: ModelRuntime) -> LoadedModel:
        return await asyncio.shield(runtime.ready)

    # ------------------------------------------------------------------ workers

    async def worker_for(self, load: p.Load) -> WorkerProcess:
        """A worker for this load: the prewarmed spare, or a fresh one when the load
        needs its own environment (see ``load_env``)."""
        extra = load_env(load)
        if extra:
            return await WorkerProcess.spawn(prewarm=True, env={**self._worker_env(), **extra})
        spare = self._spare
        if self._spare_task is not None and not self._spare_task.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._spare_task)
            spare = self._spare
        self._spare = None
        if spare is None or not spare.alive:
            spare = await WorkerProcess.spawn(prewarm=True, env=self._worker_env())
        if self.settings.prewarm_worker and not self._closing:
            self._ensure_spare()
        return spare

    def _ensure_spare(self) -> None:
        if self._spare is not None or (self._spare_task and not self._spare_task.done()):
            return

        async def spawn() -> None:
            worker = await WorkerProcess.spawn(prewarm=True, env=self._worker_env())
            worker.on_exit = self._spare_exited
            self._spare = worker

        self._spare_task = asyncio.create_task(spawn())

    def _spare_exited(self, worker: WorkerProcess) -> None:
        if self._spare is worker:
            self._spare = None
            if not self._closing:
                log.warning("spare worker %s exited: %s", worker.pid, worker.describe_exit())

    def _worker_env(self) -> dict[str, str]:
        return {"CORTEX_WORKER_LOG_LEVEL": self.settings.log_level.upper()}

    def _worker_exited(self, runtime: ModelRuntime, worker: WorkerProcess) -> None:
        info = runtime.info
        if self._closing or self.models.get(info.id) is not runtime:
            return
        if info.state in ("unloading", "failed"):
            return
        if info.state == "loading":
            return  # the load task reports it
        message = worker.describe_exit()
        log.error("model %s crashed: %s", info.id, message)
        info.state = "failed"
        info.error = message
        runtime.fail_open_requests()
        del self.models[info.id]
        self._coalescer.forget(info.id)
        self.bus.publish(ModelRemovedEvent(id=info.id, reason="crashed", message=message))

    # ------------------------------------------------------------------ unload

    async def unload(self, model_id: str) -> LoadedModel:
        runtime = self.models.get(model_id)
        if runtime is None:
            self.runtime_for(model_id)  # raises the right 404
            raise AssertionError("unreachable")
        info = runtime.info
        info.state = "unloading"
        self._model_changed(runtime, True)
        log.info("unloading %s", model_id)
        worker = runtime.worker
        if worker is not None:
            worker.on_exit = None
            await worker.stop(grace=5, reason=f"model {model_id!r} was unloaded")
        if not runtime.ready.done():
            runtime.ready.set_exception(
                CortexError(503, f"model {model_id!r} was unloaded while loading")
            )
            runtime.ready.exception()
        if self.models.get(model_id) is runtime:
            del self.models[model_id]
        self._coalescer.forget(model_id)
        self.bus.publish(ModelRemovedEvent(id=model_id, reason="unloaded"))
        self.read_devices()
        return info

    # ------------------------------------------------------------------ figures & events

    def _model_changed(self, runtime: ModelRuntime, urgent: bool) -> None:
        if self.models.get(runtime.id) is runtime:
            self._coalescer.touch(runtime.id, urgent)

    def _emit_model(self, model_id: str) -> None:
        runtime = self.models.get(model_id)
        if runtime is not None:
            runtime.refresh_rate()
            self.bus.publish(ModelEvent(model=runtime.info))

    def _tokens_generated(self, runtime: ModelRuntime, tokens: int) -> None:
        self.metrics.count_completion_tokens(runtime.id, tokens)

    def _request_finished(self, handle: RequestHandle) -> None:
        stats = handle.stats()
        self.metrics.record(stats)
        self.bus.publish(RequestEvent(stats=stats))
        log.info(
            "request %s model=%s endpoint=%s status=%s finish=%s prompt=%d completion=%d "
            "ttft_ms=%s decode_tok_s=%s total_ms=%.1f%s",
            stats.request_id,
            stats.model,
            stats.endpoint,
            stats.status,
            stats.finish_reason,
            stats.prompt_tokens,
            stats.completion_tokens,
            None if stats.ttft_ms is None else round(stats.ttft_ms, 1),
            None if stats.decode_tokens_per_s is None else round(stats.decode_tokens_per_s, 1),
            stats.total_ms,
            f" reason={stats.error!r}" if stats.error else "",
        )

    def _refresh_live(self) -> None:
        devices = self.read_devices()
        by_pid: dict[int, dict[str, int]] = {}
        for device in devices:
            for proc in device.processes:
                by_pid.setdefault(proc.pid, {})[device.id] = proc.bytes
        for runtime in list(self.models.values()):
            changed = runtime.refresh_rate()
            if runtime.worker is not None:
                memory = by_pid.get(runtime.worker.pid, {})
                if memory != runtime.info.memory_by_device:
                    runtime.info.memory_by_device = memory
                    runtime.info.memory_bytes = sum(memory.values())
                    changed = True
            if changed:
                self._model_changed(runtime, False)

    def _refresh_memory(self, runtime: ModelRuntime) -> None:
        devices = self.read_devices()
        pid = runtime.worker.pid if runtime.worker else None
        memory = {d.id: pr.bytes for d in devices for pr in d.processes if pr.pid == pid}
        runtime.info.memory_by_device = memory
        runtime.info.memory_bytes = sum(memory.values())

    def _publish_devices(self) -> None:
        self.bus.publish(DevicesEvent(devices=self._devices))
