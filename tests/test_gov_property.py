"""Property: for any sequence of decisions and undos, replaying the audit log reproduces the
export byte for byte, and the state matches a plain model of undo as a stack."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from gov_fixtures import jsonl_workspace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import audit
from engine.decisions import ACTIONS, REASON_CODES, current_states, decide, replay, undo
from engine.export import export
from engine.verify import verify

N = 8

decide_op = st.tuples(
    st.just("decide"),
    st.lists(st.integers(0, N - 1), min_size=1, max_size=4),
    st.sampled_from(ACTIONS),
    st.none() | st.sampled_from(sorted(REASON_CODES)),
    st.none() | st.text(max_size=12),
    st.booleans(),
)
ops = st.lists(decide_op | st.just(("undo",)), max_size=10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, undecided=st.sampled_from(["keep", "exclude"]))
def test_replaying_the_log_reproduces_the_export(ops: list[tuple], undecided: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws, src, uids = jsonl_workspace(Path(tmp), n=N)
        model: dict[str, tuple[str, str | None, str | None]] = {}
        stack: list[list[tuple[str, tuple[str, str | None, str | None]]]] = []
        for op in ops:
            if op[0] == "undo":
                undo(ws)
                if stack:
                    for uid, prior in reversed(stack.pop()):
                        model[uid] = prior
                continue
            _, picks, action, reason, note, bulk = op
            chosen = list(dict.fromkeys(uids[i] for i in picks))
            decide(ws, chosen, action, reason, note, actor="prop", bulk=bulk)
            groups = [chosen] if bulk else [[u] for u in chosen]
            for group in groups:
                stack.append([(u, model.get(u, ("undecided", None, None))) for u in group])
                for u in group:
                    model[u] = (action, reason, note or None)
        state = {u: (s.status, s.reason, s.note) for u, s in current_states(ws.conn)}
        assert {u: v for u, v in state.items() if v != ("undecided", None, None)} == {
            u: v for u, v in model.items() if v != ("undecided", None, None)}

        records = [json.loads(r) for _, r in audit.db_records(ws.conn)]
        assert audit.check_chain(records) is None
        assert {u: (s.status, s.reason, s.note) for u, s in replay(records).items()} == state

        result = export(ws, undecided=undecided)
        expected_kept = [
            line for uid, line in zip(uids, src.read_bytes().splitlines(keepends=True), strict=True)
            if state.get(uid, ("undecided",))[0] in ("keep", "undecided")
            and not (undecided == "exclude" and uid == uids[0] and state.get(uid, ("undecided",))[0] == "undecided")
        ]
        assert (result.out_dir / "train.jsonl").read_bytes() == b"".join(expected_kept)
        report = verify(ws.path)  # replays the log and compares every exported byte
        assert report.ok, report.first_problem
        assert any(c.name == "export: replay" and c.ok for c in report.checks)
        ws.close()
