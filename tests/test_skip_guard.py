"""The skip guard (tests/skip_guard.py) in a pytest run of its own: a skip outside the allow-list fails the run
under PROEX_STRICT_SKIPS=1 and is listed either way; an allow-listed skip passes; a reason is required."""

import pytest
import skip_guard

BODY = """
import pytest
pytest.importorskip("no_such_module_for_the_guard")

def test_never_runs():
    pass
"""


@pytest.fixture
def inner(pytester, monkeypatch, tmp_path):
    pytester.makepyfile(test_ray_area=BODY, test_fine="def test_ok():\n    pass\n")
    allow = tmp_path / "allow.txt"
    allow.write_text("# header\n")
    monkeypatch.setattr(skip_guard, "ALLOWLIST", allow)
    return pytester, allow


def test_unlisted_skip_fails_the_run_in_ci(inner, monkeypatch):
    pytester, _ = inner
    monkeypatch.setenv(skip_guard.STRICT_ENV, "1")
    result = pytester.runpytest_inprocess("-p", "skip_guard")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*skipped tests: 1 (1 not in allow.txt)*", "NOT ALLOWED  test_ray_area.py: *no_such_module_for_the_guard*"]
    )


def test_without_the_ci_switch_the_skip_is_listed_but_passes(inner, monkeypatch):
    pytester, _ = inner
    monkeypatch.delenv(skip_guard.STRICT_ENV, raising=False)
    result = pytester.runpytest_inprocess("-p", "skip_guard")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["NOT ALLOWED  test_ray_area.py: *", "*with PROEX_STRICT_SKIPS=1 (CI) this fails*"])


def test_allow_listed_skip_passes_and_a_reason_is_required(inner, monkeypatch):
    pytester, allow = inner
    monkeypatch.setenv(skip_guard.STRICT_ENV, "1")
    allow.write_text("test_ray_area.py -- the guard's own test module\n")
    result = pytester.runpytest_inprocess("-p", "skip_guard")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["allowed  test_ray_area.py: *[[]allowed: the guard's own test module[]]"])
    allow.write_text("test_ray_area.py\n")
    with pytest.raises(pytest.UsageError, match=r"allow\.txt:1: .*PATTERN -- reason"):
        skip_guard.read_allowlist(allow)


def test_the_project_allowlist_parses():
    assert all(reason for _, reason in skip_guard.read_allowlist(skip_guard.ALLOWLIST))
