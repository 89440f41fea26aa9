"""`pip-audit` over requirements.txt: a known vulnerability in a pinned runtime dependency
fails the suite (and so CI, which runs the README's test command).

Skipped, with the reason, only when the vulnerability data cannot be fetched at all: no
network, or a package index without PyPI's JSON API (then pip-audit marks every
dependency "not found on PyPI" and would otherwise report a hollow "no vulnerabilities").
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NETWORK_TROUBLE = ("ConnectionError", "Max retries exceeded", "Name or service not known",
                   "Temporary failure in name resolution", "NameResolutionError", "timed out",
                   "Network is unreachable", "Connection refused")


def pip_audit_command() -> list[str]:
    exe = shutil.which("pip-audit", path=str(Path(sys.executable).parent))
    if exe:
        return [exe]
    return [sys.executable, "-m", "pip_audit"]


def audit(requirements: Path) -> tuple[subprocess.CompletedProcess, dict | None]:
    proc = subprocess.run([*pip_audit_command(), "-r", str(requirements), "--progress-spinner", "off",
                           "--format", "json"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        report = None
    return proc, report


def vulnerable(report: dict) -> list[str]:
    found = []
    for dep in report.get("dependencies", []):
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            found.append(f"{dep['name']} {dep.get('version')}: {vuln['id']} (fixed in: {fixes})")
    return found


@pytest.mark.timeout(700)
def test_no_known_vulnerabilities_in_the_pinned_requirements():
    proc, report = audit(ROOT / "requirements.txt")
    if report is None:
        if any(sign in proc.stderr for sign in NETWORK_TROUBLE):
            pytest.skip("pip-audit cannot reach the vulnerability service (no network): "
                        + proc.stderr.strip().splitlines()[-1][:200])
        pytest.fail(f"pip-audit did not run (exit {proc.returncode}): {proc.stderr[-1500:]}")
    found = vulnerable(report)
    assert not found, "known vulnerabilities in requirements.txt pins:\n" + "\n".join(found)
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    assert dependencies, report
    if not audited:
        pytest.skip(f"the vulnerability service answered for none of the {len(dependencies)} dependencies "
                    f"(e.g. {dependencies[0].get('skip_reason')!r}): this index has no PyPI JSON API; "
                    "CI with access to the package index's vulnerability data audits them")
    assert proc.returncode == 0, proc.stderr[-1500:]


def test_the_report_is_read_correctly():
    """The parser above finds vulnerabilities in pip-audit's JSON (so the audit can fail)."""
    report = {"dependencies": [
        {"name": "flask", "version": "0.12", "vulns": [{"id": "PYSEC-2018-66", "fix_versions": ["0.12.3"]}]},
        {"name": "rq", "version": "3.0.0", "vulns": []},
        {"name": "x", "version": "1", "skip_reason": "Dependency not found on PyPI"}]}
    assert vulnerable(report) == ["flask 0.12: PYSEC-2018-66 (fixed in: 0.12.3)"]
