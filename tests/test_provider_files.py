"""The file provider: discovery, multi-document YAML, Lists, errors, diffs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from portico.objects import ObjectKey
from portico.provider import ProviderEvent, files
from portico.provider.apiserver import APIServerEmulation
from portico.provider.files import FileProvider
from portico.provider.manifests import parse_json, parse_yaml, split_yaml

ROUTE = ObjectKey("gateway.networking.k8s.io", "HTTPRoute", "default", "r1")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_split_keeps_line_offsets() -> None:
    text = "a: 1\n---\nb: 2\n--- \nc: 3\n"
    assert [offset for offset, _ in split_yaml(text)] == [0, 1, 3]


def test_multi_document_with_lines() -> None:
    text = """# leading comment
apiVersion: v1
kind: Service
metadata: {name: s1}
---
---
# comment only above
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r1
"""
    result = parse_yaml(text, "f.yaml")
    assert result.errors == []
    assert [(d.key.kind, d.source.line) for d in result.documents] == [("Service", 2), ("HTTPRoute", 8)]
    assert result.documents[1].key == ROUTE


def test_list_items_get_their_own_lines() -> None:
    text = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: ns}
- apiVersion: v1
  kind: Service
  metadata: {namespace: ns}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c}
"""
    result = parse_yaml(text, "list.yaml")
    assert [(d.key.name, d.source.line) for d in result.documents] == [("a", 4), ("c", 10)]
    [error] = result.errors
    assert (error.line, error.path) == (7, "items[1].metadata.name")
    assert error.message == "required field is missing"


def test_bad_yaml_reports_the_error_line_and_the_rest_loads() -> None:
    text = """apiVersion: v1
kind: Service
metadata: {name: ok1}
---
apiVersion: v1
kind: Service
metadata:
  name: [unclosed
  namespace: x
---
apiVersion: v1
kind: Service
metadata: {name: ok2}
"""
    result = parse_yaml(text, "bad.yaml")
    assert [d.key.name for d in result.documents] == ["ok1", "ok2"]
    [error] = result.errors
    assert error.file == "bad.yaml"
    assert error.line == 9  # where PyYAML found the problem
    assert error.message.startswith("invalid YAML")
    assert not result.complete


def test_missing_identity_fields() -> None:
    text = """kind: Service
metadata: {name: a}
---
apiVersion: v1
metadata: {name: b}
---
apiVersion: v1
kind: Service
---
apiVersion: v1
kind: Service
metadata: {name: ""}
---
- just a list
"""
    errors = parse_yaml(text, "f.yaml").errors
    assert [(e.line, e.path) for e in errors] == [
        (1, "apiVersion"), (4, "kind"), (7, "metadata"), (10, "metadata.name"), (14, "")]


def test_timestamps_stay_strings() -> None:
    result = parse_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {d: 2024-01-01}\n", "f")
    assert result.documents[0].raw["data"]["d"] == "2024-01-01"


def test_json_documents_and_errors() -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}]}
    result = parse_json("\n" + json.dumps(doc), "f.json")
    assert [(d.key.name, d.source.line) for d in result.documents] == [("s", 2)]
    bad = parse_json('{\n  "apiVersion": "v1",\n  oops\n}', "f.json")
    assert bad.errors[0].line == 3


def test_scan_walks_recursively_and_skips_hidden_and_other_files(tmp_path: Path) -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\n"
    write(tmp_path / "a.yaml", svc % "a")
    write(tmp_path / "sub" / "deeper" / "b.yml", svc % "b")
    write(tmp_path / "c.json", json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c"}}))
    write(tmp_path / ".hidden.yaml", svc % "hidden")
    write(tmp_path / ".git" / "x.yaml", svc % "git")
    write(tmp_path / "notes.txt", svc % "txt")
    event = FileProvider([tmp_path]).scan()
    assert event.initial
    assert sorted(d.key.name for d in event.upserts) == ["a", "b", "c"]


def test_scan_diffs_against_the_previous_set(tmp_path: Path) -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec: {x: %d}\n"
    f = write(tmp_path / "a.yaml", (svc % ("a", 1)) + "---\n" + (svc % ("b", 1)))
    provider = FileProvider([tmp_path])
    provider.scan()
    again = provider.scan()
    assert not again.upserts and not again.deletes and not again.initial
    write(f, (svc % ("a", 2)) + "---\n" + (svc % ("c", 1)))
    event = provider.scan({str(f)})
    assert sorted(d.key.name for d in event.upserts) == ["a", "c"]
    assert [k.name for k in event.deletes] == ["b"]
    f.unlink()
    event = provider.scan()
    assert sorted(k.name for k in event.deletes) == ["a", "c"]


def test_broken_file_keeps_its_previous_objects(tmp_path: Path) -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\n"
    f = write(tmp_path / "a.yaml", svc % "a" + "---\n" + svc % "b")
    provider = FileProvider([tmp_path])
    provider.scan()
    write(f, svc % "a" + "---\napiVersion: v1\nkind: Service\nmetadata: {name: [b\n")
    event = provider.scan({str(f)})
    assert not event.deletes
    assert len(event.errors) == 1
    unchanged = provider.scan()  # nothing reloaded: the errors still stand
    assert unchanged.errors == event.errors and not unchanged.upserts and not unchanged.deletes
    write(f, svc % "a")
    event = provider.scan({str(f)})
    assert [k.name for k in event.deletes] == ["b"]
    assert event.errors == ()


def test_an_object_in_two_files_is_a_conflict_naming_both(tmp_path: Path) -> None:
    """Issue 23: the same object in two files was silently the later file's (a tenant's file
    could replace the platform's ReferenceGrant or Gateway). Now neither applies: the error
    names both files, the version applied before keeps serving, and removing one ends it."""
    grant = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, " \
            "namespace: infra}\nspec: {x: %s}\n"
    platform = write(tmp_path / "platform.yaml", grant % "platform")
    provider = FileProvider([tmp_path])
    [doc] = provider.scan().upserts
    tenant = write(tmp_path / "zz-tenant.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n"
                   + grant % "tenant")
    event = provider.scan({str(tenant)})
    assert [d.key.kind for d in event.upserts] == ["Service"] and not event.deletes  # the grant stays as it was
    [error] = event.errors
    assert error.file == str(tenant) and error.line == 5 and error.rule == "conflict"
    assert f"{platform}:1 and {tenant}:5" in error.message and "the version applied before keeps serving" \
        in error.message and error.object == "ReferenceGrant infra/g"
    assert provider.scan().errors == (error,)  # still there while both define it
    tenant.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
    event = provider.scan({str(tenant)})
    assert event.errors == () and not event.upserts  # the platform's grant: unchanged, still applied
    # both at once (a first start): neither is applied
    write(tmp_path / "zz-tenant.yaml", grant % "tenant")
    fresh = FileProvider([tmp_path]).scan()
    assert not [d for d in fresh.upserts if d.key == doc.key]
    assert "it is not applied" in fresh.errors[0].message


def test_single_file_path(tmp_path: Path) -> None:
    f = write(tmp_path / "one.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")
    write(tmp_path / "other.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: b}\n")
    event = FileProvider([f]).scan()
    assert [d.key.name for d in event.upserts] == ["a"]


@pytest.mark.timeout(20)
def test_watch_applies_changes_and_atomic_renames(tmp_path: Path) -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\n"
    write(tmp_path / "a.yaml", svc % "a")

    async def scenario() -> None:
        stop = asyncio.Event()
        events = FileProvider([tmp_path]).events(stop)
        first = await anext(events)
        assert [d.key.name for d in first.upserts] == ["a"]
        loop = asyncio.get_running_loop()
        # made before the watcher runs: the periodic rescan finds it
        write(tmp_path / "early.yaml", svc % "early")
        event = await asyncio.wait_for(anext(events), 5)
        assert [d.key.name for d in event.upserts] == ["early"]
        for name in ("b", "c"):
            # the conformance runner's way: write a dot-file, then rename it into place
            tmp = tmp_path / f".{name}.yaml.tmp"
            tmp.write_text(svc % name)
            started = loop.time()
            os.replace(tmp, tmp_path / f"{name}.yaml")
            event = await asyncio.wait_for(anext(events), 5)
            assert [d.key.name for d in event.upserts] == [name]
            assert loop.time() - started < 1.0
        (tmp_path / "a.yaml").unlink()
        event = await asyncio.wait_for(anext(events), 5)
        assert [k.name for k in event.deletes] == ["a"]
        stop.set()
        await events.aclose()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_a_watched_directory_removed_and_recreated_keeps_serving(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Issue 31 item 3: removing the whole manifest directory (to recreate it a moment
    later) withdrew every object in the gap. The objects now stay, logged; once the
    directory is back its files are compared as usual."""
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec: {x: %d}\n"
    root = tmp_path / "manifests"
    root.mkdir()
    write(root / "a.yaml", svc % ("a", 1))
    write(root / "b.yaml", svc % ("b", 1))

    async def scenario() -> None:
        stop = asyncio.Event()
        queue: asyncio.Queue[ProviderEvent] = asyncio.Queue()

        async def consume() -> None:
            async for event in FileProvider([root]).events(stop):
                queue.put_nowait(event)

        consumer = asyncio.create_task(consume())
        first = await asyncio.wait_for(queue.get(), 5)
        assert sorted(d.key.name for d in first.upserts) == ["a", "b"]
        shutil.rmtree(root)
        await asyncio.sleep(2.5)  # two rescans and more
        assert queue.empty(), f"withdrawn: {queue.get_nowait()}"
        assert not consumer.done()
        assert any("is gone" in r.getMessage() for r in caplog.records)
        root.mkdir()
        write(root / "a.yaml", svc % ("a", 2))  # changed; b.yaml not recreated
        seen: dict[str, list[str]] = {"upserts": [], "deletes": []}
        while seen != {"upserts": ["a"], "deletes": ["b"]}:
            event = await asyncio.wait_for(queue.get(), 5)
            seen["upserts"] += [d.key.name for d in event.upserts]
            seen["deletes"] += [k.name for k in event.deletes]
        write(root / "c.yaml", svc % ("c", 1))  # the recreated directory is watched
        event = await asyncio.wait_for(queue.get(), 5)
        assert [d.key.name for d in event.upserts] == ["c"]
        stop.set()
        await asyncio.wait_for(consumer, 5)

    with caplog.at_level(logging.WARNING, logger="portico.provider.files"):
        asyncio.run(scenario())


def test_a_watched_path_gone_keeps_its_objects_in_a_scan(tmp_path: Path) -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\n"
    root = tmp_path / "m"
    root.mkdir()
    write(root / "a.yaml", svc % "a")
    provider = FileProvider([root])
    provider.scan()
    shutil.rmtree(root)
    gone = provider.scan()
    assert not gone.deletes and not gone.upserts
    root.mkdir()
    back = provider.scan()
    assert [k.name for k in back.deletes] == ["a"]  # back, and empty: now a deletion


def test_a_file_emptied_mid_write_keeps_its_objects_and_their_generation(tmp_path: Path) -> None:
    """A writer saving in place truncates the file, then writes it: a scan between the two
    finds it empty. Read as a deletion, the route went down and came back as a new object
    (new uid, generation 1: a spec edit that kept generation 1)."""
    route = ("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r1, namespace: default}\n"
             "spec: {rules: [{backendRefs: [{name: %s, port: 80}]}]}\n")
    path = write(tmp_path / "r.yaml", route % "svc-b")
    emulation = APIServerEmulation(FileProvider([tmp_path]))
    assert emulation.provider is not None
    provider = emulation.provider
    first = emulation.admit(provider.scan())
    before = first.upserts[0].raw["metadata"]
    path.write_text("")  # truncated; the scan comes before the write
    emptied = emulation.admit(provider.scan({str(path)}))
    assert not emptied.deletes and not emptied.upserts
    path.write_text(route % "svc-a")
    edited = emulation.admit(provider.scan({str(path)}))
    assert not edited.deletes
    meta = edited.upserts[0].raw["metadata"]
    assert (meta["uid"], meta["generation"]) == (before["uid"], 2)
    assert edited.upserts[0].raw["spec"]["rules"][0]["backendRefs"][0]["name"] == "svc-a"


def test_a_file_still_empty_once_settled_is_a_deletion(tmp_path: Path) -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
    path = write(tmp_path / "a.yaml", svc)
    provider = FileProvider([tmp_path])
    provider.scan()
    path.write_text("# nothing here now\n")
    assert not provider.scan({str(path)}).deletes  # written a moment ago: read again later
    assert not provider.scan().deletes  # the periodic rescan, still within the settle time
    settled = time.time() - 2 * provider.settle_ms / 1000
    os.utime(path, (settled, settled))
    assert [k.name for k in provider.scan().deletes] == ["a"]  # the periodic rescan reads it again



FAST_PATH_CASES = [
    "apiVersion: v1\nkind: Service\nmetadata: {name: 'a', namespace: \"b\"}\n"
    "spec: {x: yes, y: ~, z: 0x1F, f: .inf, g: 1_000.5, t: 2001-12-14, s: !!str 12, q: ! 12, e: '', n: null}\n",
    "kind: List\napiVersion: v1\nitems:\n- 1\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n"
    "-\n  apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n",
    "a: |\n  text\n  more\nb: >\n  folded\nkind: Service\napiVersion: v1\nmetadata: {name: c}\n",
    "a: 1\n...\nb: 2\n",  # two documents in a chunk
    "x: &a [1]\ny: *a\n",  # anchors: PyYAML's path
    "<<: {a: 1}\nkind: x\n",  # a merge key
    "'<<': 1\nkind: y\n",  # a quoted "<<" is a plain key
    "1: x\n", "? [a]\n: 1\n", "=: 1\n", "a: {b: [\n", "# only comments\n", "---\n", "null\n", "hello\n", "[1, 2]\n",
    "a: !custom 1\n", "a: 1\na: 2\n",
]


@pytest.mark.parametrize("text", FAST_PATH_CASES)
def test_documents_built_from_events_are_those_of_the_composer(text: str) -> None:
    """The fast path (`_fast_document`) gives what PyYAML's composer and constructor give
    (keep_nodes takes their path): values and their types, lines, errors."""
    def seen(result: object) -> object:
        return ([(d.key, repr(d.raw), d.source) for d in result.documents],  # type: ignore[attr-defined]
                [(e.line, e.message, e.path) for e in result.errors], result.complete)  # type: ignore[attr-defined]

    assert seen(parse_yaml(text, "f.yaml")) == seen(parse_yaml(text, "f.yaml", keep_nodes=True))


def test_every_manifest_of_the_repository_loads_the_same_by_either_path() -> None:
    root = Path(__file__).resolve().parent.parent
    files = sorted(p for d in ("examples", "tests", "deploy") for p in (root / d).rglob("*.y*ml"))
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        fast, slow = parse_yaml(text, str(path)), parse_yaml(text, str(path), keep_nodes=True)
        assert [(d.key, repr(d.raw), d.source) for d in fast.documents] == \
            [(d.key, repr(d.raw), d.source) for d in slow.documents], path
        assert fast.errors == slow.errors, path


def test_plain_manifests_are_built_without_the_composer(monkeypatch: pytest.MonkeyPatch) -> None:
    from portico.provider import manifests

    def refused(self: object) -> None:
        raise AssertionError("composed: the fast path was not taken")

    monkeypatch.setattr(manifests._Loader, "get_single_node", refused)
    text = "kind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n"
    result = parse_yaml(text, "f.yaml")
    assert [(d.key.name, d.source.line) for d in result.documents] == [("a", 4)]


# ---------------------------------------------------------------- the watcher (inotify)


def _watching(root: Path, scenario: Callable[[AsyncIterator[ProviderEvent]], Awaitable[None]],
              **options: Any) -> None:
    async def run() -> None:
        stop = asyncio.Event()
        events = FileProvider([root], **options).events(stop)
        await anext(events)  # the initial load
        try:
            await scenario(events)
        finally:
            stop.set()
            await events.aclose()

    asyncio.run(run())


def test_a_file_written_in_place_is_read_once_closed_not_half_written(tmp_path: Path) -> None:
    """Issue 30: the watcher reports a file when its writer closes it (or renames it into
    place), not after a quiet period (`quiet_ms` is 60 s here: only a file left open waits
    for it). So a file being written is not read half-way (no passing parse error)."""
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\n"

    async def scenario(events: AsyncIterator[ProviderEvent]) -> None:
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.3)  # the watcher is watching
        with (tmp_path / "a.yaml").open("w") as f:
            f.write("apiVersion: v1\nkind: Service\nmetadata: {name: a")  # a YAML error so far
            f.flush()
            await asyncio.sleep(0.3)
            assert not pending.done(), f"read before it was closed: {pending.result()}"
            f.write("}\n")
        event = await asyncio.wait_for(pending, 5)
        assert ([d.key.name for d in event.upserts], event.errors) == (["a"], ())
        (tmp_path / "sub").mkdir()  # a directory created later is watched too
        write(tmp_path / "sub" / "b.yaml", svc % "b")
        event = await asyncio.wait_for(anext(events), 5)
        assert [d.key.name for d in event.upserts] == ["b"]

    _watching(tmp_path, scenario, quiet_ms=60_000)


def test_a_file_left_open_is_read_once_its_writer_is_quiet(tmp_path: Path) -> None:
    async def scenario(events: AsyncIterator[ProviderEvent]) -> None:
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.3)  # the watcher is watching
        with (tmp_path / "a.yaml").open("w") as f:
            f.write("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")
            f.flush()
            event = await asyncio.wait_for(pending, 5)  # still open
            assert [d.key.name for d in event.upserts] == ["a"]

    _watching(tmp_path, scenario, quiet_ms=50)


def test_without_inotify_the_tree_is_polled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "inotify_add_watch: No space left on device")

    monkeypatch.setattr(files, "Inotify", unavailable)

    async def scenario(events: AsyncIterator[ProviderEvent]) -> None:
        write(tmp_path / "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")
        event = await asyncio.wait_for(anext(events), 10)
        assert [d.key.name for d in event.upserts] == ["a"]

    with caplog.at_level(logging.WARNING, logger="portico.provider.files"):
        _watching(tmp_path, scenario)
    assert any("polling instead" in r.getMessage() for r in caplog.records)


def test_an_exact_scan_reads_only_the_files_named_and_agrees_with_a_full_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 30: with inotify the watcher names every file changed, so a scan looks at
    those alone instead of listing and stating the whole tree (a burst of 1000 files made
    1000 scans of up to 1000 files). Step by step, its events equal a full scan's."""
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec: {x: %d}\n"
    (tmp_path / "sub").mkdir()
    write(tmp_path / "a.yaml", svc % ("a", 1))
    write(tmp_path / "sub" / "b.yaml", svc % ("b", 1))
    exact, full = FileProvider([tmp_path]), FileProvider([tmp_path])
    assert exact.scan() == full.scan()
    steps: list[tuple[str, str | None]] = [
        ("c.yaml", svc % ("c", 1)),  # new
        ("a.yaml", svc % ("a", 2)),  # changed
        ("sub/d.yaml", svc % ("a", 3)),  # a conflict with a.yaml
        ("sub/b.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: [b\n"),  # broken: b kept
        ("e.yaml", "kind: Service\nmetadata: {name: e}\n"),  # an error in a file listed before sub/
        ("README.md", "not a manifest"),
        ("sub/d.yaml", None),  # the conflict ends
        ("sub/b.yaml", svc % ("b", 2)),  # mended
        ("c.yaml", None),  # deleted
    ]
    listing: list[Any] = []
    listed = files.manifest_files

    def counting(paths: Any) -> list[str]:
        listing.append(paths)
        return listed(paths)

    monkeypatch.setattr(files, "manifest_files", counting)
    for name, text in steps:
        path = tmp_path / name
        if text is None:
            path.unlink()
        else:
            write(path, text)
        listing.clear()
        by_exact = exact.scan({str(path)}, exact=True)
        assert not listing, f"{name}: the tree was listed"
        assert by_exact == full.scan(), name
    assert [d.key.name for d in exact.scan().upserts] == []  # nothing left behind
def test_the_initial_load_is_not_kept_while_waiting_for_changes(tmp_path: Path) -> None:
    """The watcher and the API-server emulation drop each event once it is passed on: the
    initial load's parsed documents held while waiting for the next change were a second
    copy of every object beside the store's (issue 30 item 6)."""
    import gc
    import weakref

    write(tmp_path / "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n")
    seen: list[weakref.ref[ProviderEvent]] = []

    class Recorded(FileProvider):
        async def events(self, stop: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
            async for event in super().events(stop):
                seen.append(weakref.ref(event))
                yield event
                del event

    async def scenario() -> None:
        stop = asyncio.Event()
        watched = FileProvider([tmp_path]).events(stop)
        first = await anext(watched)
        scanned = weakref.ref(first)
        del first
        waiting = asyncio.create_task(anext(watched))  # (the control loop asks for the next at once)
        await asyncio.sleep(0.05)
        gc.collect()
        assert scanned() is None, "the watcher keeps the initial load"
        stop.set()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await waiting
        await watched.aclose()

        stop = asyncio.Event()
        admitted = APIServerEmulation(Recorded([tmp_path])).events(stop)
        first = await anext(admitted)
        assert [d.key.name for d in first.upserts] == ["a"]
        del first
        waiting = asyncio.create_task(anext(admitted))
        await asyncio.sleep(0.05)
        gc.collect()
        assert seen and seen[0]() is None, "the emulation keeps the documents as written"
        stop.set()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await waiting
        await admitted.aclose()

    asyncio.run(scenario())
