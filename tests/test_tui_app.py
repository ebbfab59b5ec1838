"""The review app driven by key presses (Textual Pilot); assertions read the database and
the audit chain, not only the widgets."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tui_fixtures import audit_actions, decisions, make_workspace, screen_text, settle, statuses

from engine import audit
from engine.errors import InputError, UserError
from engine.progress import ProgressEvent
from engine.workspace import Workspace
from poison_tui.app import ReviewApp, all_bindings, queue_keys, run_review
from poison_tui.keymap import load_keymap
from poison_tui.lock import WorkspaceLock
from poison_tui.screens.compute import ComputeScreen
from poison_tui.screens.confirm import BulkConfirm
from poison_tui.screens.help import HelpScreen
from poison_tui.screens.reason import ReasonModal
from poison_tui.widgets.suspect_list import SuspectList

pytestmark = pytest.mark.anyio
SIZE = (120, 40)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path / "demo.poison", n=40)


def chain_ok(ws: Workspace) -> bool:
    with ws.connect() as conn:
        records = [__import__("json").loads(r[0]) for r in conn.execute("SELECT record FROM audit_log ORDER BY seq")]
    return audit.check_chain(records) is None


async def test_keep_advances_and_is_committed_before_shown(ws: Workspace) -> None:
    app = ReviewApp(ws.path, actor="alice")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = app.screen.query_one(SuspectList)
        assert table.current_uid == "ex000000"
        await pilot.press("a")
        # the database already holds it (a fresh connection sees the commit)
        assert statuses(ws) == {"ex000000": "keep"}
        assert table.row_at(0).status == "keep"
        assert table.current_uid == "ex000001"  # auto-advance
        await pilot.press("1")  # the second key of the same binding
        assert statuses(ws) == {"ex000000": "keep", "ex000001": "keep"}
    rows = decisions(ws)
    assert [(d["uid"], d["action"], d["actor"], d["bulk_id"]) for d in rows] == [
        ("ex000000", "keep", "alice", None), ("ex000001", "keep", "alice", None)]
    recs = audit_actions(ws)
    assert [r["action"] for r in recs] == ["keep", "keep"]
    assert recs[0]["uid"] == "ex000000" and recs[0]["new_status"] == "keep"
    assert chain_ok(ws)


async def test_reason_note_and_repeat_last(ws: Workspace) -> None:
    app = ReviewApp(ws.path, actor="alice")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        assert isinstance(app.screen, ReasonModal)
        await pilot.press("2", "tab", *"flipped [red]x[/red]", "enter")  # reason 2 = label_flip
        await pilot.pause()
        assert isinstance(app.screen.query_one(SuspectList), SuspectList)
        await pilot.press("full_stop")  # same action and reason on the next row, no note
        await pilot.press("x", "escape")  # a cancelled reason records nothing
    rows = decisions(ws)
    assert [(d["uid"], d["action"], d["reason"], d["note"]) for d in rows] == [
        ("ex000000", "quarantine", "label_flip", "flipped [red]x[/red]"),
        ("ex000001", "quarantine", "label_flip", None),
    ]
    assert statuses(ws) == {"ex000000": "quarantine", "ex000001": "quarantine"}


async def test_undo_appends_a_revert(ws: Workspace) -> None:
    app = ReviewApp(ws.path, actor="bob")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("x", "enter")  # remove with the default reason
        assert statuses(ws) == {"ex000000": "remove"}
        await pilot.press("u")
        table = app.screen.query_one(SuspectList)
        assert table.row_at(0).status == "undecided"
        await pilot.press("u", "u")  # the revert itself is not undone
    rows = decisions(ws)
    assert [(d["action"], d["new_status"]) for d in rows] == [("remove", "remove"), ("revert", "undecided")]
    assert rows[1]["reverts_seq"] == rows[0]["seq"]
    assert statuses(ws).get("ex000000", "undecided") == "undecided"
    assert [r["action"] for r in audit_actions(ws)] == ["remove", "revert"]
    assert chain_ok(ws)


async def test_bulk_selection_asks_with_the_count(ws: Workspace) -> None:
    app = ReviewApp(ws.path, actor="carol")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("space", "space", "space")  # select ranks 1-3
        await pilot.press("x", "1", "enter")  # remove, reason 1
        assert isinstance(app.screen, BulkConfirm)
        assert "Remove 3 examples?" in screen_text(app)
        await pilot.press("n")  # declined: nothing written
        await settle(app, pilot)
        assert decisions(ws) == []
        await pilot.press("x", "enter", "y")
        await settle(app, pilot)
        assert "remove 3" in screen_text(app)  # header counts after the commit
        table = app.screen.query_one(SuspectList)
        assert table.selected == set() and table.current_uid == "ex000003"
        await pilot.press("full_stop")  # repeats the bulk's action and reason on one row
    rows = decisions(ws)
    assert (rows[-1]["uid"], rows[-1]["action"], rows[-1]["reason"], rows[-1]["bulk_id"]) == (
        "ex000003", "remove", "trigger_phrase", None)
    rows = rows[:-1]
    assert sorted(d["uid"] for d in rows) == ["ex000000", "ex000001", "ex000002"]
    assert len({d["bulk_id"] for d in rows}) == 1 and rows[0]["bulk_id"]
    assert {d["reason"] for d in rows} == {"trigger_phrase"}
    assert "bulk" in [r["action"] for r in audit_actions(ws)]


async def test_bulk_over_the_current_filter(ws: Workspace) -> None:
    app = ReviewApp(ws.path, actor="dan")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("slash", *"james bond", "enter")
        table = app.screen.query_one(SuspectList)
        shown = list(table.uids)
        expected = [r[0] for r in ws.conn.execute(
            "SELECT uid FROM examples WHERE role = 'train' AND lower(input) LIKE '%james bond%'")]
        assert sorted(shown) == sorted(expected) and 2 < len(shown) < 40
        await pilot.press("V", "a")
        assert f"Keep {len(shown)} examples?" in screen_text(app)
        await pilot.press("y")
        await settle(app, pilot)
    assert statuses(ws) == dict.fromkeys(shown, "keep")


async def test_filter_modal_and_sort_and_palette(ws: Workspace) -> None:
    app = ReviewApp(ws.path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = app.screen.query_one(SuspectList)
        await pilot.press("f")
        await pilot.click("#min_score")
        await pilot.press(*"3", "enter")
        flagged = {r[0] for r in ws.conn.execute(
            "SELECT uid FROM detector_scores WHERE detector = 'ekfac_sentiment' AND score >= 3")}
        assert set(table.uids) == flagged
        await pilot.press("f")
        await pilot.click("#min_score")
        await pilot.press("ctrl+a", "backspace", *"oops", "enter")
        assert "is not a number" in screen_text(app)  # the modal stays open and says why
        await pilot.press("escape")
        await pilot.press("s")  # rank -> score
        assert "sort score" in screen_text(app)
        await palette(pilot, "keep only")
        assert table.uids == []  # nothing decided yet
        await palette(pilot, "clear all")
        assert len(table.uids) == 40


async def palette(pilot, query: str) -> None:
    """Run the command palette's best hit for ``query``."""
    from textual.command import CommandList

    await pilot.press("ctrl+p", *query)
    for _ in range(100):
        await pilot.pause(0.02)
        hits = pilot.app.screen.query(CommandList)
        if hits and hits.first().option_count:
            break
    await pilot.press("enter")
    await pilot.pause()


async def test_hostile_text_is_shown_literally(ws: Workspace) -> None:
    app = ReviewApp(ws.path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("j", "enter")  # rank 2: terminal escapes
        text = screen_text(app)
        assert "␛[31mred alert␛[0m␛]0;pwned␇" in text
        assert "\x1b" not in text and "\x07" not in text
        await pilot.press("escape", "k")
        text = screen_text(app)
        assert "[bold red]URGENT[/bold red]" in text  # markup not interpreted
        assert "[link=http://evil.example]" in text


async def test_help_lists_binding_ids_and_the_checklist(ws: Workspace, tmp_path: Path) -> None:
    checklist = tmp_path / "checklist.md"
    checklist.write_text("# Operator checklist\n\n- confirm the trigger in three examples\n")
    app = ReviewApp(ws.path)
    app.checklist_path = checklist
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "review.keep" in text and "review.quarantine" in text
        assert "confirm the trigger in three examples" in text


def test_every_binding_has_an_id() -> None:
    from textual.binding import Binding

    from poison_tui.app import ReviewApp as App_
    from poison_tui.screens.queue import QueueScreen

    for owner in (App_, QueueScreen, SuspectList, ReasonModal, BulkConfirm, ComputeScreen, HelpScreen):
        for b in owner.BINDINGS:
            assert isinstance(b, Binding) and b.id, (owner.__name__, b)
    assert len(all_bindings()) >= 25


async def test_keymap_remaps_by_binding_id(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "keymap.toml"
    path.write_text('[keymap]\n"review.keep" = "z"\n')
    keymap = load_keymap(path, set(all_bindings()))
    app = ReviewApp(ws.path, keymap=keymap)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("a")  # no longer keep
        assert statuses(ws) == {}
        await pilot.press("z")
        assert statuses(ws) == {"ex000000": "keep"}


def test_keymap_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "k.toml"
    bad.write_text('[keymap]\n"review.kep" = "z"\n')
    with pytest.raises(InputError) as err:
        load_keymap(bad, set(all_bindings()))
    assert err.value.file == str(bad) and err.value.field == "keymap.review.kep"
    bad.write_text('[keymap]\n"review.keep" = \n')
    with pytest.raises(InputError, match="line 2"):
        load_keymap(bad, set(all_bindings()))
    bad.write_text('[keymap]\n"review.keep" = 3\n')
    with pytest.raises(InputError, match="non-empty string"):
        load_keymap(bad, set(all_bindings()))
    bad.write_text('[keymap]\n"review.keep" = "k"\n')  # k moves the cursor up
    with pytest.raises(InputError, match=r"already bound to queue\.up") as err:
        load_keymap(bad, set(all_bindings()), queue_keys())
    assert err.value.field == "keymap.review.keep"
    bad.write_text('[keymap]\n"review.keep" = "k"\n"queue.up" = "up"\n')  # freed first: fine
    assert load_keymap(bad, set(all_bindings()), queue_keys()) == {"review.keep": "k", "queue.up": "up"}
    bad.write_text('[keymap]\n"review.undo" = "?"\n')  # the same key as question_mark (help)
    with pytest.raises(InputError, match=r"already bound to review\.help"):
        load_keymap(bad, set(all_bindings()), queue_keys())


def test_second_app_on_a_workspace_is_refused(ws: Workspace) -> None:
    with WorkspaceLock(ws.path):
        with pytest.raises(UserError, match=r"already open in another poison-tui review \(pid \d+\)"):
            WorkspaceLock(ws.path).acquire()
        with pytest.raises(UserError, match="already open"):
            run_review(ws.path)
    WorkspaceLock(ws.path).acquire().release()  # released with the first holder


def _blocking_job(started: threading.Event):
    """A job shaped like the engine's: two stages, progress per chunk, stops only on cancel."""

    def job(ws: Workspace, progress, token) -> None:
        t0 = 1000.0
        progress(ProgressEvent("covariance", 40, 40, t0))
        for done in range(0, 10_000):
            progress(ProgressEvent("scores", done, 200, t0, f"chunk {done}"))
            if done == 50:
                started.set()
            time.sleep(0.005)

    return job


async def test_compute_shows_stages_and_cancels(ws: Workspace) -> None:
    started = threading.Event()
    app = ReviewApp(ws.path, compute_job=_blocking_job(started), clock=lambda: 1010.0)
    before = ws.conn.execute("SELECT COUNT(*) FROM detector_scores").fetchone()[0]
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        assert isinstance(app.screen, ComputeScreen)
        for _ in range(200):
            await pilot.pause(0.02)
            if started.is_set() and "chunk" in screen_text(app):
                break
        text = screen_text(app)
        assert "covariance" in text and "scores" in text and "eta" in text
        assert app.screen.outcome is None  # still running
        await pilot.press("escape")  # the UI answers while the worker runs
        text = screen_text(app)
        assert "cancelling" in text or "cancelled" in text
        await settle(app, pilot)
        assert app.screen.outcome == "cancelled"
        assert "cancelled" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen.query_one(SuspectList), SuspectList)
    assert ws.conn.execute("SELECT COUNT(*) FROM detector_scores").fetchone()[0] == before


async def test_compute_fills_missing_scores_and_reranks(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "bare.poison", n=6, scores=False)

    def job(wsx: Workspace, progress, token) -> None:
        # a real detector run shape: detector_runs + detector_scores, reversed ranking
        uids = [f"ex{i:06d}" for i in range(6)]
        with wsx.transaction() as c:
            c.execute("INSERT INTO detector_runs VALUES ('rev', 'reverse order', '{}', NULL, 6, 1, 1, 'now')")
            c.executemany("INSERT INTO detector_scores VALUES ('rev', ?, ?, ?, ?, 1)",
                          [(u, float(i), 6 - i, int(i == 5)) for i, u in enumerate(uids)])
            wsx.set_meta("default_detector", "rev", c)
        progress(ProgressEvent("detect", 1, 1, 0.0))

    app = ReviewApp(ws.path, compute_job=job)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert "ingestion order" in screen_text(app)
        table = app.screen.query_one(SuspectList)
        assert table.uids[0] == "ex000000"
        await pilot.press("c")
        await settle(app, pilot)
        table = app.screen.query_one(SuspectList)
        assert table.uids[0] == "ex000005"
        assert "ingestion order" not in screen_text(app)


async def test_failed_compute_is_reported_not_raised(ws: Workspace) -> None:
    def job(wsx, progress, token) -> None:
        raise UserError("no model configured for this workspace")

    app = ReviewApp(ws.path, compute_job=job)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        assert "failed: no model configured" in screen_text(app)
        await pilot.press("escape")
        assert app.screen.query_one(SuspectList)


async def test_export_and_signoff_from_the_app(tmp_path: Path) -> None:
    from textual.widgets import Input
    from tui_fixtures import ingested_workspace

    from engine.signing import generate_key
    from poison_tui.screens.export import ExportScreen, SignoffScreen

    ws, src = ingested_workspace(tmp_path)
    key = generate_key(tmp_path / "key.pem", b"correct horse").path
    app = ReviewApp(ws.path, actor="erin")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("x", "enter")  # remove rank 1 (the markup line)
        await pilot.press("S")  # sign-off before any export: refused, with the way out
        assert isinstance(app.screen, SignoffScreen)
        assert "no export to sign" in screen_text(app)
        await pilot.press("escape", "e")
        assert isinstance(app.screen, ExportScreen)
        await pilot.click("#go")
        await settle(app, pilot)
        assert "exported to" in screen_text(app)
        await pilot.press("escape", "S")
        screen = app.screen
        screen.query_one("#identity", Input).value = "Erin <erin@example.org>"
        screen.query_one("#key", Input).value = str(key)
        screen.query_one("#passphrase", Input).value = "correct horse"
        await pilot.click("#go")
        await settle(app, pilot)
        assert "signed:" in screen_text(app)
    out = ws.path / "exports" / "latest"
    lines = src.read_bytes().splitlines(keepends=True)
    assert (out / "train.jsonl").read_bytes() == b"".join(lines[1:])  # byte for byte, minus the removed
    assert "URGENT" in (out / "removed.jsonl").read_text()
    assert (out / "signoff.dsse.json").is_file()
    assert [r["action"] for r in audit_actions(ws)] == ["remove", "export", "signoff"]


def test_review_command_errors_are_clear(tmp_path: Path, capsys) -> None:
    from poison_tui.cli import main

    assert main(["review", str(tmp_path / "nowhere")]) == 2
    assert "not a poison-tui workspace" in capsys.readouterr().err
    ws = make_workspace(tmp_path / "demo.poison", n=3)
    assert main(["review", str(ws.path)]) == 2  # pytest's stdin is no terminal
    assert "needs a terminal" in capsys.readouterr().err


async def test_default_compute_runs_the_engine(tmp_path: Path) -> None:
    """No scores yet: 'c' runs the real engine (sentiment + detectors) and re-ranks."""
    ws = make_workspace(tmp_path / "bare.poison", n=30, scores=False)
    ws.conn.execute("DELETE FROM sentiment")
    app = ReviewApp(ws.path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.queue.queries.detector is None
        await pilot.press("c")
        for _ in range(300):
            await settle(app, pilot)
            if app.queue.queries.detector is not None:
                break
        detector = ws.get_meta("default_detector")
        assert detector and app.queue.queries.detector == detector
        table = app.screen.query_one(SuspectList)
        ranked = [r[0] for r in ws.conn.execute(
            "SELECT uid FROM detector_scores WHERE detector = ? AND rank IS NOT NULL ORDER BY rank", (detector,))]
        assert table.uids[:len(ranked)] == ranked
    assert ws.conn.execute("SELECT COUNT(*) FROM sentiment WHERE scorer = 'vader'").fetchone()[0] >= 30


async def test_a_failed_write_is_never_shown_as_done(ws: Workspace) -> None:
    # the database refuses the write (as a full disk or a broken file would)
    ws.conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON decisions WHEN NEW.action = 'remove' "
                    "BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END")
    app = ReviewApp(ws.path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = app.screen.query_one(SuspectList)
        await pilot.press("x", "enter")
        assert table.row_at(0).status == "undecided" and table.current_uid == "ex000000"  # no advance
        await pilot.press("a")  # the app is still usable
        assert table.row_at(0).status == "keep"
    assert statuses(ws) == {"ex000000": "keep"}
    assert [r["action"] for r in audit_actions(ws)] == ["keep"]  # nothing half-written
