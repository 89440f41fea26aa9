"""The layer order of ARCHITECTURE.md, checked on the code as it is (import-linter)."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"


def test_imports_point_down_the_layers():
    # Lazy imports inside functions count: import-linter reads every import statement.
    linter = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(linter), "--config", str(CONFIG), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "1 kept, 0 broken" in run.stdout


def test_the_contract_ignores_no_import_and_names_every_part():
    config = configparser.ConfigParser()
    config.read(CONFIG)
    contract = config["importlinter:contract:layers"]
    assert "ignore_imports" not in contract
    layers = contract["layers"]
    for part in ("ops", "reactions", "notifications", "economy", "tournaments", "teams", "accounts",
                 "channels", "queue", "outbox"):
        assert f"deltacrown.{part}" in layers
    # Every module of the package is in some layer or under one (nothing escapes the check).
    named = {name.strip(" ()") for line in layers.splitlines() for name in line.replace("|", ":").split(":")}
    package = ROOT / "deltacrown"
    for path in package.glob("*"):
        if path.name.startswith("__") or (path.is_file() and path.suffix != ".py"):
            continue
        module = "deltacrown." + path.stem
        assert module in named, f"{module} is in no layer of .importlinter"


def test_building_the_app_imports_every_module_a_job_can_reach():
    """A worker forks a fresh work horse per job: whatever the app has not imported by
    then is imported again in every horse. `create_app` names every part and the parts
    import at module level, so nothing is left for a job to import."""
    script = (
        "import sys\n"
        "from deltacrown import create_app\n"
        "create_app({'TESTING': True, 'SQLALCHEMY_DATABASE_URI': 'sqlite://', 'SECRET_KEY': 'x' * 32})\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('deltacrown'))))\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = set(run.stdout.split())
    package = ROOT / "deltacrown"
    every = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
             for path in package.rglob("*.py")}
    # Only the local development runner (and the Redis it starts) is not part of a served app.
    assert every - loaded == {"deltacrown.devserver", "deltacrown.devredis"}
