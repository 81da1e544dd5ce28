"""Servers under test, each a subprocess on a free 127.0.0.1 port with the same thread count.

- jinaserve: `python -m jinaserve serve` from this checkout's venv (`--threads`, `--max-batch-size`).
- Infinity (`infinity-emb` from PyPI) in its own venv, `benchmarks/.venvs/infinity`, created on demand
  (torch 2.13.0 CPU first so no CUDA build is pulled, then `infinity-emb[server,torch,optimum]`), with
  `--engine torch` (`--dtype float32 | bfloat16`) or `--engine optimum` (ONNX Runtime) on an ONNX copy of the
  model that optimum exports in that venv (`prepare_onnx`: `model.onnx`, or its dynamic-int8
  `model_quantized.onnx`, the file Infinity's optimum engine prefers on CPU).
- llama.cpp: jinaserve's `--runtime llamacpp` (llama-cpp-python) on a GGUF of the same model, converted
  here with llama.cpp's converter (or `--gguf PATH`); skipped with the reason when it cannot run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / "benchmarks" / ".venvs"
INFINITY_VENV = VENVS / "infinity"
INFINITY_SPEC = os.environ.get("JINASERVE_BENCH_INFINITY_SPEC", "infinity-emb[server,torch,optimum]==0.0.78")
TORCH_SPEC = os.environ.get("TORCH_SPEC", "torch==2.13.0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def thread_env(threads: int) -> dict[str, str]:
    """Environment that pins every math library to `threads` threads, and keeps engines offline.

    Every engine also gets `OMP_WAIT_POLICY=PASSIVE` (jinaserve's own serving default, see
    `jinaserve.runtimes.threads`), so the baselines are not slowed by OpenMP spin-waiting when other
    threads or processes share the cores: ratios then compare the engines, not the environment."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"})
    return env


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process, in MiB (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process (all its threads), in seconds (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Server:
    name: str
    cmd: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    log_path: Path
    startup_timeout_s: float = 240.0
    proc: subprocess.Popen | None = None
    started_in_s: float | None = None
    cwd: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=str(self.cwd or ROOT), start_new_session=True)
        log.close()
        deadline = time.time() + self.startup_timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start-up; "
                                   f"log tail:\n{self.log_tail()}")
            try:
                r = httpx.get(self.url + self.ready_path, timeout=2)
                if r.status_code == 200:
                    self.started_in_s = time.perf_counter() - t0
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {self.startup_timeout_s:.0f}s; log tail:\n"
                           f"{self.log_tail()}")

    def peak_rss_mib(self) -> float | None:
        return peak_rss_mib(self.proc.pid) if self.proc and self.proc.poll() is None else None

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.proc.pid) if self.proc and self.proc.poll() is None else None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def jinaserve_server(name: str, models: list[str], *, threads: int, logs: Path,
                     extra_args: list[str] | None = None, device: str = "cpu") -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "jinaserve", "serve", "--models", ",".join(models), "--host", "127.0.0.1",
           "--port", str(port), "--threads", str(threads), "--device", device, "--offline",
           *(extra_args or [])]
    return Server(name, cmd, thread_env(threads), port, "/readyz", logs / f"{name}.log")


# --------------------------------------------------------------------------- Infinity
def infinity_python() -> Path:
    return INFINITY_VENV / "bin" / "python"


def ensure_infinity(log: Path) -> Path:
    """Create benchmarks/.venvs/infinity if needed; returns the `infinity_emb` executable."""
    exe = INFINITY_VENV / "bin" / "infinity_emb"
    marker = INFINITY_VENV / ".installed"
    if exe.is_file() and marker.is_file() and marker.read_text().strip() == INFINITY_SPEC:
        return exe
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[bench] creating {INFINITY_VENV} ({TORCH_SPEC} CPU, then {INFINITY_SPEC}); log: {log}", flush=True)
    with log.open("ab") as out:
        def step(cmd: list[str]) -> None:
            out.write(("$ " + " ".join(cmd) + "\n").encode())
            out.flush()
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
            if rc != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` failed ({rc}); see {log}")

        if not infinity_python().is_file():
            step([sys.executable, "-m", "venv", str(INFINITY_VENV)])
        pip = [str(infinity_python()), "-m", "pip", "install", "-q"]
        # torch first, from the same CPU wheel this project uses, so infinity's deps never pull CUDA.
        step([*pip, TORCH_SPEC])
        step([*pip, INFINITY_SPEC, TORCH_SPEC])
    marker.write_text(INFINITY_SPEC)
    return exe


def infinity_server(name: str, models: list[tuple[Path, str]], *, threads: int, logs: Path, engine: str = "torch",
                    dtype: str = "float32", batch_size: int = 32) -> Server:
    """Infinity v2 serving `models` ([(folder, served name)]) with one engine and dtype for all of them.

    The optimum engine is started inside the ONNX folder with `--model-id .`: Infinity 0.0.78 names the ONNX file
    of a local folder by its path as globbed from the model id, and optimum only matches a name relative to the
    folder (an absolute model path fails with "Could not find any ONNX files with target file name ...")."""
    exe = ensure_infinity(logs / "infinity-install.log")
    cwd = None
    if engine == "optimum":
        if len(models) != 1:
            raise ValueError("the optimum engine is benchmarked on one model per server")
        cwd, models = models[0][0], [(Path("."), models[0][1])]
    port = free_port()
    cmd = [str(exe), "v2"]
    for folder, served in models:
        cmd += ["--model-id", str(folder), "--served-model-name", served, "--engine", engine, "--dtype", dtype,
                "--batch-size", str(batch_size), "--device", "cpu"]
        if engine == "optimum":
            # Infinity's optimum embedder mean-pools only when told; its default ("auto") takes the CLS token,
            # which is not all-MiniLM-L6-v2's pooling (its vectors would not be the model's).
            cmd += ["--pooling-method", "mean"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-vector-disk-cache"]
    env = thread_env(threads)
    if cwd is not None:
        # Infinity caches its optimised graph under the HF cache by model id ("." for both ONNX folders): one cache
        # per server, so the int8 server never picks up the fp32 server's optimised graph.
        env["HF_HUB_CACHE"] = str(cwd.parent / f".hf-cache-{name}")
    return Server(name, cmd, env, port, "/health", logs / f"{name}.log", startup_timeout_s=600.0, cwd=cwd)


_ONNX_SCRIPT = """
import sys, shutil
from pathlib import Path
from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
src, fp32, int8 = (Path(a) for a in sys.argv[1:4])
model = ORTModelForFeatureExtraction.from_pretrained(str(src), export=True)
model.save_pretrained(str(fp32))
if str(int8) != "-":
    q = ORTQuantizer.from_pretrained(str(fp32), file_name="model.onnx")
    q.quantize(save_dir=str(int8), quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False,
               per_channel=True))
"""


def prepare_onnx(model_dir: Path, work: Path, log: Path, int8: bool = True) -> tuple[Path, Path | None]:
    """ONNX copies of `model_dir` for Infinity's optimum engine, exported by optimum in Infinity's venv:
    (folder with `model.onnx` (fp32), folder with only `model_quantized.onnx` (dynamic int8, per-channel,
    optimum's AVX512-VNNI preset) or None). Each folder also holds the tokenizer and config files."""
    fp32, int8_dir = work / "onnx-fp32", work / "onnx-int8"
    if not (fp32 / "model.onnx").is_file():
        ensure_infinity(log)
        with log.open("ab") as out:
            rc = subprocess.call([str(infinity_python()), "-c", _ONNX_SCRIPT, str(model_dir), str(fp32),
                                  str(int8_dir) if int8 else "-"], stdout=out, stderr=subprocess.STDOUT,
                                 env=thread_env(len(os.sched_getaffinity(0))))
        if rc != 0 or not (fp32 / "model.onnx").is_file():
            raise RuntimeError(f"optimum's ONNX export of {model_dir} failed ({rc}); see {log}")
    for folder in (fp32, int8_dir):
        if not folder.is_dir():
            continue
        for item in model_dir.iterdir():  # tokenizer, config, pooling: the ST layout Infinity reads
            if item.is_file() and item.suffix not in {".safetensors", ".bin"} and not (folder / item.name).exists():
                shutil.copy(item, folder / item.name)
            elif item.is_dir() and not (folder / item.name).exists():
                shutil.copytree(item, folder / item.name)
    if int8_dir.is_dir():
        for f in int8_dir.glob("*.onnx"):
            if f.name != "model_quantized.onnx":
                f.unlink()
    return fp32, (int8_dir if (int8_dir / "model_quantized.onnx").is_file() else None)


# --------------------------------------------------------------------------- llama.cpp
def llamacpp_available() -> str | None:
    """None when jinaserve's llama.cpp runtime can run here, else why not."""
    try:
        if importlib.util.find_spec("jinaserve.runtimes.llamacpp_runtime") is None:
            return "jinaserve.runtimes.llamacpp_runtime does not exist"
        if importlib.util.find_spec("llama_cpp") is None:
            return "llama-cpp-python is not installed (pip install 'jinaserve[gguf]')"
    except (ImportError, ValueError) as exc:
        return str(exc)
    return None


def prepare_gguf(model_dir: Path, work: Path, outtype: str, log: Path, gguf: str | None = None) -> Path:
    """A folder holding a GGUF of `model_dir` plus its sentence-transformers files (tokenizer, pooling,
    normalisation), for `jinaserve serve --runtime llamacpp --models NAME=FOLDER`.

    `gguf` (a ready file, `--gguf` / JINASERVE_BENCH_GGUF) is used as is; otherwise the checkpoint is
    converted with llama.cpp's own converter (`python -m jinaserve.runtimes.gguf_convert`)."""
    folder = work / "minilm-gguf"
    folder.mkdir(parents=True, exist_ok=True)
    for item in model_dir.iterdir():
        if item.suffix in {".safetensors", ".bin", ".onnx"} or item.name in {"onnx", "openvino"}:
            continue
        if item.is_dir():
            shutil.copytree(item, folder / item.name, dirs_exist_ok=True)
        else:
            shutil.copy(item, folder / item.name)
    target = folder / f"model-{outtype.upper()}.gguf"
    if gguf:
        shutil.copy(gguf, target)
        return folder
    with log.open("ab") as out:
        rc = subprocess.call([sys.executable, "-m", "jinaserve.runtimes.gguf_convert", str(model_dir), str(target),
                              "--outtype", outtype], stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT))
    if rc != 0 or not target.is_file():
        raise RuntimeError(f"GGUF conversion of {model_dir} failed ({rc}); see {log}")
    return folder
