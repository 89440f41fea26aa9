"""A public deployment never runs with a guessable SECRET_KEY (anyone could forge sessions).

With PUBLIC_BASE_URL off localhost and SECRET_KEY unset or the development default,
every process of the Procfile — release (`flask db upgrade`), web (gunicorn `app:app`),
worker and scheduler — stops with one line naming SECRET_KEY. On localhost the
development default still works, so a fresh checkout needs no settings.
"""
import pytest

from deltacrown import ConfigError, create_app
from deltacrown.config import load_config
from tests.support.processes import PYTHON, free_port, process_env, run_process

PUBLIC = "https://deltacrown.example"
# The well-known key a checkout runs with when SECRET_KEY is unset.
DEV_SECRET_KEY = "dev-only-insecure-secret-key"

COMMANDS = [
    pytest.param([PYTHON, "-m", "flask", "db", "upgrade"], id="release"),
    pytest.param([PYTHON, "worker.py"], id="worker"),
    pytest.param([PYTHON, "worker.py", "--scheduler"], id="scheduler"),
]


def env_for(tmp_path, redis_url, **overrides):
    values = {"DATABASE_URL": f"sqlite:///{tmp_path / 'key.sqlite'}", "REDIS_URL": redis_url}
    values.update(overrides)
    return process_env(**values)


def the_one_line(output: str) -> str:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "SECRET_KEY" in line]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("secret", [None, DEV_SECRET_KEY], ids=["unset", "dev-default"])
@pytest.mark.parametrize("command", COMMANDS)
def test_release_worker_and_scheduler_refuse_an_insecure_key_in_public(tmp_path, redis_url, command, secret):
    result = run_process(command, env=env_for(tmp_path, redis_url, PUBLIC_BASE_URL=PUBLIC, SECRET_KEY=secret),
                         timeout=30)
    assert result.returncode != 0, result.stdout + result.stderr
    line = the_one_line(result.stderr)
    assert result.stderr.strip() == line and "configuration error" in line


@pytest.mark.parametrize("secret", [None, DEV_SECRET_KEY], ids=["unset", "dev-default"])
def test_web_refuses_an_insecure_key_in_public(tmp_path, redis_url, secret):
    command = [PYTHON, "-m", "gunicorn", "app:app", "--bind", f"127.0.0.1:{free_port()}", "--workers", "1",
               "--no-control-socket"]
    result = run_process(command, env=env_for(tmp_path, redis_url, PUBLIC_BASE_URL=PUBLIC, SECRET_KEY=secret),
                         timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 4, output  # gunicorn's "App failed to load": the master stops
    reported = {line for line in output.splitlines() if line.startswith("deltacrown:")}
    assert len(reported) == 1 and "SECRET_KEY" in reported.pop(), output


def test_a_real_key_in_public_and_no_key_on_localhost_both_start(tmp_path, redis_url):
    public = run_process([PYTHON, "-m", "flask", "db", "upgrade"],
                         env=env_for(tmp_path, redis_url, PUBLIC_BASE_URL=PUBLIC, SECRET_KEY="a" * 40), timeout=60)
    assert public.returncode == 0, public.stderr
    local = run_process([PYTHON, "-m", "flask", "db", "upgrade"], env=env_for(tmp_path, redis_url), timeout=60)
    assert local.returncode == 0, local.stderr


@pytest.mark.parametrize("base", ["http://localhost:5000", "http://127.0.0.1:8000", "http://[::1]:5000"])
def test_localhost_keeps_the_development_default(base):
    config = load_config({"PUBLIC_BASE_URL": base})
    assert config["SECRET_KEY"] == DEV_SECRET_KEY
    create_app({"PUBLIC_BASE_URL": base, "SECRET_KEY": DEV_SECRET_KEY, "REDIS_URL": ""})


@pytest.mark.parametrize("base", ["https://deltacrown.example", "http://10.0.0.5:5000", "http://localhost.evil.example"])
def test_the_check_applies_after_the_callers_overrides(base):
    with pytest.raises(ConfigError, match="^SECRET_KEY: "):
        create_app({"PUBLIC_BASE_URL": base, "SECRET_KEY": DEV_SECRET_KEY, "REDIS_URL": ""})
    create_app({"PUBLIC_BASE_URL": base, "SECRET_KEY": "x" * 40, "REDIS_URL": ""})
