"""Settings precedence: CLI flags > JINASERVE_* environment > TOML config file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from jinaserve import cli
from jinaserve.config import Settings, load_settings


@pytest.fixture
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("JINASERVE_"):
            monkeypatch.delenv(key)
    return monkeypatch


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jinaserve.toml"
    path.write_text(text)
    return path


def test_defaults(clean_env):
    s = load_settings()
    assert (s.host, s.port, s.device, s.dtype, s.models, s.api_keys) == ("127.0.0.1", 8080, "auto", "auto", [], [])
    assert s.log_format == "console" and s.max_batch_tokens == 16384 and s.offline is False


def test_precedence_flag_env_toml_default(clean_env, tmp_path):
    cfg = write_toml(tmp_path, 'port = 7000\nhost = "0.0.0.0"\ndevice = "cpu"\nmax_batch_size = 7\n'
                               'models = ["from-toml"]\napi_keys = ["toml-key"]\n')
    s = load_settings(cfg)
    assert (s.port, s.host, s.device, s.max_batch_size, s.models, s.api_keys) == (
        7000, "0.0.0.0", "cpu", 7, ["from-toml"], ["toml-key"])
    assert s.dtype == "auto"  # not in the file: default
    clean_env.setenv("JINASERVE_PORT", "7100")
    clean_env.setenv("JINASERVE_MODELS", "env-a, env-b")
    clean_env.setenv("JINASERVE_API_KEYS", "k1,k2")
    s = load_settings(cfg)
    assert s.port == 7100 and s.models == ["env-a", "env-b"] and s.api_keys == ["k1", "k2"]
    assert s.host == "0.0.0.0"  # only in the file
    s = load_settings(cfg, port=7200, models=["flag-model"], host=None)
    assert s.port == 7200 and s.models == ["flag-model"]
    assert s.host == "0.0.0.0"  # a flag left unset (None) lets lower layers show through
    assert s.max_batch_size == 7 and s.api_keys == ["k1", "k2"]


def test_config_file_from_env(clean_env, tmp_path):
    cfg = write_toml(tmp_path, "port = 7300\n")
    clean_env.setenv("JINASERVE_CONFIG", str(cfg))
    assert load_settings().port == 7300
    assert load_settings(port=1).port == 1


def test_bad_values_are_errors(clean_env, tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "missing.toml")
    clean_env.setenv("JINASERVE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="device"):
        load_settings()


def test_every_setting_has_an_env_var(clean_env):
    """Each Settings field is reachable as JINASERVE_<FIELD>."""
    clean_env.setenv("JINASERVE_LOG_FORMAT", "json")
    clean_env.setenv("JINASERVE_MAX_BODY_BYTES", "123")
    clean_env.setenv("JINASERVE_OFFLINE", "true")
    s = Settings()
    assert s.log_format == "json" and s.max_body_bytes == 123 and s.offline is True


def test_serve_flags_reach_settings(clean_env, tmp_path, monkeypatch):
    """`jinaserve serve` maps its flags onto Settings above env and file (server start replaced by a probe)."""
    import jinaserve.server

    seen: dict[str, Settings] = {}
    monkeypatch.setattr(jinaserve.server, "serve", lambda settings: seen.setdefault("s", settings))
    cfg = write_toml(tmp_path, 'port = 7000\ndtype = "float16"\nlog_format = "json"\n')
    clean_env.setenv("JINASERVE_PORT", "7100")
    clean_env.setenv("JINASERVE_DTYPE", "bfloat16")
    result = CliRunner().invoke(cli.app, ["serve", "--config", str(cfg), "--port", "7200", "--models", "a,b",
                                          "--api-key", "x", "--api-key", "y", "--device", "cpu", "--offline"])
    assert result.exit_code == 0, result.output
    s = seen["s"]
    assert s.port == 7200 and s.dtype == "bfloat16" and s.log_format == "json"
    assert s.models == ["a", "b"] and s.api_keys == ["x", "y"] and s.device == "cpu" and s.offline is True
    bad = CliRunner().invoke(cli.app, ["serve", "--config", str(tmp_path / "nope.toml")])
    assert bad.exit_code == 2 and "configuration error" in bad.output
