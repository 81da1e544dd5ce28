"""`jinaserve batch run --ray`: the same job through Ray Data, for corpora that outgrow one machine.

Ray Data reads the input (JSONL objects, plain text lines, Parquet), `map_batches` runs it through an actor
pool of `Embedder`s (one per replica, each with its own model copy; `--replica-gpus 1` gives each a GPU), and
the driver receives the batches in input order (`preserve_order`) and writes them with the same staged sink
and final formats as the in-process run. Ray retries failed tasks and replaces dead actors itself; a killed
driver starts the job again (the resumable runner is the in-process one).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .local import CHUNK_ROWS, LocalJobSpec, RunSummary, check_one_vector, errors_path_of
from .sinks import StagedVectorSink, finalize


class EmbedActor:
    """One Ray actor: an `Embedder` for the job's model; called with batches of rows."""

    def __init__(self, spec: dict[str, Any], embedder_kw: dict[str, Any]) -> None:
        from ..inprocess import Embedder

        self.spec = LocalJobSpec(**spec)
        self.embedder = Embedder(self.spec.model, **embedder_kw)
        check_one_vector(self.spec.model, self.embedder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        s = self.spec
        texts = list(batch[s.text_field]) if s.text_field in batch else [None] * len(next(iter(batch.values())))
        good = [i for i, t in enumerate(texts) if isinstance(t, str)]
        encoded = self.embedder.encode([texts[i] for i in good], task=s.task, dimensions=s.dimensions,
                                       normalized=s.normalized, truncate=True) if good else None
        dims = encoded.shape[1] if encoded is not None else (s.dimensions or self.embedder.spec.dims or 0)
        vectors = np.full((len(texts), dims), np.nan, dtype=np.float32)
        if encoded is not None:
            vectors[good] = encoded
        errors = np.array(["" if isinstance(t, str) else f"no string field {s.text_field!r}" for t in texts])
        out: dict[str, np.ndarray] = {"embedding": vectors, "error": errors}
        if s.id_field in batch and s.id_field != s.text_field:
            out["id"] = np.asarray(batch[s.id_field])
        return out


def _read(ray_data: Any, spec: LocalJobSpec) -> Any:
    if spec.input_format == "parquet":
        return ray_data.read_parquet(spec.input)
    if spec.input_format == "jsonl":
        return ray_data.read_json(spec.input)
    if spec.text_field != "text":
        raise InvalidInputError("plain-text input has one column, 'text'; drop --text-field")
    return ray_data.read_text(spec.input)  # blank lines dropped, as the in-process reader does


def run_ray_job(spec: LocalJobSpec, *, address: str | None, replicas: int, replica_cpus: float,
                replica_gpus: float, embedder_kw: dict[str, Any],
                on_progress: Callable[[int], None] | None = None) -> RunSummary:
    try:
        import ray
        import ray.data
    except ImportError:
        raise InvalidInputError("--ray needs Ray Data: pip install 'jinaserve[ray-data]'") from None
    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    cpus = ray.cluster_resources().get("CPU", 0)
    if replicas * replica_cpus >= cpus:
        raise InvalidInputError(f"{replicas} replicas × {replica_cpus:g} CPUs take all {cpus:g} CPUs of the Ray "
                                f"cluster; leave at least one for reading the input (lower --replica-cpus)")
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ds = _read(ray.data, spec).map_batches(
        EmbedActor, fn_constructor_kwargs={"spec": spec.__dict__, "embedder_kw": embedder_kw},
        batch_size=CHUNK_ROWS, concurrency=replicas, num_cpus=replica_cpus, num_gpus=replica_gpus,
        batch_format="numpy")
    out = Path(spec.out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".jinaserve-ray-") as tmp:
        folder = Path(tmp)
        sink: StagedVectorSink | None = None
        index = 0
        for batch in ds.iter_batches(batch_size=1024, batch_format="numpy"):
            vectors = np.asarray(batch["embedding"], dtype=np.float32)
            if sink is None:
                sink = StagedVectorSink(folder, {}, int(vectors.shape[1]))
            ids = batch.get("id")
            records = []
            for i, (v, err) in enumerate(zip(vectors, batch["error"], strict=True)):
                meta: dict[str, Any] = {"index": index + i}
                if ids is not None and ids[i] is not None:
                    meta["id"] = ids[i].item() if hasattr(ids[i], "item") else ids[i]
                if err:
                    meta["error"] = f"row {index + i}: {err}"
                records.append((meta, None if err else v))
            sink.write(records)
            index += len(records)
            if on_progress is not None:
                on_progress(index)
        if sink is None:
            raise InvalidInputError(f"{spec.input} has no rows")
        state = sink.flush()
        sink.close()
        n, failed = finalize(folder, state, out, spec.output_format, errors_path_of(out))
    return RunSummary("ray", n, failed, 0, time.perf_counter() - started,
                      errors_path=str(errors_path_of(out)) if failed else None)
