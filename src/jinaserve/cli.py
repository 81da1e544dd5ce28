"""Command line: `jinaserve serve | models | inspect | pull | bundle | embed | rerank`."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from . import cli_batch

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Serve Jina AI embedding and reranking models behind a Jina/OpenAI-compatible API.")
console = Console(stderr=True)

ModelsOpt = Annotated[str | None, typer.Option("--models", "-m", help="Comma-separated models: catalog ids, HF "
                                               "repo ids, folders, or NAME=SOURCE.")]
ConfigOpt = Annotated[str | None, typer.Option("--config", help="TOML config file.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu | cuda | mps | auto")]
DtypeOpt = Annotated[str | None, typer.Option("--dtype", help="auto | float32 | float16 | bfloat16")]
OfflineOpt = Annotated[bool | None, typer.Option("--offline/--online", help="Never contact a model hub.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No download progress bars (shown only on a terminal).")]


def _settings(config: str | None = None, **overrides):
    from .config import load_settings

    try:
        return load_settings(config, **overrides)
    except Exception as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command()
def serve(
    models: ModelsOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    api_key: Annotated[list[str] | None, typer.Option("--api-key", help="Accepted API key (repeatable).")] = None,
    config: ConfigOpt = None,
    runtime: Annotated[str | None, typer.Option(help="torch | llamacpp")] = None,
    quant: Annotated[str | None, typer.Option(help="GGUF quantisation, e.g. Q8_0 (llamacpp runtime).")] = None,
    ctx_size: Annotated[int | None, typer.Option("--ctx-size", help="llamacpp: context size in tokens.")] = None,
    llama_batch: Annotated[int | None, typer.Option("--llama-batch", help="llamacpp: tokens per decode call.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for inference.")] = None,
    quantize: Annotated[str | None, typer.Option(help="none | int8 (ONNX Runtime dynamic int8, CPU).")] = None,
    cache_size: Annotated[int | None, typer.Option("--cache-size", help="Embedding cache entries per model (0 = "
                                                   "off).")] = None,
    cache_persist: Annotated[bool | None, typer.Option("--cache-persist/--no-cache-persist", help="Keep the "
                                                       "embedding cache in the data_dir store.")] = None,
    offline: OfflineOpt = None,
    max_batch_tokens: Annotated[int | None, typer.Option(help="Padded tokens per forward pass.")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Items per forward pass.")] = None,
    log_format: Annotated[str | None, typer.Option(help="console | json")] = None,
    bundle: Annotated[str | None, typer.Option(help="Serve an offline bundle folder (`jinaserve bundle`).")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="Folder of the embedded store: trained "
                                                 "classifiers, batch jobs (default: the user's data folder).")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Run N replicas on Ray Serve behind Ray's HTTP proxy.")] = False,
    replicas: Annotated[int, typer.Option(help="Ray: fixed number of replicas.")] = 1,
    min_replicas: Annotated[int | None, typer.Option(help="Ray: autoscale, fewest replicas.")] = None,
    max_replicas: Annotated[int | None, typer.Option(help="Ray: autoscale, most replicas.")] = None,
    target_ongoing_requests: Annotated[float, typer.Option(help="Ray: autoscale target per replica.")] = 8.0,
    ray_address: Annotated[str | None, typer.Option(help="Ray: cluster to join (default: start a local one).")] = None,
    replica_cpus: Annotated[float, typer.Option(help="Ray: CPUs reserved per replica.")] = 1.0,
    replica_gpus: Annotated[float, typer.Option(help="Ray: GPUs reserved per replica.")] = 0.0,
    quiet: QuietOpt = False,
) -> None:
    """Start the HTTP server (or, with --ray, a Ray Serve application of N replicas)."""
    settings = _settings(config, models=_csv(models), host=host, port=port, device=device, dtype=dtype,
                         api_keys=api_key or None, runtime=runtime, quant=quant, threads=threads,
                         gguf_ctx_size=ctx_size, gguf_batch_size=llama_batch, quantize=quantize,
                         cache_size=cache_size, cache_persist=cache_persist,
                         offline=offline, max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size,
                         log_format=log_format, bundle=bundle, data_dir=data_dir, quiet=quiet or None)
    if ray:
        from .ray_serve import RayOptions, run_ray

        run_ray(settings, RayOptions(replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas,
                                     target_ongoing_requests=target_ongoing_requests, address=ray_address,
                                     num_cpus=replica_cpus, num_gpus=replica_gpus))
        return
    from .server import serve as run_server

    run_server(settings)


@app.command("bundle")
def make_bundle(
    models: ModelsOpt = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Bundle folder to write.")] = None,
    verify: Annotated[str | None, typer.Option(help="Check an existing bundle folder (sizes and SHA-256).")] = None,
    offline: OfflineOpt = None,
    cache_dir: Annotated[str | None, typer.Option(help="Model cache folder.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle in --out.")] = False,
) -> None:
    """Write models' weights + a manifest into a folder an air-gapped host serves with JINASERVE_BUNDLE."""
    from .bundle import BundleError, create_bundle, verify_bundle
    from .errors import JinaServeError
    from .logs import setup_logging
    from .runtimes.hub import WeightsUnavailableError

    setup_logging("console", "info")
    try:
        if verify:
            problems = verify_bundle(verify, hashes=True)
            for p in problems:
                console.print(f"[red]{p}[/red]")
            if problems:
                raise typer.Exit(1)
            console.print(f"[green]{verify}: bundle matches its manifest[/green]")
            return
        if not models or not out:
            console.print("[red]bundle needs --models a,b and --out DIR (or --verify DIR)[/red]")
            raise typer.Exit(2)
        manifest = create_bundle(_csv(models) or [], out, offline=bool(offline), cache_dir=cache_dir,
                                 overwrite=overwrite)
    except (BundleError, WeightsUnavailableError) as exc:
        console.print(f"[red]bundle failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    except JinaServeError as exc:
        console.print(f"[red]bundle failed:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    for m in manifest["models"]:
        size = sum(f["size"] for f in m["files"].values())
        console.print(f"[green]{m['name']}[/green] ({m['kind']}, {len(m['files'])} files, {size / 1e6:.1f} MB)")
    console.print(f"bundle written to {out}; serve it with JINASERVE_BUNDLE={out} jinaserve serve")


@app.command("models")
def list_models(as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """List the model catalog: id, kind, tasks, dims, max tokens, size, licence, cached?"""
    from .catalog import all_models
    from .runtimes.hub import bundled_folder, is_cached

    rows = []
    for spec in all_models():
        cached = bool(spec.hf_repo and is_cached(spec.hf_repo))
        bundled = bool(spec.bundled_path and bundled_folder(spec.bundled_path))
        rows.append({"id": spec.id, "kind": spec.kind, "tasks": spec.task_names, "default_task": spec.default_task,
                     "dimensions": spec.dims, "max_tokens": spec.max_tokens, "params": spec.params,
                     "licence": spec.licence, "hf_repo": spec.hf_repo, "cached": cached, "bundled": bundled})
    if as_json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out = Console()
    for i, table in enumerate(catalog_tables(rows, wide=out.width >= 130)):
        out.print(*([""] if i else []), table)
    out.print("\nTasks, prompts and files of one model: jinaserve inspect ID (all fields: --json)", highlight=False)


def catalog_tables(rows: list[dict], *, wide: bool) -> list[Table]:
    """One table per kind. The id column is never cut (it is what users copy): at 80 columns the table
    keeps id, dims, max tokens, licence and cached; wider terminals also get tasks and size."""

    tables = []
    id_width = max(len(r["id"]) for r in rows)
    for kind, title in (("embedding", "Embedding models"), ("rerank", "Rerankers")):
        table = Table(title=title, title_justify="left", title_style="bold", box=None, header_style="bold underline",
                      pad_edge=False, padding=(0, 1, 0, 0))
        table.add_column("id", no_wrap=True, min_width=id_width)
        table.add_column("dims", justify="right", no_wrap=True)
        table.add_column("tokens", justify="right", no_wrap=True)
        if wide:
            table.add_column("tasks", overflow="fold")
            table.add_column("size", no_wrap=True)
        table.add_column("licence", min_width=13)
        table.add_column("cached", no_wrap=True)
        for r in (r for r in rows if r["kind"] == kind):
            cells = [r["id"], str(r["dimensions"] or "-"), str(r["max_tokens"])]
            if wide:
                cells += [", ".join(r["tasks"]) or "-", r["params"] or "-"]
            cells += [r["licence"], "yes" if r["cached"] else ("bundled" if r["bundled"] else "no")]
            table.add_row(*cells)
        tables.append(table)
    return tables


@app.command("inspect")
def inspect_checkpoint(
    target: Annotated[str, typer.Argument(help="A checkpoint folder, NAME=folder, a .gguf file, or a catalog id / "
                                               "Hugging Face repo id in the local cache (never downloads).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    load: Annotated[bool, typer.Option("--load", help="Also load the model (offline, on the CPU).")] = False,
    cache_dir: Annotated[str | None, typer.Option(help="Model cache folder.")] = None,
) -> None:
    """What a checkpoint is (family, layout, tasks, dims, licence, missing files); exit 1 if it would not load."""
    from .inspection import inspect_target, render
    from .logs import setup_logging

    setup_logging("console", "warning")
    report = inspect_target(target, cache_dir=cache_dir, load=load)
    if as_json:
        sys.stdout.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        Console(highlight=False).print(render(report))
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def pull(model: Annotated[str, typer.Argument(help="Catalog id or Hugging Face repo id.")],
         cache_dir: Annotated[str | None, typer.Option(help="Cache folder.")] = None,
         quant: Annotated[str | None, typer.Option(help="Only this GGUF quantisation.")] = None,
         quiet: QuietOpt = False) -> None:
    """Download the files a model needs into the local cache (one line with size and licence, then progress)."""
    from .catalog import lookup
    from .runtimes import hub

    row = lookup(model)
    repo = row.hf_repo if row and row.hf_repo else model
    revision = row.revision if row else None
    patterns = None
    if row and row.gguf and (quant or not row.hf_repo):  # GGUF: only the chosen file (+ the row's extra files)
        from .errors import ModelNotFoundError
        from .runtimes.llamacpp_runtime import gguf_file_pattern

        try:
            quant, fname = gguf_file_pattern(row, quant)
        except ModelNotFoundError as exc:
            console.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(2) from exc
        repo, revision, patterns = row.gguf.repo, None, [fname, *row.gguf.extra_files]
        console.print(f"{repo}: {quant} ({fname}{''.join(', ' + f for f in row.gguf.extra_files)})")
    elif quant:
        console.print(f"[red]{model} has no GGUF files in the catalog; --quant applies to GGUF repos only[/red]")
        raise typer.Exit(2)
    elif row and row.bundled_path and hub.bundled_folder(row.bundled_path):
        console.print(f"[green]{row.id}[/green] ships with jinaserve ({hub.bundled_folder(row.bundled_path)}): "
                      f"nothing to download")
        return
    from .models.files import select_download

    try:
        path = hub.fetch(repo, revision=revision, cache_dir=cache_dir, allow_patterns=patterns,
                         select=None if patterns else (lambda names: select_download(names, row)), quiet=quiet,
                         model=row.id if row else None, licence=row.licence if row else None,
                         say=lambda line: console.print(line, highlight=False))
    except hub.WeightsUnavailableError as exc:
        console.print(f"[red]pull failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"[green]{repo}[/green] → {path}")


def _inprocess_settings(device: str | None, offline: bool | None) -> dict:
    return {"device": device or "auto", "offline": bool(offline)}


def _default_model(named: str | None, default: str, offline: bool | None) -> str:
    """The model the user named, else `default` when it is cached or a hub answers, else the bundled one."""
    if named:
        return named
    from .config import Settings
    from .engine.registry import defaults_or_fallback

    return defaults_or_fallback([default], Settings(offline=bool(offline)), how_to_choose="pass -m to choose")[0]


@app.command()
def embed(
    texts: Annotated[list[str], typer.Argument(help="Texts to embed.")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Default: jina-embeddings-v3, or the bundled all-MiniLM-L6-v2 when no hub is "
        "reachable and it is not cached.")] = None,
    task: Annotated[str | None, typer.Option(help="Task (model-specific).")] = None,
    dimensions: Annotated[int | None, typer.Option(help="Matryoshka dimensions.")] = None,
    device: DeviceOpt = None,
    offline: OfflineOpt = None,
) -> None:
    """Embed texts in-process and print JSON ({model, data: [{index, embedding}]}; multi-vector models such as
    jina-colbert: [{index, embeddings}], one vector per token, as /v1/embeddings answers)."""
    from .errors import JinaServeError
    from .inprocess import Embedder
    from .logs import setup_logging

    setup_logging("console", "warning")
    try:
        emb = Embedder(_default_model(model, "jina-embeddings-v3", offline), **_inprocess_settings(device, offline))
        if emb.multi_vector_only:
            matrices = emb.encode_multivector(texts, task=task, dimensions=dimensions)
            data = [{"index": i, "embeddings": m} for i, m in enumerate(matrices)]
        else:
            data = [{"index": i, "embedding": v} for i, v in enumerate(emb.encode(texts, task=task,
                                                                                  dimensions=dimensions))]
    except JinaServeError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    body = {"model": emb.model_id, "data": data}
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    emb.close()


@app.command()
def rerank(
    query: Annotated[str, typer.Argument(help="The query.")],
    documents: Annotated[list[str], typer.Argument(help="Documents to rank.")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Default: jina-reranker-v3, or the bundled all-MiniLM-L6-v2 (cosine) when no hub "
        "is reachable and it is not cached.")] = None,
    top_n: Annotated[int | None, typer.Option(help="Keep the best N.")] = None,
    device: DeviceOpt = None,
    offline: OfflineOpt = None,
) -> None:
    """Rerank documents in-process and print JSON ({model, results: [{index, relevance_score, document}]})."""
    from .errors import JinaServeError
    from .inprocess import Reranker
    from .logs import setup_logging

    setup_logging("console", "warning")
    try:
        rr = Reranker(_default_model(model, "jina-reranker-v3", offline), **_inprocess_settings(device, offline))
        results = rr.rerank(query, documents, top_n=top_n)
    except JinaServeError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    sys.stdout.write(orjson.dumps({"model": rr.model_id, "results": results}).decode() + "\n")
    rr.close()


app.add_typer(cli_batch.app, name="batch")  # jinaserve batch run | status | list | cancel


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
