"""Access rules: parsing, evaluation at a given time in a given zone (DST both ways, overnight windows,
validity dates), the tamper counter, storage in the gallery (with migration) and `people schedule`."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge_verify import access, cli
from edge_verify.access import AccessRule, TamperWatch, check, make_rule, parse_schedule
from edge_verify.errors import ScheduleError, UnknownPersonError
from edge_verify.gallery import Gallery

PARIS = ZoneInfo("Europe/Paris")
NY = ZoneInfo("America/New_York")


def at(zone: ZoneInfo, *args: int) -> datetime:
    """A local wall time in ``zone``, as the aware UTC instant the caller would pass."""
    return datetime(*args, tzinfo=zone).astimezone(UTC)


def test_parse_and_format_round_trip() -> None:
    w = parse_schedule("mon-fri 07:00-19:00;  Saturday 09:00-12:00 13:00-17:00; Fri-Mon 22:00-06:00")
    text = access.format_schedule(w)
    assert text == "Mon-Fri 07:00-19:00; Sat 09:00-12:00 13:00-17:00; Fri-Mon 22:00-06:00"
    assert parse_schedule(text) == w
    assert access.format_schedule(parse_schedule("daily 00:00-24:00")) == "daily 00:00-24:00"
    assert access.format_schedule(parse_schedule("Mon,Wed,Fri 08:00-09:00")) == "Mon,Wed,Fri 08:00-09:00"
    assert access.format_schedule(parse_schedule("Sat-Mon 08:00-09:00")) == "Sat-Mon 08:00-09:00"


def test_rule_texts_are_the_inverse_of_make_rule() -> None:
    assert AccessRule().texts() == (None, None, None)
    for texts in [("Mon-Fri 07:00-19:00", None, None), (None, "2025-03-01", "2025-12-31"),
                  ("daily 22:00-06:00", "2025-03-01T08:30", "2025-12-31T18:00")]:
        rule = make_rule(*texts)
        assert rule.texts() == texts and make_rule(*rule.texts()) == rule
    rule = make_rule("Sat 09:00-13:00", "2025-03-01", "2025-12-31")
    assert rule.describe() == "Sat 09:00-13:00, from 2025-03-01, until 2025-12-31"


@pytest.mark.parametrize("bad, message", [
    ("", "empty schedule"), ("Mon-Fri", "expected DAYS"), ("Funday 07:00-08:00", "unknown day"),
    ("Mon 7-8", "expected a time range"), ("Mon 24:00-08:00", "bad time"), ("Mon 07:60-08:00", "bad time"),
    ("Mon 08:00-08:00", "start and end at the same time"), ("Mon 25:00-26:00", "bad time"),
])
def test_bad_schedules_say_what_is_wrong(bad: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(bad)


def test_weekly_window_in_local_time() -> None:
    rule = make_rule("Mon-Fri 07:00-19:00")
    # Monday 2025-03-03: 06:59 no, 07:00 yes, 18:59 yes, 19:00 no; Saturday no
    assert not check(rule, at(PARIS, 2025, 3, 3, 6, 59), PARIS).allowed
    assert check(rule, at(PARIS, 2025, 3, 3, 7, 0), PARIS).allowed
    assert check(rule, at(PARIS, 2025, 3, 3, 18, 59), PARIS).allowed
    d = check(rule, at(PARIS, 2025, 3, 3, 19, 0), PARIS)
    assert not d.allowed and d.reason == "outside_schedule" and "Mon-Fri 07:00-19:00" in d.detail
    assert not check(rule, at(PARIS, 2025, 3, 8, 12, 0), PARIS).allowed
    # the same instant is 08:00 in Paris but 02:00 in New York: the zone decides
    instant = at(PARIS, 2025, 3, 3, 8, 0)
    assert check(rule, instant, PARIS).allowed and not check(rule, instant, NY).allowed
    with pytest.raises(ValueError, match="aware"):
        check(rule, datetime(2025, 3, 3, 8, 0), PARIS)


def test_dst_keeps_wall_clock_windows() -> None:
    rule = make_rule("daily 07:00-19:00")
    # Paris: 07:00 local is 06:00 UTC in winter and 05:00 UTC in summer; the rule follows the wall clock
    assert check(rule, datetime(2025, 3, 29, 6, 0, tzinfo=UTC), PARIS).allowed  # Sat, CET: 07:00
    assert not check(rule, datetime(2025, 3, 30, 4, 30, tzinfo=UTC), PARIS).allowed  # Sun, CEST: 06:30
    assert check(rule, datetime(2025, 3, 30, 5, 0, tzinfo=UTC), PARIS).allowed  # Sun, CEST: 07:00
    # spring forward: 02:00-03:00 does not exist on 2025-03-30 in Paris; the window is empty that day
    night = make_rule("daily 02:00-03:00")
    t = datetime(2025, 3, 30, 0, 0, tzinfo=UTC)
    hits = [check(night, t + timedelta(minutes=m), PARIS).allowed for m in range(0, 180)]
    assert not any(hits)
    # fall back: 02:00-03:00 happens twice on 2025-10-26; both are inside, two hours in all
    t = datetime(2025, 10, 25, 23, 0, tzinfo=UTC)
    hits = [check(night, t + timedelta(minutes=m), PARIS).allowed for m in range(0, 240)]
    assert sum(hits) == 120


def test_overnight_window_belongs_to_the_day_it_starts() -> None:
    rule = make_rule("Fri 22:00-06:00")
    assert check(rule, at(PARIS, 2025, 3, 7, 23, 0), PARIS).allowed  # Friday night
    assert check(rule, at(PARIS, 2025, 3, 8, 5, 59), PARIS).allowed  # Saturday early
    assert not check(rule, at(PARIS, 2025, 3, 8, 6, 0), PARIS).allowed
    assert not check(rule, at(PARIS, 2025, 3, 7, 5, 0), PARIS).allowed  # Friday early: Thursday's night


def test_validity_dates_are_local_and_inclusive() -> None:
    rule = make_rule(None, "2025-03-01", "2025-03-31")
    assert not check(rule, at(PARIS, 2025, 2, 28, 23, 59), PARIS).allowed
    d = check(rule, at(PARIS, 2025, 2, 28, 23, 59), PARIS)
    assert d.reason == "outside_schedule" and "not valid before 2025-03-01" in d.detail
    assert check(rule, at(PARIS, 2025, 3, 1, 0, 0), PARIS).allowed
    assert check(rule, at(PARIS, 2025, 3, 31, 23, 59), PARIS).allowed
    assert not check(rule, at(PARIS, 2025, 4, 1, 0, 0), PARIS).allowed
    timed = make_rule(None, None, "2025-03-31T18:00")
    assert check(timed, at(PARIS, 2025, 3, 31, 17, 59), PARIS).allowed
    assert not check(timed, at(PARIS, 2025, 3, 31, 18, 0), PARIS).allowed
    assert check(AccessRule(), at(PARIS, 1999, 1, 1, 3, 0), PARIS).allowed
    with pytest.raises(ScheduleError, match="not after"):
        make_rule(None, "2025-04-01", "2025-03-01")
    with pytest.raises(ScheduleError, match="bad date"):
        make_rule(None, "tomorrow")
    with pytest.raises(ScheduleError, match="without a UTC offset"):
        make_rule(None, "2025-03-01T10:00+02:00")


def test_zone_names() -> None:
    assert access.local_zone("Europe/Paris") == PARIS
    with pytest.raises(ScheduleError, match="unknown time zone"):
        access.local_zone("Mars/Olympus")
    assert access.local_zone() is not None


def test_tamper_watch_counts_suspicious_events_in_a_window() -> None:
    w = TamperWatch(3, 60.0)
    assert [w.observe(k, t) for k, t in [("unknown_face", 0), ("granted", 1), ("denied", 10)]] == [False] * 3
    assert w.observe("spoof", 59.0)  # the third within 60 s
    assert not w.observe("denied", 60.0)  # the count starts again
    assert not w.observe("denied", 200.0) and not w.observe("denied", 300.0)  # too far apart


def _gallery(path: Path) -> Gallery:
    g = Gallery(path, "a" * 64)
    x = np.random.default_rng(0).normal(size=(1, 128)).astype(np.float32)
    g.add("alice", x / np.linalg.norm(x))
    return g


def test_gallery_stores_rules_and_forget_removes_them(state_dir: Path) -> None:
    g = _gallery(state_dir)
    assert g.access("alice").unrestricted and g.access_rules() == {}
    rule = make_rule("Mon-Fri 07:00-19:00", "2025-03-01", "2025-12-31")
    g.set_access("alice", rule)
    assert g.access("alice") == rule and g.access_rules() == {"alice": rule}
    assert Gallery(state_dir, "a" * 64).access("alice") == rule  # persisted
    g.set_access("alice", AccessRule())
    assert g.access_rules() == {}
    g.set_access("alice", rule)
    g.forget("alice")
    con = sqlite3.connect(state_dir / "gallery.sqlite3")
    assert con.execute("SELECT COUNT(*) FROM access_rules").fetchone() == (0,)
    with pytest.raises(UnknownPersonError):
        g.set_access("bob", rule)
    with pytest.raises(UnknownPersonError):
        g.access("bob")


def test_an_older_gallery_gets_the_rules_table(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    con = sqlite3.connect(state_dir / "gallery.sqlite3")
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created TEXT NOT NULL);
        CREATE TABLE templates (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id)
            ON DELETE CASCADE, embedding BLOB NOT NULL, model_sha256 TEXT NOT NULL, created TEXT NOT NULL);
        INSERT INTO people VALUES (1, 'alice', '2024-01-01T00:00:00+00:00');
        INSERT INTO templates VALUES (1, 1, zeroblob(128), 'aaaa', '2024-01-01T00:00:00+00:00');
    """)
    con.commit()
    con.close()
    g = Gallery(state_dir, "a" * 64)
    assert [p.name for p in g.people()] == ["alice"]
    g.set_access("alice", make_rule("Sat 09:00-12:00"))
    assert access.format_schedule(g.access("alice").windows) == "Sat 09:00-12:00"


def test_people_schedule_command(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _gallery(state_dir).close()
    base = ["people", "schedule", "alice"]
    where = ["--state-dir", str(state_dir)]
    assert cli.main([*base, *where]) == 0
    assert capsys.readouterr().out.strip() == "alice: any time"
    assert cli.main([*base, "Mon-Fri 07:00-19:00", "--until", "2025-12-31", *where]) == 0
    assert capsys.readouterr().out.strip() == "alice: Mon-Fri 07:00-19:00, until 2025-12-31"
    assert cli.main(["people", "schedule", "ALICE", "--from", "2025-01-01", *where]) == 0  # the same key; the
    # other parts stay
    assert capsys.readouterr().out.strip() == "alice: Mon-Fri 07:00-19:00, from 2025-01-01, until 2025-12-31"
    assert cli.main([*base, "any", "--until", "", *where]) == 0
    assert capsys.readouterr().out.strip() == "alice: any time, from 2025-01-01"
    assert cli.main([*base, "--clear", *where]) == 0
    assert capsys.readouterr().out.strip() == "alice: any time"
    assert cli.main([*base, "Funday 07:00-08:00", *where]) == 2
    assert "unknown day 'Funday'" in capsys.readouterr().err
    assert cli.main(["people", "schedule", "bob", "--state-dir", str(state_dir)]) == 2
