"""exllamav2 on a real GPU, end to end, in one run (issue 6). Start it with run_exllamav2.sh.

1. Build the exllamav2 0.3.2 extension against this host's torch, for this GPU's
   architecture only, and time it.
2. Generate Llama-architecture models with seeded random weights at real shapes
   (Llama 3.2 1B and Llama 3 8B, fp16) with the demo tokenizer.
3. Quantise the 1B model to EXL2 at 4.0 bits per weight with exllamav2's converter and
   its bundled calibration data, and time it.
4. Through cortex's own exllamav2 backend in a real neuron: load each model (EXL2 1B,
   fp16 8B) with progress; load seconds; VRAM as the neuron reports it against NVML;
   decode tok/s at batch 1 (128-token prompt, 512 new tokens) three ways: exllamav2's
   dynamic generator driven directly, the neuron's HTTP stream, and the same through the
   gateway; TTFT; unload returns the VRAM (NVML before and after).
5. The hardware limit: device memory bandwidth (a large device-to-device copy), bytes
   read per decoded token, the bandwidth bound in tok/s and the fraction reached.
6. With flash-attn importable, decode at 8 concurrent requests; otherwise says why
   batching is limited to one sequence.

Each stage's figures go into results.json under --out; the table at the end is the
report. Stages that fail are reported and the run goes on where it can.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import site
import statistics
import subprocess
import sys
import sysconfig
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))  # support.neuron / support.gateway launchers

PROMPT_TOKENS = 128
NEW_TOKENS = 512
CONCURRENT = 8
GiB = 1024**3


# --------------------------------------------------------------------- pure helpers


def cuda_build_env(
    environ: dict[str, str],
    capability: tuple[int, int],
    site_dirs: list[str],
    nvcc: str | None,
    cpu_count: int,
    extensions_dir: str,
) -> dict[str, str]:
    """The environment for exllamav2's JIT build: this GPU's arch only, explicit
    CUDA_HOME (a wrapper nvcc on PATH misleads torch), the cuBLAS/cuSPARSE/cuSOLVER/
    cuRAND headers that torch's pip packages ship (CPATH), and a fixed, fresh
    TORCH_EXTENSIONS_DIR."""
    env = dict(environ)
    env["TORCH_CUDA_ARCH_LIST"] = f"{capability[0]}.{capability[1]}"
    env.setdefault("MAX_JOBS", str(max(1, cpu_count)))
    env["TORCH_EXTENSIONS_DIR"] = extensions_dir
    if "CUDA_HOME" not in env:
        if Path("/usr/local/cuda/bin/nvcc").exists():
            env["CUDA_HOME"] = "/usr/local/cuda"
        elif nvcc:
            env["CUDA_HOME"] = str(Path(nvcc).resolve().parent.parent)
    headers = nvidia_include_dirs(site_dirs)
    if headers:
        env["CPATH"] = os.pathsep.join([*headers, *filter(None, [environ.get("CPATH")])])
    return env


def nvidia_include_dirs(site_dirs: list[str]) -> list[str]:
    found: list[str] = []
    for base in site_dirs:
        for pattern in ("nvidia/*/include", "nvidia/*/*/include"):
            found += sorted(glob.glob(os.path.join(base, pattern)))
    return list(dict.fromkeys(found))


def cuda_major(version: str | None) -> int | None:
    if not version:
        return None
    head = version.split(".")[0]
    return int(head) if head.isdigit() else None


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


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------- stages


class Run:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        out.mkdir(parents=True, exist_ok=True)

    def stage(self, name: str, function, *args, **kwargs):
        print(f"\n=== {name}", flush=True)
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
    try:
        import flash_attn

        flash = getattr(flash_attn, "__version__", "yes")
    except ImportError:
        flash = None
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
        "flash_attn": flash,
        "driver": _nvml_driver(),
    }


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:
        return None


def build_extension(out: Path, env_info: dict) -> dict:
    import torch

    extensions = out / "torch_extensions"
    shutil.rmtree(extensions, ignore_errors=True)  # a fresh build, and no stale lock
    env = cuda_build_env(
        dict(os.environ),
        tuple(env_info["capability"]),
        [*site.getsitepackages(), sysconfig.get_paths()["purelib"], *sys.path],
        env_info["nvcc"],
        os.cpu_count() or 1,
        str(extensions),
    )
    if cuda_major(env_info["torch_cuda"]) != cuda_major(
        (env_info["nvcc_version"] or "").split("release ")[-1]
    ):
        print(
            f"warning: nvcc ({env_info['nvcc_version']}) and torch ({torch.version.cuda}) "
            "differ in CUDA major version: the extension would load two CUDA runtimes"
        )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", "import exllamav2; from exllamav2.ext import exllamav2_ext"],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    (out / "build.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"extension build failed; tail of build.log:\n{result.stderr[-3000:]}")
    # Later stages (and the neuron's workers) reuse this build.
    os.environ.update(
        {
            k: env[k]
            for k in ("TORCH_EXTENSIONS_DIR", "TORCH_CUDA_ARCH_LIST", "CPATH", "CUDA_HOME")
            if k in env
        }
    )
    return {
        "seconds": round(seconds, 1),
        "TORCH_CUDA_ARCH_LIST": env["TORCH_CUDA_ARCH_LIST"],
        "CUDA_HOME": env.get("CUDA_HOME"),
        "MAX_JOBS": env["MAX_JOBS"],
        "header_dirs": env.get("CPATH", "").split(os.pathsep),
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


def quantise(models: Path, work: Path) -> dict:
    source, target = models / "llama-1b-fp16", models / "llama-1b-exl2-4.0bpw"
    if (target / "config.json").exists():
        return {"seconds": "exists", "bits": 4.0}
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exllamav2.conversion.convert_exl2",
            "-i",
            str(source),
            "-o",
            str(work / "convert"),
            "-cf",
            str(target),
            "-b",
            "4.0",
            "-nr",
        ],
        capture_output=True,
        text=True,
    )
    (work / "convert.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"conversion failed; tail of convert.log:\n{result.stderr[-3000:]}")
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "bits": 4.0,
        "size_gib": round(safetensors_bytes(target) / GiB, 2),
    }


def prompt_ids(count: int = PROMPT_TOKENS) -> list[int]:
    """A fixed prompt of exactly ``count`` ordinary tokens of the demo tokenizer."""
    return [300 + (i * 7) % 400 for i in range(count)]


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
    config.max_seq_len = 2048
    model = ExLlamaV2(config)
    cache = ExLlamaV2Cache(model, max_seq_len=2048, lazy=True)
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


def stream_once(base_url: str, model: str, headers: dict | None = None) -> dict:
    import httpx

    body = {
        "model": model,
        "prompt": prompt_ids(),
        "max_tokens": NEW_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    from cortex.common.sse import SSEDecoder

    decoder, chunks, first, last, usage = SSEDecoder(), 0, None, None, None
    started = time.perf_counter()
    with (
        httpx.Client(timeout=600) as client,
        client.stream(
            "POST", base_url + "/v1/completions", json=body, headers=headers or {}
        ) as response,
    ):
        response.raise_for_status()
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
    completion = usage["completion_tokens"] if usage else chunks
    return {
        "ttft_ms": round(((first or started) - started) * 1000, 1),
        "completion_tokens": completion,
        # Chunks may merge tokens: the rate uses the token count the server reports.
        "decode_tokens_per_s": round(decode_rate(completion, first or 0, last or 0), 1),
    }


def stream_rate(base_url: str, model: str, rounds: int = 3) -> dict:
    stream_once(base_url, model)  # warm-up
    runs = [stream_once(base_url, model) for _ in range(rounds)]
    return {
        "decode_tokens_per_s": round(statistics.median(r["decode_tokens_per_s"] for r in runs), 1),
        "ttft_ms": round(statistics.median(r["ttft_ms"] for r in runs), 1),
        "completion_tokens": runs[-1]["completion_tokens"],
    }


def concurrent_rate(base_url: str, model: str) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT) as pool:
        runs = list(pool.map(lambda _: stream_once(base_url, model), range(CONCURRENT)))
    seconds = time.perf_counter() - started
    tokens = sum(r["completion_tokens"] for r in runs)
    return {"requests": CONCURRENT, "aggregate_tokens_per_s": round(tokens / seconds, 1)}


def nvml_used() -> tuple[int, dict[int, int]]:
    """Device 0's used memory and the memory of each process on it (bytes)."""
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    used = pynvml.nvmlDeviceGetMemoryInfo(handle).used
    processes = {
        p.pid: p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    }
    return used, processes


def serve_and_measure(models: Path, work: Path, env_info: dict, bandwidth: float | None) -> dict:
    from support.gateway import start_gateway
    from support.neuron import start_neuron

    settings = {"memory_budget": "95%", "cpu_threads": 4, "max_concurrency": CONCURRENT}
    results = {}
    with (
        start_neuron(models, work / "neuron", settings=settings) as neuron,
        start_gateway(work / "gateway", neurons={"gpu": neuron.url}) as gateway,
    ):
        gateway.wait_neurons_up()
        for model in ("llama-1b-exl2-4.0bpw", "llama-8b-fp16"):
            results[model] = figures = {}
            try:
                figures["direct"] = direct_decode(models / model)
            except Exception as exc:
                figures["direct"] = {"error": str(exc)[-500:]}
            measure_served(neuron, gateway, models / model, figures, env_info, bandwidth)
    return results


def measure_served(neuron, gateway, model_dir: Path, figures: dict, env_info, bandwidth) -> None:
    """Load through the neuron, measure VRAM and decode both ways, unload, and compare
    the rates with the bandwidth bound."""
    model = model_dir.name
    before, _ = nvml_used()
    started = time.perf_counter()
    figures["progress_events"] = _load_with_progress(neuron.url, model, {"backend": "exllamav2"})
    figures["load_seconds"] = round(time.perf_counter() - started, 1)
    info = neuron.loaded(model)
    after, processes = nvml_used()
    figures["vram_neuron_gib"] = round(info["memory_bytes"] / GiB, 2)
    figures["vram_nvml_process_gib"] = round(processes.get(info["pid"], 0) / GiB, 2)
    figures["vram_nvml_device_delta_gib"] = round((after - before) / GiB, 2)
    figures["max_concurrency"] = info.get("max_concurrency")
    figures["neuron_http"] = stream_rate(neuron.url, model)
    figures["gateway_http"] = stream_rate(gateway.url, model)
    if env_info["flash_attn"]:
        figures["concurrent"] = concurrent_rate(neuron.url, model)
    neuron.unload(model)
    _wait_pid_gone(info["pid"])
    released, _ = nvml_used()
    figures["unload_returned_fraction"] = round((after - released) / max(1, after - before), 3)
    per_token = bytes_per_decoded_token(model_dir, PROMPT_TOKENS + NEW_TOKENS // 2)
    figures["bytes_per_token_gib"] = round(per_token / GiB, 3)
    if bandwidth:
        bound = bandwidth / per_token
        figures["bandwidth_bound_tokens_per_s"] = round(bound, 1)
        for way in ("direct", "neuron_http", "gateway_http"):
            rate = figures[way].get("decode_tokens_per_s")
            if rate:
                figures[way]["fraction_of_bound"] = round(rate / bound, 3)


def _load_with_progress(url: str, model: str, options: dict) -> int:
    import httpx

    from cortex.common.sse import SSEDecoder

    body = {"model": model, "max_seq_len": 2048, "max_concurrency": CONCURRENT, **options}
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
    while time.monotonic() < deadline:
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


def report(results: dict) -> str:
    env = results.get("environment") or {}
    lines = [
        f"exllamav2 check on {env.get('gpu')} ({env.get('gpu_memory_gib')} GiB), "
        f"driver {env.get('driver')}, torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), "
        f"python {env.get('python')}, {env.get('cpus')} CPUs, {results.get('started')}",
    ]
    build = results.get("build_extension") or {}
    lines.append(f"extension build: {build.get('seconds', build.get('error'))} s")
    lines.append(f"model generation: {(results.get('generate_models') or {}).get('seconds')}")
    quant = results.get("quantise") or {}
    lines.append(f"EXL2 4.0 bpw conversion of 1B: {quant.get('seconds', quant.get('error'))} s")
    bandwidth = results.get("memory_bandwidth") or {}
    lines.append(f"device memory bandwidth (copy): {bandwidth.get('tb_per_s')} TB/s")
    served = results.get("serve_and_measure") or {}
    if "error" in served:
        lines.append(f"serving failed: {served['error']}")
        served = {}
    rows = [
        (
            "model",
            "load s",
            "VRAM neuron/NVML GiB",
            "direct tok/s",
            "neuron tok/s",
            "gateway tok/s",
            "neuron/direct",
            "gateway/neuron",
            "TTFT ms (n/g)",
            "bytes/token GiB",
            "bound tok/s",
            "fraction",
            "unload returned",
        )
    ]
    for model, f in served.items():
        direct = f.get("direct", {}).get("decode_tokens_per_s") or 0
        neuron = f.get("neuron_http", {}).get("decode_tokens_per_s") or 0
        gateway = f.get("gateway_http", {}).get("decode_tokens_per_s") or 0
        rows.append(
            (
                model,
                str(f.get("load_seconds")),
                f"{f.get('vram_neuron_gib')}/{f.get('vram_nvml_process_gib')}",
                str(direct),
                str(neuron),
                str(gateway),
                f"{neuron / direct:.3f}" if direct else "-",
                f"{gateway / neuron:.3f}" if neuron else "-",
                "{}/{}".format(
                    f.get("neuron_http", {}).get("ttft_ms"),
                    f.get("gateway_http", {}).get("ttft_ms"),
                ),
                str(f.get("bytes_per_token_gib")),
                str(f.get("bandwidth_bound_tokens_per_s")),
                str(f.get("neuron_http", {}).get("fraction_of_bound")),
                str(f.get("unload_returned_fraction")),
            )
        )
    if len(rows) > 1:
        lines.append(format_table(rows))
    if env.get("flash_attn"):
        for model, f in served.items():
            lines.append(f"{model}: {f.get('concurrent')}")
    else:
        lines.append(
            "batching: flash-attn is not importable, so exllamav2 runs unpaged and each model "
            "serves one sequence at a time (flash-attn >= 2.5.7 has no wheel on PyPI; build it)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["direct"]:
        _direct_main(argv[1], int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "run" / "gpu")
    args = parser.parse_args(argv)
    run = Run(args.out)
    models, work = args.out / "models", args.out / "work"
    env_info = run.stage("environment", environment)
    if env_info is None:
        return 1
    run.stage("build_extension", build_extension, args.out, env_info)
    run.stage("generate_models", generate_models, models)
    run.stage("quantise", quantise, models, work)
    bandwidth = run.stage("memory_bandwidth", memory_bandwidth)
    run.stage(
        "serve_and_measure",
        serve_and_measure,
        models,
        work,
        env_info,
        (bandwidth or {}).get("bytes_per_s"),
    )
    text = report(run.results)
    (args.out / "report.txt").write_text(text + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
