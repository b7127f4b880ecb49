"""Work beside the pipeline's stages (lakehouse/beside.py): it runs before anyone waits, its
outcome and messages come back at the wait, and its failure is raised there."""
from __future__ import annotations

import threading

import pytest

from lakehouse.beside import Beside


def test_the_work_runs_before_the_wait_and_its_messages_are_printed_at_it(capsys):
    go, finished = threading.Event(), threading.Event()

    def up(say):
        assert go.wait(10), "the main thread never let the work go on"
        say("initialised the metadata database")
        finished.set()
        return "the outcome"

    beside = Beside()
    beside.start("service", up)
    go.set()  # only now may the work go on: it runs in its own thread, not inside wait()
    assert finished.wait(10), "the work did not run beside the caller"
    assert capsys.readouterr().out == ""  # nothing printed inside the stages meanwhile
    notes: list[str] = []
    assert beside.wait("service", notes, "Superset") == "the outcome"
    assert "initialised the metadata database" in capsys.readouterr().out
    assert len(notes) == 1 and notes[0].startswith("Superset started in ") and "(waited " in notes[0]


def test_a_service_already_running_is_said_so():
    beside = Beside()
    beside.start("stream", lambda say: None)  # job.detach is skipped when the stream runs
    notes: list[str] = []
    assert beside.wait("stream", notes, "the stream", lambda pid: pid is not None) is None
    assert notes[0].startswith("the stream already running")


def test_housekeeping_ran_beside_says_ran():
    beside = Beside()
    beside.start("housekeeping", lambda say: "report")
    notes: list[str] = []
    beside.wait("housekeeping", notes, "housekeeping", done="ran")
    assert notes[0].startswith("housekeeping ran in ")


def test_a_failure_is_raised_in_the_stage_that_waits():
    def up(say):
        raise RuntimeError("port 8088 is taken")

    beside = Beside()
    beside.start("superset", up)
    with pytest.raises(RuntimeError, match="port 8088 is taken"):
        beside.wait("superset", [], "Superset")
    with pytest.raises(KeyError):  # waited once: the name is gone
        beside.wait("superset", [], "Superset")
