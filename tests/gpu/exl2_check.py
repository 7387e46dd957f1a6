"""exllamav2 on a real GPU, end to end, in one run (issue 14). Start it with run_exllamav2.sh.

1. The exllamav2 0.3.2 extension: the binary wheel built ahead by build_exllamav2.sh
   (run_exllamav2.sh installs it from .whl/), else built here, timed.
2. Llama-architecture models with seeded random weights at real shapes (Llama 3.2 1B
   and Llama 3 8B, fp16) and the demo tokenizer, each quantised to EXL2 4.0 bpw with
   exllamav2's converter (short calibration: the weights are random anyway). The 8B
   conversion gets what the time budget leaves; if it runs out, the 8B is served fp16.
3. Device memory bandwidth (a large device-to-device copy).
4. Through cortex's exllamav2 backend in a real neuron, per model: load seconds and
   progress; VRAM as the neuron reports it against NVML, and what unload returns;
   decode tok/s at batch 1 three ways (exllamav2's dynamic generator driven directly,
   the neuron's HTTP stream, the same through the gateway) and their ratios; TTFT;
   prefill tok/s (a 2000-token prompt); bytes read per decoded token against the
   bandwidth, i.e. the fraction of the bound reached; 8 concurrent streams (batched
   with flash-attn, queued one at a time without). On the 1B: a client hanging up
   mid-stream stops the GPU job, a forced tool call, a logit_bias request.

Each stage's figures go into results.json under --out; the report and a block ready to
paste into BENCHMARKS.md end the output. A failing stage is reported and the run goes
on where it can. ``--dry-run`` runs stage 4's measurements on this CPU host against
demo-long on the transformers backend (no GPU, NVML or exllamav2), to check the script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))  # support.neuron / support.gateway launchers

PROMPT_TOKENS = 128
PREFILL_TOKENS = 2000
NEW_TOKENS = 256
CONCURRENT = 8
MAX_SEQ_LEN = 4096
GiB = 1024**3
# Short calibration for the converter: random weights gain nothing from the default
# 100 x 2048 rows (and 16 x 2048 to measure), and the run has minutes, not hours.
CONVERT_CALIBRATION = ["-r", "16", "-l", "512", "-mr", "4", "-ml", "512"]
SERVE_RESERVE_S = 240  # what stage 4 needs, kept back from the 8B conversion


# --------------------------------------------------------------------- pure helpers


def safetensors_bytes(model_dir: Path, skip: tuple[str, ...] = ()) -> int:
    """Bytes of every tensor in the model's safetensors files, except names in ``skip``."""
    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        for name, info in header.items():
            if name == "__metadata__" or name.startswith(skip):
                continue
            start, end = info["data_offsets"]
            total += end - start
    return total


def kv_bytes_per_token(config: dict, bytes_per_value: int = 2) -> int:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads", heads)
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * bytes_per_value


def bytes_per_decoded_token(model_dir: Path, mean_context: int) -> int:
    """What one batch-1 decode step reads from VRAM: every weight except the input
    embedding (exllamav2 keeps it in system memory) plus the fp16 KV cache so far."""
    config = json.loads((model_dir / "config.json").read_text())
    weights = safetensors_bytes(model_dir, skip=("model.embed_tokens.",))
    return weights + kv_bytes_per_token(config) * mean_context


def decode_rate(tokens: int, first_token_at: float, last_token_at: float) -> float:
    """Decode tok/s from the first token's arrival to the last: prefill excluded."""
    if tokens < 2 or last_token_at <= first_token_at:
        return 0.0
    return (tokens - 1) / (last_token_at - first_token_at)


def ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.3f}" if numerator and denominator else "-"


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def prompt_ids(count: int = PROMPT_TOKENS) -> list[int]:
    """A fixed prompt of exactly ``count`` ordinary tokens of the demo tokenizer."""
    return [300 + (i * 7) % 400 for i in range(count)]


def eos_ids(model_dir: Path) -> list[int]:
    config = json.loads((model_dir / "generation_config.json").read_text())
    ids = config["eos_token_id"]
    return ids if isinstance(ids, list) else [ids]


def no_eos_bias(model_dir: Path) -> dict[str, float]:
    """logit_bias that keeps a random-weight model from ending early: every decode
    measurement then produces exactly max_tokens."""
    return {str(i): -100.0 for i in eos_ids(model_dir)}


# --------------------------------------------------------------------- stages


class Run:
    def __init__(self, out: Path, budget_s: float) -> None:
        self.out = out
        self.deadline = time.monotonic() + budget_s
        out.mkdir(parents=True, exist_ok=True)
        saved = out / "results.json"  # a prepare call's, which a measure call extends
        self.results: dict = json.loads(saved.read_text()) if saved.exists() else {}
        self.results.setdefault("started", time.strftime("%Y-%m-%d %H:%M:%S %Z"))

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def stage(self, name: str, function, *args, **kwargs):
        print(f"\n=== {name} ({self.left():.0f} s of the budget left)", flush=True)
        started = time.perf_counter()
        try:
            value = function(*args, **kwargs)
        except Exception as exc:
            self.results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
            value = None
        else:
            self.results[name] = value
        print(f"=== {name}: {time.perf_counter() - started:.1f} s", flush=True)
        self.save()
        return value

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, default=str))


def environment() -> dict:
    import torch

    nvcc = shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None
    )
    nvcc_version = None
    if nvcc:
        text = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        nvcc_version = next((line for line in text.splitlines() if "release" in line), text.strip())
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "gpu_memory_gib": round(props.total_memory / GiB, 1),
        "capability": list(torch.cuda.get_device_capability(0)),
        "multiprocessors": props.multi_processor_count,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "nvcc": nvcc,
        "nvcc_version": nvcc_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "flash_attn": flash_attn_version(),
        "driver": _nvml_driver(),
    }


def flash_attn_version() -> str | None:
    try:
        import flash_attn
    except ImportError:
        return None
    return getattr(flash_attn, "__version__", "yes")


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:
        return None


def extension_loads() -> str | None:
    """None if exllamav2's extension imports with this torch, else why not."""
    code = (
        "import torch\n"
        "from cortex.services.neuron.engines.exllamav2_install import require_extension\n"
        "require_extension(torch)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return None if result.returncode == 0 else result.stderr.strip().splitlines()[-1]


def ensure_extension(out: Path, env_info: dict) -> dict:
    """The prebuilt wheel if it loads; else build one here (all cores) and install it."""
    import importlib.metadata

    problem = extension_loads()
    if problem is None:
        return {"prebuilt": importlib.metadata.version("exllamav2"), "seconds": 0}
    print(f"no usable prebuilt extension ({problem}); building one")
    wheels = out / "built"
    env = dict(os.environ)
    env["TORCH_CUDA_ARCH_LIST"] = "{}.{}".format(*env_info["capability"])
    env["MAX_JOBS"] = str(os.cpu_count() or 1)
    env["PYTHON"] = sys.executable
    started = time.perf_counter()
    result = subprocess.run(
        [str(HERE / "build_exllamav2.sh"), "", str(wheels)],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    (out / "build.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"extension build failed; tail of build.log:\n{result.stderr[-3000:]}")
    site = Path(tempfile.mkdtemp(prefix="exllamav2-"))
    wheel = next(wheels.glob("exllamav2-0.3.2+*.whl"))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site)]
    subprocess.run([*pip, str(wheel)], check=True)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(site), os.environ.get("PYTHONPATH")])
    )
    return {
        "built": wheel.name,
        "seconds": round(seconds, 1),
        "wheel_mib": round(wheel.stat().st_size / 2**20, 1),
        "MAX_JOBS": env["MAX_JOBS"],
        "TORCH_CUDA_ARCH_LIST": env["TORCH_CUDA_ARCH_LIST"],
    }


def generate_models(models: Path) -> dict:
    from cortex.services.neuron.demo import generate

    timings = {}
    for size in ("1b", "8b"):
        target = models / f"llama-{size}-fp16"
        if (target / "model.safetensors").exists():
            timings[target.name] = "exists"
            continue
        started = time.perf_counter()
        generate(target, size, device="cuda")
        timings[target.name] = round(time.perf_counter() - started, 1)
    return {"seconds": timings}


def quantise(models: Path, work: Path, size: str, timeout: float) -> dict:
    source, target = models / f"llama-{size}-fp16", models / f"llama-{size}-exl2-4.0bpw"
    if (target / "config.json").exists():
        return {"seconds": "exists", "bits": 4.0}
    if timeout < 30:
        raise RuntimeError(f"no time left to convert the {size} ({timeout:.0f} s)")
    command = [sys.executable, "-m", "exllamav2.conversion.convert_exl2", "-i", str(source)]
    command += ["-o", str(work / f"convert-{size}"), "-cf", str(target), "-b", "4.0", "-nr"]
    started = time.perf_counter()
    log = work / f"convert-{size}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        try:
            result = subprocess.run(
                command + CONVERT_CALIBRATION,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(target, ignore_errors=True)
            raise RuntimeError(f"conversion of the {size} ran past {timeout:.0f} s") from None
    if result.returncode != 0:
        raise RuntimeError(f"conversion failed; tail of {log.name}:\n{log.read_text()[-3000:]}")
    shutil.rmtree(work / f"convert-{size}", ignore_errors=True)
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "bits": 4.0,
        "size_gib": round(safetensors_bytes(target) / GiB, 2),
        "calibration": " ".join(CONVERT_CALIBRATION),
    }


def direct_decode(model_dir: Path, rounds: int = 3) -> dict:
    """exllamav2's dynamic generator driven directly, in a process of its own."""
    result = subprocess.run(
        [sys.executable, str(Path(__file__)), "direct", str(model_dir), str(rounds)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _direct_main(model_dir: str, rounds: int) -> None:
    import torch
    from exllamav2 import ExLlamaV2, ExLlamaV2Cache, ExLlamaV2Config, ExLlamaV2Tokenizer
    from exllamav2 import attn as exl_attn
    from exllamav2.generator import (
        ExLlamaV2DynamicGenerator,
        ExLlamaV2DynamicJob,
        ExLlamaV2Sampler,
    )

    config = ExLlamaV2Config(model_dir)
    config.arch_compat_overrides()
    config.max_seq_len = MAX_SEQ_LEN
    model = ExLlamaV2(config)
    cache = ExLlamaV2Cache(model, max_seq_len=MAX_SEQ_LEN, lazy=True)
    model.load_autosplit(cache)
    tokenizer = ExLlamaV2Tokenizer(config)
    paged = bool(getattr(exl_attn, "has_flash_attn_with_paged", False))
    generator = ExLlamaV2DynamicGenerator(
        model=model, cache=cache, tokenizer=tokenizer, max_batch_size=1, paged=paged
    )
    generator.warmup()
    settings = ExLlamaV2Sampler.Settings.greedy()
    rates, ttfts = [], []
    for _ in range(rounds):
        job = ExLlamaV2DynamicJob(
            input_ids=torch.tensor([prompt_ids()], dtype=torch.long),
            max_new_tokens=NEW_TOKENS,
            gen_settings=settings,
            stop_conditions=[],
        )
        generator.enqueue(job)
        final = None
        while generator.num_remaining_jobs():
            for result in generator.iterate():
                if result.get("eos"):
                    final = result
        rates.append((final["new_tokens"] - 1) / final["time_generate"])
        ttfts.append((final["time_enqueued"] + final["time_prefill"]) * 1000)
    print(
        json.dumps(
            {
                "decode_tokens_per_s": round(statistics.median(rates), 1),
                "ttft_ms": round(statistics.median(ttfts), 1),
                "rounds": rounds,
                "paged": paged,
            }
        )
    )


def _stream(base_url: str, body: dict, on_event=None) -> dict:
    """POST a streaming completion; the figures of its events. ``on_event(count)``
    returning True hangs up."""
    import httpx

    from cortex.common.sse import SSEDecoder

    decoder, chunks, first, last, usage = SSEDecoder(), 0, None, None, None
    started = time.perf_counter()
    with (
        httpx.Client(timeout=600) as client,
        client.stream("POST", base_url + "/v1/completions", json=body) as response,
    ):
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.read().decode()[:500]}")
        for chunk in response.iter_bytes():
            now = time.perf_counter()
            for event in decoder.feed(chunk):
                if event.data == "[DONE]":
                    continue
                payload = json.loads(event.data)
                if payload.get("usage"):
                    usage = payload["usage"]
                if any(c.get("text") for c in payload.get("choices", [])):
                    chunks += 1
                    first = first or now
                    last = now
                    if on_event is not None and on_event(chunks):
                        return {"chunks": chunks, "hung_up": True}
    completion = usage["completion_tokens"] if usage else chunks
    return {
        "ttft_ms": round(((first or started) - started) * 1000, 1),
        "completion_tokens": completion,
        "prompt_tokens": usage["prompt_tokens"] if usage else None,
        # Chunks may merge tokens: the rate uses the token count the server reports.
        "decode_tokens_per_s": round(decode_rate(completion, first or 0, last or 0), 1),
    }


def decode_body(model: str, model_dir: Path, prompt: list[int], max_tokens: int) -> dict:
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "logit_bias": no_eos_bias(model_dir),
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def stream_once(base_url: str, model: str, model_dir: Path) -> dict:
    return _stream(base_url, decode_body(model, model_dir, prompt_ids(), NEW_TOKENS))


def stream_rate(base_url: str, model: str, model_dir: Path, rounds: int = 3) -> dict:
    stream_once(base_url, model, model_dir)  # warm-up
    runs = [stream_once(base_url, model, model_dir) for _ in range(rounds)]
    return {
        "decode_tokens_per_s": round(statistics.median(r["decode_tokens_per_s"] for r in runs), 1),
        "ttft_ms": round(statistics.median(r["ttft_ms"] for r in runs), 1),
        "completion_tokens": runs[-1]["completion_tokens"],
    }


def prefill_rate(base_url: str, model: str, model_dir: Path) -> dict:
    """TTFT of a long prompt and one new token: prompt tokens per second of prefill."""
    body = decode_body(model, model_dir, prompt_ids(PREFILL_TOKENS), 1)
    _stream(base_url, body)  # warm-up
    runs = [_stream(base_url, body) for _ in range(2)]
    ttft = statistics.median(r["ttft_ms"] for r in runs)
    return {
        "prompt_tokens": runs[-1]["prompt_tokens"],
        "ttft_ms": round(ttft, 1),
        "prefill_tokens_per_s": round(PREFILL_TOKENS / (ttft / 1000), 1) if ttft else None,
    }


def concurrent_rate(base_url: str, model: str, model_dir: Path) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT) as pool:
        runs = list(pool.map(lambda _: stream_once(base_url, model, model_dir), range(CONCURRENT)))
    seconds = time.perf_counter() - started
    tokens = sum(r["completion_tokens"] for r in runs)
    return {
        "requests": CONCURRENT,
        "seconds": round(seconds, 1),
        "aggregate_tokens_per_s": round(tokens / seconds, 1),
        "per_stream_tokens_per_s": round(
            statistics.median(r["decode_tokens_per_s"] for r in runs), 1
        ),
    }


def hang_up(neuron, model: str, model_dir: Path) -> dict:
    """A client leaves after 16 tokens of a stream as long as the context allows: the
    neuron must stop the job (in_flight back to 0, no more tokens made) within seconds."""
    room = neuron.loaded(model)["max_seq_len"] - PROMPT_TOKENS - 8
    body = decode_body(model, model_dir, prompt_ids(), room)
    _stream(neuron.url, body, on_event=lambda count: count >= 16)
    left_at = time.perf_counter()
    info = neuron.loaded(model)
    while info.get("in_flight", 0) and time.perf_counter() - left_at < 30:
        time.sleep(0.05)
        info = neuron.loaded(model)
    stopped_s = time.perf_counter() - left_at
    tokens = info.get("completion_tokens_total", 0)
    time.sleep(2.0)
    later = neuron.loaded(model).get("completion_tokens_total", 0)
    in_flight = info.get("in_flight", 0)
    return {
        "stopped_after_s": round(stopped_s, 2),
        "in_flight_after": in_flight,
        "tokens_generated_after_stop": later - tokens,
        "ok": in_flight == 0 and later == tokens,
    }


def tool_call(base_url: str, model: str) -> dict:
    """A forced tool call (tool_choice required): grammar-constrained through the
    exllamav2 filter; the arguments must be JSON for the schema."""
    import httpx

    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "maxLength": 24},
                        "days": {"type": "integer", "minimum": 1, "maximum": 14},
                    },
                    "required": ["city", "days"],
                },
            },
        }
    ]
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Weather in Paris for 3 days?"}],
        "tools": tools,
        "tool_choice": "required",
        "max_tokens": 200,
        "temperature": 0,
    }
    started = time.perf_counter()
    response = httpx.post(base_url + "/v1/chat/completions", json=body, timeout=120)
    seconds = time.perf_counter() - started
    response.raise_for_status()
    choice = response.json()["choices"][0]
    calls = choice["message"].get("tool_calls") or []
    arguments = json.loads(calls[0]["function"]["arguments"]) if calls else None
    return {
        "finish_reason": choice["finish_reason"],
        "name": calls[0]["function"]["name"] if calls else None,
        "arguments": arguments,
        "seconds": round(seconds, 2),
        "ok": choice["finish_reason"] == "tool_calls"
        and isinstance(arguments, dict)
        and {"city", "days"} <= set(arguments),
    }


def logit_bias_request(base_url: str, model: str, model_dir: Path) -> dict:
    """+100 on one token: greedy output is that token every time, through exllamav2's
    float32 bias over the padded vocabulary."""
    import httpx
    from tokenizers import Tokenizer

    token, count = 500, 8
    body = {
        "model": model,
        "prompt": prompt_ids(),
        "max_tokens": count,
        "temperature": 0,
        "logit_bias": {str(token): 100.0},
    }
    response = httpx.post(base_url + "/v1/completions", json=body, timeout=120)
    response.raise_for_status()
    text = response.json()["choices"][0]["text"]
    expected = Tokenizer.from_file(str(model_dir / "tokenizer.json")).decode([token] * count)
    return {
        "completion_tokens": response.json()["usage"]["completion_tokens"],
        "text": text,
        "ok": text == expected,
    }


def nvml_used() -> tuple[int, dict[int, int]]:
    """Device 0's used memory and the memory of each process on it (bytes)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return 0, {}
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    used = pynvml.nvmlDeviceGetMemoryInfo(handle).used
    processes = {
        p.pid: p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    }
    return used, processes


def serve_and_measure(
    models: Path, work: Path, served: list[str], bandwidth: float | None, backend: str
) -> dict:
    from support.gateway import start_gateway
    from support.neuron import start_neuron

    settings = {
        "memory_budget": "95%",
        "cpu_threads": 4,
        "max_concurrency": CONCURRENT,
        "max_queue": 4 * CONCURRENT,
    }
    results = {}
    with (
        start_neuron(models, work / "neuron", settings=settings) as neuron,
        start_gateway(work / "gateway", neurons={"gpu": neuron.url}) as gateway,
    ):
        gateway.wait_neurons_up()
        for index, model in enumerate(served):
            results[model] = figures = {}
            if backend == "exllamav2":
                try:
                    figures["direct"] = direct_decode(models / model)
                except Exception as exc:
                    figures["direct"] = {"error": str(exc)[-500:]}
            try:
                measure_served(neuron, gateway, models / model, figures, bandwidth, backend)
                if index == 0:
                    model_dir = models / model
                    figures["hang_up"] = _attempt(hang_up, neuron, model, model_dir)
                    figures["tool_call"] = _attempt(tool_call, gateway.url, model)
                    figures["logit_bias"] = _attempt(
                        logit_bias_request, neuron.url, model, model_dir
                    )
            except Exception as exc:
                figures["error"] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            finally:
                if (neuron.loaded(model) or {}).get("state") == "loaded":
                    figures["unload"] = _attempt(_unload, neuron, model, figures)
    return results


def _attempt(check, *args) -> dict:
    try:
        return check(*args)
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}", "ok": False}


def measure_served(neuron, gateway, model_dir: Path, figures: dict, bandwidth, backend) -> None:
    """Load through the neuron, measure VRAM and decode three ways, prefill and 8
    concurrent streams, and compare the rates with the bandwidth bound."""
    model = model_dir.name
    before, _ = nvml_used()
    figures["vram_nvml_before_gib"] = round(before / GiB, 2)
    started = time.perf_counter()
    figures["progress_events"] = _load_with_progress(neuron.url, model, {"backend": backend})
    figures["load_seconds"] = round(time.perf_counter() - started, 1)
    info = neuron.loaded(model)
    after, processes = nvml_used()
    figures["vram_neuron_gib"] = round(info["memory_bytes"] / GiB, 2)
    figures["vram_nvml_process_gib"] = round(processes.get(info["pid"], 0) / GiB, 2)
    figures["vram_nvml_device_delta_gib"] = round((after - before) / GiB, 2)
    figures["max_concurrency"] = info.get("max_concurrency")
    figures["pid"], figures["_vram_after"], figures["_vram_before"] = info["pid"], after, before
    figures["neuron_http"] = stream_rate(neuron.url, model, model_dir)
    figures["gateway_http"] = stream_rate(gateway.url, model, model_dir)
    figures["prefill"] = _attempt(prefill_rate, neuron.url, model, model_dir)
    figures["concurrent"] = _attempt(concurrent_rate, neuron.url, model, model_dir)
    per_token = bytes_per_decoded_token(model_dir, PROMPT_TOKENS + NEW_TOKENS // 2)
    figures["bytes_per_token_gib"] = round(per_token / GiB, 3)
    if bandwidth:
        bound = bandwidth / per_token
        figures["bandwidth_bound_tokens_per_s"] = round(bound, 1)
        for way in ("direct", "neuron_http", "gateway_http"):
            rate = (figures.get(way) or {}).get("decode_tokens_per_s")
            if rate:
                figures[way]["fraction_of_bound"] = round(rate / bound, 3)


def _unload(neuron, model: str, figures: dict) -> dict:
    neuron.unload(model)
    _wait_pid_gone(figures.pop("pid", 0))
    after, before = figures.pop("_vram_after", 0), figures.pop("_vram_before", 0)
    released, _ = nvml_used()
    figures["vram_nvml_after_unload_gib"] = round(released / GiB, 2)
    if after > before:
        figures["unload_returned_fraction"] = round((after - released) / (after - before), 3)
    return {"ok": True}


def _load_with_progress(url: str, model: str, options: dict) -> int:
    import httpx

    from cortex.common.sse import SSEDecoder

    body = {"model": model, "max_seq_len": MAX_SEQ_LEN, "max_concurrency": CONCURRENT, **options}
    decoder, progress = SSEDecoder(), 0
    with (
        httpx.Client(timeout=1800) as client,
        client.stream(
            "POST", url + "/models/load", json=body, headers={"accept": "text/event-stream"}
        ) as response,
    ):
        response.raise_for_status()
        for chunk in response.iter_bytes():
            for event in decoder.feed(chunk):
                if event.event == "progress":
                    progress += 1
                elif event.event == "error":
                    raise RuntimeError(f"load of {model} failed: {event.data}")
                elif event.event == "loaded":
                    return progress
    raise RuntimeError(f"load of {model} ended without a result")


def _wait_pid_gone(pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            time.sleep(1.0)  # let the driver reclaim the context
            return
        time.sleep(0.2)


def memory_bandwidth() -> dict:
    """A 4 GiB device-to-device copy, timed with CUDA events; bytes read + written."""
    import torch

    size = 4 * GiB
    source = torch.empty(size, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    repeats = 20
    start.record()
    for _ in range(repeats):
        target.copy_(source)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000
    rate = 2 * size * repeats / seconds
    del source, target
    torch.cuda.empty_cache()
    return {"bytes_per_s": rate, "tb_per_s": round(rate / 1e12, 2)}


# --------------------------------------------------------------------- the report


def _rows(served: dict) -> list[tuple[str, ...]]:
    rows = [
        (
            "model",
            "load s",
            "VRAM neuron / NVML process GiB",
            "after unload GiB (returned)",
            "direct tok/s",
            "neuron tok/s",
            "gateway tok/s",
            "neuron/direct",
            "gateway/neuron",
            "TTFT ms neuron / gateway",
            "prefill tok/s",
            "bytes/token GiB",
            "bound tok/s",
            "fraction (direct / neuron)",
            "8 streams tok/s (max_concurrency)",
        )
    ]
    for model, f in served.items():
        direct = (f.get("direct") or {}).get("decode_tokens_per_s")
        neuron = (f.get("neuron_http") or {}).get("decode_tokens_per_s")
        gateway = (f.get("gateway_http") or {}).get("decode_tokens_per_s")
        concurrent = f.get("concurrent") or {}
        rows.append(
            (
                model,
                str(f.get("load_seconds")),
                f"{f.get('vram_neuron_gib')} / {f.get('vram_nvml_process_gib')}",
                f"{f.get('vram_nvml_after_unload_gib')} ({f.get('unload_returned_fraction')})",
                str(direct),
                str(neuron),
                str(gateway),
                ratio(neuron, direct),
                ratio(gateway, neuron),
                "{} / {}".format(
                    (f.get("neuron_http") or {}).get("ttft_ms"),
                    (f.get("gateway_http") or {}).get("ttft_ms"),
                ),
                str((f.get("prefill") or {}).get("prefill_tokens_per_s")),
                str(f.get("bytes_per_token_gib")),
                str(f.get("bandwidth_bound_tokens_per_s")),
                "{} / {}".format(
                    (f.get("direct") or {}).get("fraction_of_bound"),
                    (f.get("neuron_http") or {}).get("fraction_of_bound"),
                ),
                "{} ({})".format(
                    concurrent.get("aggregate_tokens_per_s", concurrent.get("error")),
                    f.get("max_concurrency"),
                ),
            )
        )
    return rows


def report(results: dict) -> tuple[str, str]:
    """The plain report and the markdown block for BENCHMARKS.md."""
    env = results.get("environment") or {}
    if results.get("dry_run"):
        env = {"gpu": "none: a dry run on the CPU (demo-long, transformers backend)"}
    head = [
        f"exllamav2 check on {env.get('gpu')} ({env.get('gpu_memory_gib')} GiB), "
        f"driver {env.get('driver')}, torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), "
        f"{env.get('nvcc_version')}, python {env.get('python')}, {env.get('cpus')} CPUs, "
        f"flash-attn {env.get('flash_attn')}, {results.get('started')}",
    ]
    build = results.get("extension") or {}
    head.append(
        "extension: "
        + (
            f"prebuilt wheel {build['prebuilt']}"
            if "prebuilt" in build
            else f"built here in {build.get('seconds', build.get('error'))} s"
        )
    )
    head.append(f"model generation (s): {(results.get('generate_models') or {}).get('seconds')}")
    for size in ("1b", "8b"):
        quant = results.get(f"quantise_{size}") or {}
        head.append(
            f"EXL2 4.0 bpw conversion of the {size}: "
            f"{quant.get('seconds', quant.get('error'))} s, {quant.get('size_gib')} GiB"
        )
    bandwidth = results.get("memory_bandwidth") or {}
    head.append(f"device memory bandwidth (copy, read + write): {bandwidth.get('tb_per_s')} TB/s")
    served = results.get("serve_and_measure") or {}
    if "error" in served:
        head.append(f"serving failed: {served['error']}")
        served = {}
    checks = []
    for model, f in served.items():
        if "error" in f:
            checks.append(f"{model}: failed: {f['error']}")
        for name in ("hang_up", "tool_call", "logit_bias"):
            if name in f:
                checks.append(f"{model} {name}: {json.dumps(f[name])}")
    batching = (
        "batching: flash-attn is importable: paged attention, continuous batching"
        if env.get("flash_attn")
        else "batching: flash-attn is not importable, so exllamav2 runs unpaged and each model "
        "serves one sequence at a time (the 8 streams queue); flash-attn >= 2.5.7 has no "
        "wheel on PyPI: build it"
    )
    rows = _rows(served)
    plain = "\n".join([*head, format_table(rows) if len(rows) > 1 else "", *checks, batching])
    markdown = "\n".join(
        [
            "```",
            *head,
            "```",
            "",
            markdown_table(rows) if len(rows) > 1 else "(no model served)",
            "",
            *(f"- {line}" for line in [*checks, batching]),
        ]
    )
    return plain, markdown


# --------------------------------------------------------------------- main


def dry_run(out: Path) -> dict:
    """Stage 4 on this CPU host: demo-long (demo-tiny's shape with room for the 4096-token
    loads), transformers backend, no NVML or bandwidth."""
    from cortex.services.neuron.demo import generate

    models = out / "models"
    generate(models / "demo-long", "long")
    return serve_and_measure(models, out / "work", ["demo-long"], None, "transformers")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["direct"]:
        _direct_main(argv[1], int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "run" / "gpu")
    parser.add_argument("--budget-s", type=float, default=540, help="for the whole run")
    parser.add_argument(
        "--only",
        choices=("all", "prepare", "measure"),
        default="all",
        help="prepare: stages 1-2 (models kept under --out for a measure call after it)",
    )
    parser.add_argument("--dry-run", action="store_true", help="stage 4 on CPU, demo-long")
    args = parser.parse_args(argv)
    run = Run(args.out, args.budget_s)
    if args.dry_run:
        run.results["dry_run"] = True
        run.stage("serve_and_measure", dry_run, args.out)
    else:
        gpu_stages(run, args.out, args.only)
    plain, markdown = report(run.results)
    (args.out / "report.txt").write_text(plain + "\n")
    (args.out / "benchmarks.md").write_text(markdown + "\n")
    print("\n" + plain)
    print("\n----- BENCHMARKS.md block -----\n" + markdown + "\n----- end -----")
    return 0


def served_model(models: Path, size: str) -> str:
    """The EXL2 4.0 bpw model of this size, or its fp16 one if the conversion failed."""
    quantised = f"llama-{size}-exl2-4.0bpw"
    return quantised if (models / quantised / "config.json").exists() else f"llama-{size}-fp16"


def gpu_stages(run: Run, out: Path, only: str) -> None:
    models, work = out / "models", out / "work"
    env_info = run.stage("environment", environment)
    if env_info is None:
        return
    run.stage("extension", ensure_extension, out, env_info)
    if only in ("all", "prepare"):
        # Measuring needs SERVE_RESERVE_S of the budget unless this call only prepares.
        reserve = SERVE_RESERVE_S if only == "all" else 0
        run.stage("generate_models", generate_models, models)
        run.stage("quantise_1b", quantise, models, work, "1b", run.left() - reserve)
        run.stage("quantise_8b", quantise, models, work, "8b", run.left() - reserve)
    if only == "prepare":
        return
    bandwidth = run.stage("memory_bandwidth", memory_bandwidth)
    served = [served_model(models, size) for size in ("1b", "8b")]
    run.stage(
        "serve_and_measure",
        serve_and_measure,
        models,
        work,
        served,
        (bandwidth or {}).get("bytes_per_s"),
        "exllamav2",
    )


if __name__ == "__main__":
    raise SystemExit(main())
