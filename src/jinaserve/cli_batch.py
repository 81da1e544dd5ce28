"""`jinaserve batch run | status | list | cancel`.

`run` embeds a file in-process (resumable: re-run the same command after a crash) or, with `--ray`, through
Ray Data; `status`, `list` and `cancel` talk to a running server's batch API.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Bulk embedding jobs: run one here, or manage a server's jobs.")
console = Console(stderr=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="JINASERVE_URL", help="Server base URL.")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="JINASERVE_API_KEY", help="API key, if the server "
                                            "has keys.")]


@app.command()
def run(
    input: Annotated[Path, typer.Argument(help="JSONL, plain text (one input per line) or Parquet file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: .jsonl, .parquet or .npy (rows in input order).")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model (catalog id, repo, folder, NAME=SOURCE).")]
    = None,
    text_field: Annotated[str, typer.Option(help="JSONL key / Parquet column holding the text.")] = "text",
    id_field: Annotated[str, typer.Option(help="JSONL key / Parquet column copied to the output as `id`.")] = "id",
    input_format: Annotated[str | None, typer.Option(help="jsonl | text | parquet (default: from the suffix).")]
    = None,
    output_format: Annotated[str | None, typer.Option(help="jsonl | parquet | npy (default: from the suffix).")]
    = None,
    task: Annotated[str | None, typer.Option(help="Task, e.g. retrieval.passage.")] = None,
    dimensions: Annotated[int | None, typer.Option(help="Matryoshka dimensions.")] = None,
    normalized: Annotated[bool, typer.Option("--normalized/--no-normalized", help="L2-normalise.")] = True,
    data_dir: Annotated[str | None, typer.Option(help="Store folder holding the job's progress (resume).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | mps | auto")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for inference.")] = None,
    offline: Annotated[bool | None, typer.Option("--offline/--online", help="Never contact a model hub.")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Run through Ray Data (an actor pool of Embedders).")] = False,
    ray_address: Annotated[str | None, typer.Option(help="Ray: cluster to join (default: start a local one).")]
    = None,
    replicas: Annotated[int, typer.Option(help="Ray: Embedder actors (one per GPU / replica).")] = 2,
    replica_cpus: Annotated[float, typer.Option(help="Ray: CPUs per actor.")] = 1.0,
    replica_gpus: Annotated[float, typer.Option(help="Ray: GPUs per actor.")] = 0.0,
) -> None:
    """Embed every row of INPUT into --out, with a progress bar; re-run the same command to resume."""
    from .batch.local import make_spec, run_local
    from .config import OFFLINE_FALLBACK_MODEL, load_settings
    from .errors import JinaServeError
    from .store.jobs import open_job_store

    try:
        spec = make_spec(input, out, model or OFFLINE_FALLBACK_MODEL, input_format=input_format,
                         output_format=output_format, text_field=text_field, id_field=id_field, task=task,
                         dimensions=dimensions, normalized=normalized)
        settings = load_settings(None, data_dir=data_dir, device=device, threads=threads, offline=offline)
        with _Progress() as progress:
            if ray:
                from .batch.ray_data import run_ray_job
                from .batch.readers import count_rows

                progress.start(count_rows(input, spec.input_format))
                kw = {k: v for k, v in {"device": device, "threads": threads, "offline": offline}.items() if v}
                summary = run_ray_job(spec, address=ray_address, replicas=replicas, replica_cpus=replica_cpus,
                                      replica_gpus=replica_gpus, embedder_kw=kw, on_progress=progress.update)
            else:
                from .engine.registry import load_service

                store = open_job_store(settings.data_dir)
                if _already_done(store, spec):
                    console.print(f"already complete: {out}; delete it to run again")
                    return
                service = load_service(spec.model, settings)
                try:
                    job_total = _total(store, spec)
                    progress.start(job_total)
                    summary = run_local(store, spec, service, on_progress=progress.update)
                finally:
                    service.close()
    except JinaServeError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    if summary.already_done:
        console.print(f"already complete: {out} ({summary.rows} rows); delete it to run again")
        return
    rate = (summary.rows - summary.resumed_from) / summary.seconds if summary.seconds else 0.0
    resumed = f", resumed at row {summary.resumed_from}" if summary.resumed_from else ""
    console.print(f"wrote {out}: {summary.rows} rows in {summary.seconds:.1f} s ({rate:.0f} rows/s{resumed})")
    if summary.failed:
        console.print(f"[yellow]{summary.failed} rows failed[/yellow]: see {summary.errors_path}")
        raise typer.Exit(3)


def _already_done(store: Any, spec: Any) -> bool:
    from .batch.local import job_id_for

    job = store.get_job(job_id_for(spec))
    return job is not None and job.status == "completed" and Path(spec.out).exists()


def _total(store: Any, spec: Any) -> int:
    from .batch.local import job_id_for
    from .batch.readers import count_rows

    job = store.get_job(job_id_for(spec))
    return job.total if job is not None and job.total is not None else count_rows(Path(spec.input),
                                                                                  spec.input_format)


class _Progress:
    """A rich progress bar (rows, rows/s, ETA) on a terminal; silent otherwise."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]} rows/s"),
                                 TimeRemainingColumn(), console=console)
            self._bar.start()
        return self

    def start(self, total: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("embed", total=total, rate="-")

    def update(self, done: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done)
            speed = self._bar.tasks[0].speed
            self._bar.update(self._task, rate=f"{speed:.0f}" if speed else "-")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------- server jobs
def _client(url: str, api_key: str | None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30)


def _call(url: str, api_key: str | None, method: str, path: str) -> Any:
    import httpx

    try:
        with _client(url, api_key) as client:
            r = client.request(method, path)
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] cannot reach {url} ({exc})")
        raise typer.Exit(2) from exc
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
    if r.status_code >= 400:
        detail = body.get("detail") if isinstance(body, dict) else body
        console.print(f"[red]error {r.status_code}:[/red] {detail}")
        raise typer.Exit(1)
    return body


def _print_json(body: Any) -> None:
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
def status(batch_id: Annotated[str, typer.Argument(help="Job id (batch_...).")], url: UrlOpt = "http://127.0.0.1:8080",
           api_key: KeyOpt = None) -> None:
    """A server job's status (JSON)."""
    _print_json(_call(url, api_key, "GET", f"/v1/batch/{batch_id}"))


@app.command("list")
def list_jobs(url: UrlOpt = "http://127.0.0.1:8080", api_key: KeyOpt = None,
              limit: Annotated[int, typer.Option(help="Most jobs to show (newest first).")] = 20,
              as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """A server's jobs, newest first."""
    jobs = _call(url, api_key, "GET", f"/v1/batches?limit={limit}&format=jina")
    if as_json or not Console().is_terminal:
        _print_json(jobs)
        return
    table = Table("batch_id", "status", "model", "done", "failed", "total", "created_at")
    for j in jobs:
        st = j.get("stats") or {}
        table.add_row(j["batch_id"], j["status"], j["model"], str(st.get("completed", 0)),
                      str(st.get("failed", 0)), str(st.get("total", 0)), j["created_at"])
    Console().print(table)


@app.command()
def cancel(batch_id: Annotated[str, typer.Argument(help="Job id (batch_...).")], url: UrlOpt = "http://127.0.0.1:8080",
           api_key: KeyOpt = None) -> None:
    """Cancel a server job (pending: at once; processing: at its next commit)."""
    _print_json(_call(url, api_key, "DELETE", f"/v1/batch/{batch_id}"))
