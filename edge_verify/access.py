"""Access rules: validity dates and weekly windows per person, evaluated at a time given by the caller.

Pure: no clock, no storage (the gallery stores the rules, the caller passes the time). Rules are read in
**local wall-clock time** of one IANA time zone (``zone``): ``Mon-Fri 07:00-19:00`` means 07:00 to 19:00
on the clocks of the building, summer and winter alike. So on the day clocks go forward, a window over
the skipped hour (02:00-03:00 in Europe) is empty that day; on the day they go back, an hour that happens
twice is inside a window both times. Validity dates are local too: ``valid_until = 2025-12-31`` is valid
through the end of that day; a date with a time (``2025-12-31T18:00``) ends at that minute.

Schedule text: one or more ``DAYS HH:MM-HH:MM [HH:MM-HH:MM ...]`` separated by ``;``. DAYS is ``Mon`` ..
``Sun`` (full names accepted), a range ``Mon-Fri`` (``Fri-Mon`` wraps), a list ``Mon,Wed,Fri``, or
``daily``. ``24:00`` may end a window; a window whose end is not after its start runs past midnight
(``Fri 22:00-06:00``: Friday 22:00 to Saturday 06:00).
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError, ScheduleError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX = {d.lower(): i for i, d in enumerate(DAYS)}
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
OUTSIDE_SCHEDULE = "outside_schedule"
TAMPER_KINDS = frozenset({"unknown_face", "denied", "spoof"})


@dataclass(frozen=True)
class Window:
    """Days (0 = Monday: the day the window starts) and minutes after local midnight, ``start`` in
    0..1439, ``end`` in 1..1440; ``end <= start`` runs past midnight into the next day."""

    days: frozenset[int]
    start: int
    end: int

    def contains(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        return ((weekday in self.days and minute >= self.start)
                or ((weekday - 1) % 7 in self.days and minute < self.end))


@dataclass(frozen=True)
class AccessRule:
    """One person's rule. The default (no dates, no windows) allows any time."""

    valid_from: datetime | None = None  # local wall time, inclusive
    valid_until: datetime | None = None  # local wall time, exclusive
    windows: tuple[Window, ...] = field(default=())

    @property
    def unrestricted(self) -> bool:
        return self.valid_from is None and self.valid_until is None and not self.windows

    def texts(self) -> tuple[str | None, str | None, str | None]:
        """(schedule, valid_from, valid_until) as text, None where unset: the inverse of :func:`make_rule`."""
        return (format_schedule(self.windows) if self.windows else None,
                format_when(self.valid_from) if self.valid_from is not None else None,
                format_when(self.valid_until, end=True) if self.valid_until is not None else None)

    def describe(self) -> str:
        schedule, valid_from, valid_until = self.texts()
        parts = [schedule or "any time"]
        if valid_from is not None:
            parts.append(f"from {valid_from}")
        if valid_until is not None:
            parts.append(f"until {valid_until}")
        return ", ".join(parts)


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    reason: str | None  # None when allowed, else "outside_schedule" (the event's reason)
    detail: str  # for the log: "not valid before 2025-03-01", "outside Mon-Fri 07:00-19:00"


# -- parsing and formatting ---------------------------------------------------------------------------
def _day(token: str) -> int:
    t = token.strip().lower()
    if t in _DAY_INDEX:
        return _DAY_INDEX[t]
    if t in _FULL:
        return _FULL.index(t)
    raise ScheduleError(f"unknown day {token.strip()!r} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)")


def _days(text: str) -> frozenset[int]:
    if text.strip().lower() in ("daily", "*"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            a, b = (_day(x) for x in part.split("-", 1))
            out.update((a + i) % 7 for i in range((b - a) % 7 + 1))
        else:
            out.add(_day(part))
    return frozenset(out)


def _minutes(h: str, m: str, text: str, *, end: bool) -> int:
    hh, mm = int(h), int(m)
    if mm > 59 or hh > 24 or (hh == 24 and (mm or not end)):
        raise ScheduleError(f"bad time in {text!r} (00:00 to 23:59; 24:00 only as an end)")
    return hh * 60 + mm


def parse_schedule(text: str) -> tuple[Window, ...]:
    """``"Mon-Fri 07:00-19:00; Sat 09:00-13:00"`` -> windows; ``ScheduleError`` names the bad part."""
    windows: list[Window] = []
    for chunk in (c.strip() for c in text.split(";")):
        if not chunk:
            continue
        tokens = chunk.split()
        if len(tokens) < 2:
            raise ScheduleError(f"{chunk!r}: expected DAYS HH:MM-HH:MM, e.g. 'Mon-Fri 07:00-19:00'")
        days = _days(tokens[0])
        for tok in tokens[1:]:
            m = _TIME.match(tok)
            if not m:
                raise ScheduleError(f"{tok!r} in {chunk!r}: expected a time range HH:MM-HH:MM")
            start = _minutes(m[1], m[2], tok, end=False)
            end = _minutes(m[3], m[4], tok, end=True)
            if start == end:
                raise ScheduleError(f"{tok!r}: a window cannot start and end at the same time")
            windows.append(Window(days, start, end))
    if not windows:
        raise ScheduleError("empty schedule: give at least one window, e.g. 'Mon-Fri 07:00-19:00'")
    return tuple(windows)


def _format_days(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "daily"
    runs: list[list[int]] = []
    for d in sorted(days):
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][-1] == 6:  # a run through Sunday into Monday
        runs[0] = runs.pop() + runs[0]
    return ",".join(DAYS[r[0]] if len(r) == 1 else f"{DAYS[r[0]]}-{DAYS[r[-1]]}" for r in runs)


def format_schedule(windows: tuple[Window, ...]) -> str:
    """The canonical text of ``windows`` (what :func:`parse_schedule` reads back)."""
    def hm(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"

    groups: dict[frozenset[int], list[str]] = {}
    for w in windows:
        groups.setdefault(w.days, []).append(f"{hm(w.start)}-{hm(w.end)}")
    return "; ".join(f"{_format_days(d)} {' '.join(r)}" for d, r in groups.items())


def parse_when(text: str, *, end: bool = False) -> datetime:
    """A validity bound: ``YYYY-MM-DD`` (with ``end``: the day after, so the day is included) or
    ``YYYY-MM-DDTHH:MM``, local wall time (naive)."""
    t = text.strip()
    try:
        if len(t) == 10:
            d = date.fromisoformat(t)
            return datetime(d.year, d.month, d.day) + (timedelta(days=1) if end else timedelta())
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ScheduleError(f"bad date {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (local time)") from None
    if dt.tzinfo is not None:
        raise ScheduleError(f"bad date {text!r}: give local time without a UTC offset")
    return dt


def format_when(dt: datetime, *, end: bool = False) -> str:
    """The inverse of :func:`parse_when` (a midnight ``end`` bound is shown as the day it includes)."""
    if dt.hour == dt.minute == dt.second == 0:
        return (dt - timedelta(days=1) if end else dt).date().isoformat()
    return dt.isoformat(timespec="minutes")


def make_rule(schedule: str | None = None, valid_from: str | None = None,
              valid_until: str | None = None) -> AccessRule:
    """A rule from the texts the CLI and the gallery use; ``ScheduleError`` when one is bad."""
    rule = AccessRule(parse_when(valid_from) if valid_from else None,
                      parse_when(valid_until, end=True) if valid_until else None,
                      parse_schedule(schedule) if schedule else ())
    if rule.valid_from and rule.valid_until and rule.valid_until <= rule.valid_from:
        raise ScheduleError(f"valid until {format_when(rule.valid_until, end=True)} is not after valid from "
                            f"{format_when(rule.valid_from)}")
    return rule


# -- evaluation -----------------------------------------------------------------------------------------
def check(rule: AccessRule, at: datetime, zone: tzinfo) -> AccessDecision:
    """Is ``rule`` open at ``at`` (an aware datetime: the decision time), read on the clocks of ``zone``?"""
    if at.tzinfo is None:
        raise ValueError("check() needs an aware datetime (e.g. datetime.fromtimestamp(t, UTC))")
    local = at.astimezone(zone).replace(tzinfo=None)
    if rule.valid_from is not None and local < rule.valid_from:
        return AccessDecision(False, OUTSIDE_SCHEDULE, f"not valid before {format_when(rule.valid_from)}")
    if rule.valid_until is not None and local >= rule.valid_until:
        return AccessDecision(False, OUTSIDE_SCHEDULE,
                              f"not valid after {format_when(rule.valid_until, end=True)}")
    if rule.windows:
        minute = local.hour * 60 + local.minute
        if not any(w.contains(local.weekday(), minute) for w in rule.windows):
            return AccessDecision(False, OUTSIDE_SCHEDULE, f"outside {format_schedule(rule.windows)}")
    return AccessDecision(True, None, "allowed")


def local_zone(name: str = "") -> tzinfo:
    """The zone rules are read in: ``name`` (IANA, e.g. ``Europe/Paris``), else ``$TZ``, else the
    system's ``/etc/localtime``, else UTC. This reads files, so call it once at start, not per event."""
    for key in (name, os.environ.get("TZ", "").lstrip(":")):
        if key:
            try:
                return ZoneInfo(key)
            except (ZoneInfoNotFoundError, ValueError):
                raise ScheduleError(f"unknown time zone {key!r} (an IANA name such as Europe/Paris)") from None
    try:
        with Path("/etc/localtime").open("rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")


def configured_zone(name: str) -> tzinfo:
    """:func:`local_zone` for the ``[access] timezone`` setting: a ConfigError that names the setting."""
    try:
        return local_zone(name)
    except ScheduleError as e:
        raise ConfigError(f"access.timezone: {e}") from None


class TamperWatch:
    """``n`` suspicious events (``unknown_face``, ``denied``, ``spoof``) within ``window_s`` seconds:
    :meth:`observe` returns True once, on the event that reaches ``n``; the count then starts again.
    Pure: the caller passes each event's time."""

    def __init__(self, n: int, window_s: float, kinds: frozenset[str] = TAMPER_KINDS) -> None:
        if n < 1 or window_s <= 0:
            raise ValueError("n must be >= 1 and window_s > 0")
        self.n, self.window_s, self.kinds = n, window_s, kinds
        self._times: deque[float] = deque()

    def observe(self, event_type: str, now: float) -> bool:
        if event_type not in self.kinds:
            return False
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) >= self.n:
            self._times.clear()
            return True
        return False
