"""Bursts of manifests parsed and admitted across worker processes (`provider.bulk`) give
exactly what the same work in-process gives."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from portico.pids import alive
from portico.provider.apiserver import APIServerEmulation, parse_and_check
from portico.provider.bulk import BULK, BULK_BYTES, BulkPool, stop_left_helpers
from portico.provider.files import FileProvider


def route(i: int, valid: bool = True) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": f"r{i}", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"r{i}.example.com" if valid else "Bad_Host"],
                     "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]}}


def test_a_burst_across_processes_is_what_it_is_in_process(tmp_path: Path) -> None:
    count = BULK + 36
    for i in range(count):  # every 10th route invalid: its error, file and line, come back too
        (tmp_path / f"r{i:03d}.yaml").write_text(yaml.safe_dump(route(i, valid=i % 10 != 3)))
    (tmp_path / "list.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List", "items": [route(1000 + i) for i in range(count)]}))
    pool = BulkPool(workers=2)
    try:
        results = []
        for p in (pool, BulkPool(workers=1)):
            counter = itertools.count()
            provider = FileProvider([tmp_path], pool=p)
            api = APIServerEmulation(provider, clock=lambda: "2026-01-01T00:00:00Z",
                                     new_uid=lambda c=counter: f"uid-{next(c)}", pool=p)
            event = provider.scan()
            results.append((event, api.admit(event)))
        assert pool.used == 2  # the files, then the checks
        (loaded, admitted), (loaded_alone, admitted_alone) = results
        assert loaded == loaded_alone and len(loaded.upserts) == 2 * count
        assert admitted == admitted_alone
        assert len(admitted.upserts) == 2 * count - 10 and len(admitted.errors) == 10
    finally:
        pool.close()


def test_a_burst_parsed_and_checked_in_one_pass_is_what_it_is_in_process(tmp_path: Path) -> None:
    """Issue 30 item 5: standalone mode's workers check each document as a new object in
    the pass that parses it (`parse_and_check`): one round trip to the workers, not two.
    What is admitted is what the same files give in-process: objects, metadata, errors
    with file and line. Objects the emulation already holds are checked again against
    their accepted version (transition rules, generation): changed files give what they
    give in-process too."""
    count = BULK + 36

    def write(generation: int) -> None:
        for i in range(count):  # every 10th route invalid at first, then every 10th of the others
            valid = i % 10 != (3 if generation == 1 else 4)
            doc = route(i, valid=valid)
            doc["spec"]["rules"][0]["backendRefs"][0]["port"] = 80 + generation
            (tmp_path / f"r{i:03d}.yaml").write_text(yaml.safe_dump(doc))

    write(1)
    pool = BulkPool(workers=2)
    try:
        runs = []
        for p, loader in ((pool, parse_and_check), (BulkPool(workers=1), None)):
            counter = itertools.count()
            provider = FileProvider([tmp_path], pool=p, **({"loader": loader} if loader else {}))
            api = APIServerEmulation(provider, clock=lambda: "2026-01-01T00:00:00Z",
                                     new_uid=lambda c=counter: f"uid-{next(c)}", pool=p)
            runs.append((provider, api))
        first = [api.admit(provider.scan()) for provider, api in runs]
        assert pool.used == 1  # parsed and checked in one pass
        assert first[0] == first[1]
        assert len(first[0].upserts) == count - 10 and len(first[0].errors) == 10
        assert {e.line for e in first[0].errors} == {8}  # (the hostname's line)
        write(2)
        second = [api.admit(provider.scan()) for provider, api in runs]
        assert pool.used == 3  # parsed (checks of new objects only), then checked against the old
        assert second[0] == second[1]
        generations = {d.raw["metadata"]["name"]: d.raw["metadata"]["generation"] for d in second[0].upserts}
        assert generations["r0"] == 2 and generations["r3"] == 1  # changed; new (invalid before)
    finally:
        pool.close()


def _manager_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "ExecutorManagerThread" in type(t).__name__]


def test_close_waits_for_the_pool_to_end() -> None:
    """Issue 31 item 6: close() shut the pool down without waiting, so its manager thread
    was still closing its wake-up pipe when concurrent.futures' exit hook wrote to it
    ("OSError: Bad file descriptor" after about 2 of 5 SIGTERMs). Now nothing of the
    pool runs once close() returns."""
    pool = BulkPool(workers=2)
    pool.start()
    assert pool._executor_or_none() is not None
    workers = [p for p in pool.helpers if p != os.getpid()]
    assert workers and _manager_threads()
    pool.close()
    assert not _manager_threads()


def test_a_pool_closed_while_starting_is_not_started() -> None:
    pool = BulkPool(workers=2)
    pool.close()
    pool.start()
    time.sleep(0.2)
    assert pool._executor_or_none() is None and not pool.helpers


def _orphan(code: str) -> int:
    """The pid of a process running `code` whose parent has exited, as a dead instance's
    helpers are."""
    spawn = (f"import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', {code!r}], "
             "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")
    return int(subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True, check=True).stdout)


def _gone(pid: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_helpers_a_dead_instance_left_are_stopped(tmp_path: Path) -> None:
    """Issue 31 item 4: a new instance stops the helpers a dead one recorded (only
    processes running multiprocessing's code: the pid may have been reused). Never its
    own: `portico run` starts its helpers before it reads the record (issue 30 item 5),
    and one of them may have a pid the dead instance's had."""
    helper = _orphan("import multiprocessing, time; time.sleep(60)")
    other = _orphan("import time; time.sleep(60)")
    ours = subprocess.Popen([sys.executable, "-c", "import multiprocessing, time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        record = tmp_path / "helpers.json"
        record.write_text(json.dumps({"owner": dead.pid, "pids": [helper, other, ours.pid]}))
        stop_left_helpers(record)
        assert _gone(helper)
        assert alive(other)  # not a helper: left alone
        assert ours.poll() is None  # this process's own: left alone
        assert not record.exists()
        record.write_text(json.dumps({"owner": other, "pids": [other]}))
        stop_left_helpers(record)  # its owner runs: not ours to stop
        assert alive(other)
    finally:
        for pid in (helper, other):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        ours.kill()
        ours.wait()


def test_a_few_large_files_are_bulk_too(tmp_path: Path) -> None:
    """Fewer files than BULK but BULK_BYTES between them (Lists of many routes, as a
    directory of a 10,000-route configuration) are parsed by the workers, to the same
    result; one file alone, or small ones, stay in-process."""
    for f in range(3):
        (tmp_path / f"list{f}.yaml").write_text(yaml.safe_dump(
            {"apiVersion": "v1", "kind": "List", "items": [route(f * 1000 + i) for i in range(500)]}))
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) >= BULK_BYTES
    pool = BulkPool(workers=2)
    try:
        loaded = FileProvider([tmp_path], pool=pool).scan()
        assert pool.used == 1
        assert loaded == FileProvider([tmp_path], pool=BulkPool(workers=1)).scan()
        assert len(loaded.upserts) == 1500
        (tmp_path / "list1.yaml").unlink()
        (tmp_path / "list2.yaml").unlink()
        FileProvider([tmp_path], pool=pool).scan()  # one file: in-process
        assert pool.used == 1
    finally:
        pool.close()


def test_workers_do_not_run_the_control_planes_main_script(tmp_path: Path) -> None:
    """Issue 30 item 5: multiprocessing prepares each worker by importing the parent's main
    script again (as `__mp_main__`): the `portico` script's is the whole CLI, 0.3 s per
    worker on a cold start's path. The workers start, and work, without it."""
    marker = tmp_path / "imported"
    script = tmp_path / "main.py"
    script.write_text(f"""
import os, sys
if __name__ != "__main__":  # imported again by a worker
    with open({str(marker)!r}, "a") as f:
        f.write(__name__ + "\\n")
from portico.provider.bulk import BulkPool, load_files

if __name__ == "__main__":
    pool = BulkPool(workers=2)
    pool.start()
    try:
        assert pool._executor_or_none() is not None
        results = pool.map(load_files, [sys.argv[1]] * 4, bulk=True)
        print(pool.used, [len(r.documents) for r in results])
    finally:
        pool.close()
""")
    manifest = tmp_path / "routes.yaml"
    manifest.write_text(yaml.safe_dump_all([route(1), route(2)]))
    out = subprocess.run([sys.executable, str(script), str(manifest)], capture_output=True, text=True, timeout=120,
                         check=True, cwd=tmp_path, env={**os.environ, "PYTHONSAFEPATH": "1"})
    assert not marker.exists(), marker.read_text()
    assert out.stdout.strip() == "1 [2, 2, 2, 2]", out
