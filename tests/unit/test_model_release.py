"""The release of Spark Connect models (lakehouse/session.py), without a server: a dropped model is
released on the releaser's thread, pyspark's own finalizer never calls the server for a managed
model, and closing is bounded however long the server takes to answer."""
from __future__ import annotations

import gc
import threading
import time

from pyspark.ml.util import RemoteModelRef

from lakehouse.session import _ModelReleaser


class FakeClient:
    def __init__(self, block: threading.Event | None = None) -> None:
        self.deleted: list[list[str]] = []
        self.block = block

    def _delete_ml_cache(self, ids: list[str]) -> list[str]:
        if self.block is not None:
            self.block.wait()
        self.deleted.append(list(ids))
        return list(ids)


class FakeSession:
    is_stopped = False

    def __init__(self, client: FakeClient) -> None:
        self.client = client


class FakeModel:
    """What pyspark's Connect models are to the releaser: a `_java_obj` holding a RemoteModelRef,
    released by `JavaWrapper.__del__` (try_remote_del -> release_ref)."""

    def __init__(self, ref_id: str) -> None:
        self._java_obj = RemoteModelRef(ref_id)

    def __del__(self) -> None:
        self._java_obj.release_ref()


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_a_dropped_model_is_released_on_the_releaser_thread_not_by_pyspark(monkeypatch):
    calls = []
    # pyspark's own release path, which must not be taken for a managed model.
    monkeypatch.setattr("pyspark.ml.util.del_remote_cache", lambda ref_id: calls.append(ref_id))
    client = FakeClient()
    releaser = _ModelReleaser()
    model = releaser.manage(FakeModel("m-1"), FakeSession(client))
    copy_ref = model._java_obj  # a copy of a model shares its ref (JavaParams.copy)
    del model
    gc.collect()
    time.sleep(0.1)
    assert client.deleted == [] and calls == []  # the ref is still in use
    del copy_ref
    gc.collect()
    assert wait_until(lambda: client.deleted == [["m-1"]])
    assert calls == []
    assert releaser.close(lambda: None, time.monotonic() + 5)


def test_close_releases_what_is_alive_in_one_call_then_runs_what_it_is_given():
    client = FakeClient()
    releaser = _ModelReleaser()
    session = FakeSession(client)
    models = [releaser.manage(FakeModel(f"m-{i}"), session) for i in range(3)]
    releaser.manage(models[0], session)  # managing twice holds once
    order = []
    assert releaser.close(lambda: order.append(list(client.deleted)), time.monotonic() + 5)
    assert order == [[["m-0", "m-1", "m-2"]]]
    del models
    gc.collect()
    time.sleep(0.1)
    assert client.deleted == [["m-0", "m-1", "m-2"]]  # released once: their finalizers were detached


def test_close_is_bounded_when_the_server_does_not_answer():
    never = threading.Event()
    releaser = _ModelReleaser()
    model = releaser.manage(FakeModel("m-stuck"), FakeSession(FakeClient(block=never)))
    ran = []
    started = time.monotonic()
    assert not releaser.close(lambda: ran.append(True), time.monotonic() + 0.5)
    assert time.monotonic() - started < 2.0
    assert ran == []
    never.set()  # let the daemon thread finish
    del model


def test_strays_are_taken_over():
    client = FakeClient()
    releaser = _ModelReleaser()
    stray = FakeModel("m-stray")  # fitted by code that never called manage
    assert releaser.manage_strays(FakeSession(client)) >= 1
    assert releaser.close(lambda: None, time.monotonic() + 5)
    assert any("m-stray" in ids for ids in client.deleted)
    del stray


def test_the_cli_exits_even_when_the_server_never_answers_the_release(tmp_path):
    """The last resort of lakehouse/cli.py: a release that times out (close_all returns False)
    while something would block the interpreter's exit (here a non-daemon thread that never
    ends, as pyspark's pool of ReleaseExecute calls would) must not keep the process alive; its
    output is flushed and its exit code kept."""
    import subprocess
    import sys

    script = f"""
import sys, threading
import pyspark  # the CLI releases Spark only in a process that imported it
import lakehouse.session
lakehouse.session.close_all = lambda timeout=None: False
threading.Thread(target=threading.Event().wait).start()  # would block the exit for ever
from lakehouse.cli import main
sys.argv = ["lakehouse", "generate", "--ratings", "60", "--users", "5", "--movies", "20", "--out", {str(tmp_path)!r}]
sys.exit(main())
"""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "did not answer" in done.stdout and "Synthetic ml-100k data" in done.stdout
    assert time.monotonic() - started < 60
