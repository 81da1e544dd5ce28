"""Batch jobs: durable, resumable bulk embedding (and rerank) work on the same engine as online traffic.

- `lines.py`    one input line of a server job (Jina or OpenAI shape) → a background request → output line
- `runner.py`   the pipeline: keeps the batcher's background lane fed, commits results in input order
- `sinks.py`    append-only output files whose committed lengths live in the job store (exactly-once)
- `readers.py`  input files read from a byte offset / row (JSONL, plain text, Parquet)
- `inputs.py`   job inputs: inline lines, input_url downloads, uploaded OpenAI files (validated)
- `manager.py`  the server's job worker: runs and resumes jobs, expiry and cleanup, webhooks
- `local.py`    `jinaserve batch run`: the same runner in-process; `ray_data.py` the same job on Ray Data
"""
