"""Issue 12 item 7: licences in plain sight, and full model ids in `jinaserve models` at 80 columns."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from helpers import server_in_thread
from jinaserve.catalog import all_models
from jinaserve.catalog.licences import is_non_commercial, licence_notice
from jinaserve.cli import app


@pytest.mark.parametrize("columns", [80, 100])
def test_models_table_shows_full_ids_at_80_columns(columns):
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns
    assert "…" not in result.output
    firsts = {line.split(" ", 1)[0] for line in lines}
    for spec in all_models():
        assert spec.id in firsts, spec.id  # the whole id, at the start of its row
    assert "jinaserve inspect ID" in result.output


@pytest.mark.parametrize(("licence", "nc"), [("CC-BY-NC-4.0", True), ("cc-by-nc-4.0", True),
                                             ("Qwen Research License", True), ("Apache-2.0", False),
                                             ("MIT", False), ("cc-by-4.0", False), ("unknown", False), (None, False)])
def test_non_commercial_licences(licence, nc):
    assert is_non_commercial(licence) is nc
    assert (licence_notice("m", licence) is not None) is nc


def test_every_catalog_licence_is_known():
    assert {s.licence for s in all_models()} <= {"CC-BY-NC-4.0", "Qwen Research License", "Apache-2.0"}


def test_startup_logs_each_licence_and_one_notice_per_non_commercial_model(layouts, caplog):
    v3 = layouts["v3-hf"]
    caplog.set_level(logging.INFO, logger="jinaserve")
    with server_in_thread(models=[f"{v3.row}={v3.named}", str(layouts["minilm"].named)], device="cpu", threads=1):
        pass
    ready = [r.getMessage() for r in caplog.records if " ready (" in r.getMessage()]
    assert any("jina-embeddings-v3" in m and "licence CC-BY-NC-4.0" in m for m in ready), ready
    assert any(m.startswith("model model ") and "licence " in m for m in ready), ready  # the MiniLM folder
    notices = [r for r in caplog.records if r.getMessage().startswith("licence notice:")]
    assert len(notices) == 1 and notices[0].levelno == logging.WARNING
    assert "jina-embeddings-v3 is licensed CC-BY-NC-4.0: non-commercial use only" in notices[0].getMessage()
