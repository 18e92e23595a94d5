"""No silent skips: every skipped test is listed at the end of the run with its reason, and with
PROEX_STRICT_SKIPS=1 (set by .ci/run) a skip that tests/skip_allowlist.txt does not name fails the run.

Why: a missing extra (ray, mlflow, optuna, ...) or a missing dataset turns whole areas of the suite into
`importorskip` skips, which pytest reports as success. The allow-list holds one `PATTERN -- reason` per line;
PATTERN is an fnmatch pattern over the skipped node id (a module id such as `tests/test_ui.py` for a
module-level skip). Loaded by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

ALLOWLIST = Path(__file__).with_name("skip_allowlist.txt")
STRICT_ENV = "PROEX_STRICT_SKIPS"


def read_allowlist(path: Path) -> list[tuple[str, str]]:
    """[(pattern, reason)] from `path`; blank lines and # comments ignored; a line without a reason is an error."""
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, reason = line.partition(" -- ")
        if not sep or not reason.strip() or not pattern.strip():
            raise pytest.UsageError(f"{path}:{n}: {line!r}: write one skip as 'PATTERN -- reason why it may skip'")
        entries.append((pattern.strip(), reason.strip()))
    return entries


def _reason(report) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


class SkipGuard:
    def __init__(self, config: pytest.Config):
        self.strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
        self.allowed = read_allowlist(ALLOWLIST) if ALLOWLIST.exists() else []
        self.skips: list[tuple[str, str, str]] = []  # (node id, reason, the allow-list reason or "")

    def _record(self, report) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            why = next((r for p, r in self.allowed if fnmatch.fnmatchcase(report.nodeid, p)), "")
            self.skips.append((report.nodeid, _reason(report), why))

    def pytest_collectreport(self, report) -> None:
        self._record(report)

    def pytest_runtest_logreport(self, report) -> None:
        if report.when in ("setup", "call"):
            self._record(report)

    @property
    def unexpected(self) -> list[tuple[str, str, str]]:
        return [s for s in self.skips if not s[2]]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if (
            self.strict
            and self.unexpected
            and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        tr = terminalreporter
        tr.section(f"skipped tests: {len(self.skips)} ({len(self.unexpected)} not in {ALLOWLIST.name})")
        for node, reason, why in self.skips:
            tr.line(f"{'allowed' if why else 'NOT ALLOWED'}  {node}: {reason}" + (f"  [allowed: {why}]" if why else ""))
        if self.unexpected:
            tr.line(
                f"{len(self.unexpected)} skipped test(s) are not in {ALLOWLIST}: install what they need, or "
                f"add 'PATTERN -- reason' there"
                + (
                    f"; this fails the run ({STRICT_ENV}=1)"
                    if self.strict
                    else f"; with {STRICT_ENV}=1 (CI) this fails the run"
                ),
                red=True,
            )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(config), "proex_skip_guard")
