"""DevstackEngine's reading of stack.sh output: the one line a failure gives."""

from benchbed.engines.devstack import _Run
from benchbed.server import Server

# The end of a real failing stack.sh (stable/2025.1, pip could not resolve a package).
FAILED = """\
+ ./stack.sh:main:842                      :   pip_install -U os-testr
Using python 3 to install os-testr
+ inc/python:pip_install:227               :   env http_proxy= https_proxy= no_proxy= \
PIP_FIND_LINKS= /opt/stack/data/venv/bin/pip install -U os-testr
ERROR: Cannot install os-testr because these package versions have conflicting dependencies.
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
+ inc/python:pip_install:1                 :   exit_trap
+ ./stack.sh:exit_trap:543                 :   local r=1
+ ./stack.sh:exit_trap:561                 :   echo 'Error on exit'
Error on exit
"""


def _run(text: str, state: str) -> _Run:
    run = _Run(Server(host="10.0.0.5"))
    for chunk in (text[:100], text[100:]):  # lines split across polls are joined again
        run.feed(chunk)
    run.state = state
    return run


def test_failure_names_server_function_command_and_last_lines() -> None:
    line = _run(FAILED, "1").failure(3600)
    assert "\n" not in line
    assert line.startswith("root@10.0.0.5:22: step 'stack.sh' failed: stack.sh exited 1 in "
                           "pip_install (inc/python:227: env http_proxy=")
    assert "ERROR: ResolutionImpossible" in line


def test_timeout_and_lost_runs_say_so() -> None:
    assert "did not finish within stack_timeout 60 s" in _run(FAILED, "timeout").failure(60)
    assert "ended without an exit code" in _run("", "lost").failure(60)
