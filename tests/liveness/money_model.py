"""An independent model of the money path, for the stateful test (issues 13 and 20).

The model knows the truth of every simulated person (alive or dead and since when, in prison,
one person under two numbers), what it delivered and when, which notices it sent and which
review outcomes it recorded. It reads the list feed as the payment system would, entry by
entry in `seq` order, and checks every entry against the README's state machine, against the
truth and against its own arithmetic of money. Nothing here calls the engine to compute an
expectation: payment days, overpayments and back pay are counted below, the policy numbers
are read from the TOML files themselves.

Each invariant raises its own exception type, so Hypothesis shrinks and reports each kind of
failure on its own. `LIVENESS_STATEFUL_SKIP` (comma-separated invariant names, e.g.
`I1_EVENT,REFUSAL`) turns named invariants into notes instead of failures: with it, one can see
the next failing invariant while the first is being fixed. By default every invariant fails.
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

CONFIG = Path(__file__).resolve().parents[2] / "config"


def _toml(name: str) -> dict[str, Any]:
    return tomllib.loads((CONFIG / name).read_text(encoding="utf-8"))


_CERT = _toml("certification.toml")
_SCORING = _toml("scoring.toml")
PAYMENT_DAY: int = _CERT["payment"]["day_of_month"]
NOTICE_DAYS: int = _CERT["cycle"]["notice_days"]
FOUR_EYES = Decimal(str(_CERT["lists"]["four_eyes_back_pay"]))
TERMINATE_AFTER_DAYS: int = _CERT["lists"]["terminate_after_death_days"]
PRISON_TYPES = frozenset(_CERT["lists"]["suspend_when_imprisoned"])
OWN_FACE_CHANNELS = frozenset(_CERT["review"]["face"]["own_channels"])
PROXY_ALLOWED = bool(_CERT["review"]["face"].get("proxy_allowed", False))
AREA_PREFIXES = tuple(_CERT["area"]["region_prefixes"])
# The longest recent window of any benefit type: past it, a dead person's last traces are gone.
RECENT_MAX_DAYS = max(
    [_SCORING["windows"]["recent"]]
    + [o.get("recent", 0) for o in _SCORING["levels"].get("overrides", {}).values()]
)
# A delivery arriving "a day or two" after the days it covers is ordinary lag.
ORDINARY_LAG_DAYS = 2


def valid_months(benefit_type: str) -> int:
    """Return the certification cycle of a benefit type, as certification.toml says."""
    override = _CERT["cycle"].get("overrides", {}).get(benefit_type, {})
    return int(override.get("valid_months", _CERT["cycle"]["valid_months"]))


def notice_days(benefit_type: str) -> int:
    """Return the lapse notice period of a benefit type."""
    override = _CERT["cycle"].get("overrides", {}).get(benefit_type, {})
    return int(override.get("notice_days", NOTICE_DAYS))


# ---------------------------------------------------------------------------------------------
# Invariants: one exception type each.


class Violation(AssertionError):
    """An invariant of the money path does not hold."""

    name = "violation"


def _violation(name: str, doc: str) -> type[Violation]:
    return type(name, (Violation,), {"name": name, "__doc__": doc})


I1_TRANSITION = _violation("I1_TRANSITION", "An entry the README's state machine does not allow.")
I1_EVENT = _violation("I1_EVENT", "An entry that does not name its event.")
I1_STATUS = _violation("I1_STATUS", "Replaying the feed does not give Benefit.status.")
I2_DEATH_HOLDS = _violation("I2_DEATH_HOLDS", "A reinstatement while a death still holds.")
I3_LAPSE = _violation("I3_LAPSE", "A lapse suspension without a real chance.")
I4_MONEY = _violation("I4_MONEY", "An overpayment or a back pay that is wrong to the fen.")
I4_EFFECTIVE = _violation("I4_EFFECTIVE", "An entry that takes effect on the wrong day.")
I4_HELD = _violation("I4_HELD", "A back pay held or published against the four-eyes amount.")
I5_RERUN = _violation("I5_RERUN", "Rerunning the latest date changed something.")
I6_DEATH_REVIEW = _violation("I6_DEATH_REVIEW", "A death review opened twice for one record.")
I6_DEGRADED = _violation("I6_DEGRADED", "Ordinary delivery lag marked a source degraded.")
I6_SILENT_CERT = _violation("I6_SILENT_CERT", "A dead person certified silently.")
I6_DEATH_ACTS = _violation("I6_DEATH_ACTS", "A standing death that suspended nothing.")
I6_DUPLICATE = _violation("I6_DUPLICATE", "A duplicate deregistration that suspended nothing.")
I6_WITHDRAWN = _violation("I6_WITHDRAWN", "A withdrawn or refuted death that still suspends.")
I6_TERMINATE = _violation("I6_TERMINATE", "An uncontested death suspension never terminated.")
I6_PRISON = _violation("I6_PRISON", "An imprisonment found by a visit that suspended nothing.")
I7_CAUSE = _violation("I7_CAUSE", "A suspension without its cause (deceased, lapse, prison).")
APPROVAL = _violation("APPROVAL", "An approval refused or allowed against the README.")
REFUSAL = _violation("REFUSAL", "A run that should have been refused, or it published.")
ENGINE_ERROR = _violation("ENGINE_ERROR", "A run failed with an unexpected error.")

SKIPPED = frozenset(
    name.strip() for name in os.environ.get("LIVENESS_STATEFUL_SKIP", "").split(",") if name
)
# Violations of skipped invariants, kept for whoever reads them (e.g. in a debugger).
NOTED: list[str] = []


def fail(kind: type[Violation], message: str) -> None:
    """Raise a violation of `kind`, unless that invariant is skipped by the environment."""
    if kind.name in SKIPPED:
        NOTED.append(f"{kind.name}: {message}")
        return
    raise kind(message)


# ---------------------------------------------------------------------------------------------
# Calendar and money, counted here.


def payment_day_of(year: int, month: int) -> dt.date:
    """Return the payment day of a month."""
    return dt.date(year, month, PAYMENT_DAY)


def payment_days_in(after: dt.date, until: dt.date) -> list[dt.date]:
    """Return payment days d with after < d <= until, counted month by month."""
    days = []
    year, month = after.year, after.month
    while True:
        day = payment_day_of(year, month)
        if day > until:
            return days
        if day > after:
            days.append(day)
        month += 1
        if month == 13:
            year, month = year + 1, 1


def next_payment(after: dt.date) -> dt.date:
    """Return the first payment day strictly after `after`."""
    return payment_days_in(after, after + dt.timedelta(days=32))[0]


def first_payment(start: dt.date) -> dt.date:
    """Return the first payment day on or after a benefit's start."""
    return next_payment(start - dt.timedelta(days=1))


def end_of_month(day: dt.date) -> dt.date:
    """Return the last day of `day`'s month."""
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def add_months(day: dt.date, months: int) -> dt.date:
    """Return `day` moved by whole months, clamped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


# ---------------------------------------------------------------------------------------------
# Identity numbers (GB 11643), names.

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(region: str, birth: dt.date, serial: int, sex: str) -> str:
    """Return a valid 18-character identity number; the serial's parity gives the sex."""
    order = serial * 2 + (1 if sex == "M" else 0)
    body = f"{region}{birth:%Y%m%d}{order % 1000:03d}"
    total = sum(int(c) * w for c, w in zip(body, _WEIGHTS, strict=True))
    return body + "10X98765432"[total % 11]


NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强")
OTHER_NAMES = ("吴某某", "郑某某", "冯某某")
IN_AREA_REGION = "330702"
OUT_OF_AREA_REGION = "110105"


# ---------------------------------------------------------------------------------------------
# The roll and the truth.


@dataclass
class BenefitSpec:
    """One benefit on the roll as the model delivers it."""

    benefit_type: str
    amount: Decimal
    start: dt.date
    roll_status: str = "active"


@dataclass
class PersonSpec:
    """One person on the roll, with the truth the model keeps about them."""

    ref: str
    id_number: str
    name: str
    sex: str
    birth: dt.date
    region: str
    grid: str
    phone: str | None
    last_certified: dt.date
    benefits: list[BenefitSpec]
    transit_card: str
    citizen_card: str
    offset: int
    # The truth.
    died_on: dt.date | None = None
    prison: list[list[dt.date | None]] = field(default_factory=list)
    profiles: list[tuple[dt.date, str]] = field(default_factory=list)
    # The human behind this number also holds another number (`duplicate_of` is the original).
    duplicate_of: str | None = None

    def alive_on(self, day: dt.date) -> bool:
        """Say whether the person is alive on `day` (the day of death counts as dead)."""
        return self.died_on is None or day < self.died_on

    def in_prison_on(self, day: dt.date) -> bool:
        """Say whether the person is in prison on `day`."""
        return any(start <= day and (end is None or day < end) for start, end in self.prison)  # type: ignore[operator]

    def free_and_alive(self, day: dt.date) -> bool:
        """Say whether the person can leave traces or answer a review on `day`."""
        return self.alive_on(day) and not self.in_prison_on(day)

    def profile_on(self, day: dt.date) -> str:
        """Return the activity profile in force on `day`."""
        current = "weak"
        for since, profile in self.profiles:
            if since <= day:
                current = profile
        return current

    def certification_carried(self) -> tuple[dt.date, dt.date]:
        """Return (certified on, valid until) of the certification carried over from the roll."""
        ends = [
            add_months(self.last_certified, valid_months(b.benefit_type)) for b in self.benefits
        ]
        return self.last_certified, min(ends)


# Per activity profile: (source, kind, every n days). A strong person leaves traces in several
# sources, a medium one in one, a weak one in none.
PROFILES: dict[str, tuple[tuple[str, str, int], ...]] = {
    "strong": (
        ("transit", "tap_face", 4),
        ("card_txn", "pos_pin", 6),
        ("medical", "outpatient", 25),
    ),
    "medium": (("card_txn", "pos_pin", 6),),
    "weak": (),
}
TRACE_SOURCES = ("transit", "card_txn", "medical")
# Unlinked transit taps (cards nobody on the roll holds): the volume a real city has, so that
# a source's health is judged at all (health.toml's min_median_volume).
BACKGROUND_TAPS_PER_DAY = 60


@dataclass
class DeathSource:
    """A death that names a person: a record the model delivered, or a review's `deceased`."""

    source: str  # cremation, deregistration, medical, or review
    key: str  # record_id, or the review task id
    person: str
    died_on: dt.date
    recorded_on: dt.date
    seq: int
    wrong: bool
    mismatch: bool = False  # another name on the number: a death review, never a death
    withdrawn_seq: int | None = None  # voided, corrected away, or corrected by a supervisor
    settled_seq: int | None = None  # a death review answered for this record

    def known(self, as_of: dt.date, run_seq: int) -> bool:
        """Say whether a run as of `as_of` (started at step `run_seq`) can know it."""
        return self.seq < run_seq and self.recorded_on <= as_of and self.died_on <= as_of

    def withdrawn(self, run_seq: int) -> bool:
        """Say whether its source withdrew it before the run."""
        return self.withdrawn_seq is not None and self.withdrawn_seq < run_seq


@dataclass(frozen=True)
class Proof:
    """Proof of life: a face pass (own or proxy) or a review that found the person alive."""

    person: str
    day: dt.date
    kind: str  # face_own, face_proxy, review
    seq: int


@dataclass(frozen=True)
class FaceResult:
    """A face verification result the model delivered."""

    person: str
    day: dt.date
    result: str
    channel: str
    task_id: int | None
    seq: int


@dataclass
class Outcome:
    """A review outcome the model recorded."""

    task_id: int
    person: str
    kind: str
    outcome: str
    on: dt.date
    seq: int
    died_on: dt.date | None = None


@dataclass
class DuplicateDeregistration:
    """A deregistration revealing one person under two numbers."""

    record_id: str
    original: str
    duplicate: str
    benefit_type: str
    seq: int
    voided_seq: int | None = None

    def standing(self, run_seq: int) -> bool:
        """Say whether a run started at `run_seq` knows it and it was not voided."""
        return self.seq < run_seq and (self.voided_seq is None or self.voided_seq >= run_seq)


# ---------------------------------------------------------------------------------------------
# What the engine shows: read after every run, never used to compute an expectation.


@dataclass(frozen=True)
class TaskRow:
    """A review task as stored by the engine."""

    id: int
    person_id: int
    kind: str
    status: str
    opened_on: dt.date
    due_on: dt.date
    opened_run_id: int | None
    outcome: str | None
    reasons: dict[str, Any]


@dataclass(frozen=True)
class NoticeRow:
    """A notice as stored by the engine."""

    id: int
    person_id: int
    task_id: int | None
    template: str
    created_on: dt.date
    status: str


@dataclass(frozen=True)
class CertRow:
    """A certification as stored by the engine."""

    id: int
    person_id: int
    source: str
    certified_on: dt.date
    valid_until: dt.date
    run_id: int | None


@dataclass(frozen=True)
class EntryRow:
    """A list entry as the payment system reads it."""

    id: int
    seq: int
    run_id: int
    person_id: int
    benefit_id: int
    action: str
    reason: str
    event: str | None
    effective_on: dt.date
    amount: Decimal
    status: str
    detail: dict[str, Any]
    caused_by: str
    approved_by: str | None

    @property
    def approves(self) -> int | None:
        """Return the seq of the held entry this one approves, if it is an approval."""
        seq = self.detail.get("approves_seq")
        return int(seq) if seq is not None else None

    def describe(self) -> str:
        """Return the entry as one readable line."""
        return (
            f"#{self.seq} {self.action}/{self.reason} event={self.event} "
            f"from {self.effective_on} amount={self.amount} {self.status} "
            f"detail={self.detail}"
        )


def event_of(entry: EntryRow) -> str:
    """Return the entry's event, or the one its action and reason imply if it names none."""
    if entry.event:
        return entry.event
    if entry.approves is not None:
        return "approval"
    by_reason = {
        "suspend": {"deceased": "death", "lapsed": "lapse", "imprisoned": "imprisonment",
                    "duplicate_identity": "duplicate_identity"},
        "amend": {"deceased": "death", "imprisoned": "imprisonment",
                  "duplicate_identity": "duplicate_identity"},
        "reinstate": {"proof_of_life": "proof_of_life", "death_withdrawn": "death_withdrawn",
                      "duplicate_withdrawn": "duplicate_withdrawn"},
        "terminate": {"deceased": "death_stood"},
    }  # fmt: skip
    implied = by_reason.get(entry.action, {}).get(entry.reason)
    if implied is None and entry.action == "amend":
        return "death_withdrawn"  # amended back to the reason a death had amended
    return implied or "unknown"


# ---------------------------------------------------------------------------------------------
# The payment system's replay of the feed, with the model's ledger of what was paid.

SUSPENSION_REASONS = ("deceased", "lapsed", "imprisoned", "duplicate_identity")


@dataclass
class Held:
    """A reinstatement held for a second operator."""

    entry_id: int
    seq: int
    amount: Decimal
    run_as_of: dt.date
    run_seq: int
    caused_by: str
    superseded: bool = False


@dataclass
class Ledger:
    """One benefit as the payment system applies the feed, and which payment days were paid."""

    benefit_id: int
    person: str
    benefit_type: str
    amount: Decimal
    start: dt.date
    outside: bool  # arrived suspended or terminated: outside the machine
    state: str = "active"
    reason: str | None = None
    prior: str | None = None  # the reason a death amended
    since_run: dt.date | None = None  # payments after this run's date are withheld
    prison_from: dt.date | None = None  # withheld payments after this run are not paid back
    death_run: dt.date | None = None
    died_on: dt.date | None = None  # the date of death the death suspension runs from
    held: Held | None = None
    unpaid: set[dt.date] = field(default_factory=set)

    @property
    def engine_status(self) -> str:
        """Return the Benefit.status the replay implies."""
        if self.outside:
            return "outside"
        return "suspended" if self.state == "suspended" else self.state

    def describe(self) -> str:
        """Return the replayed state as a short text."""
        held = f", held #{self.held.seq}" if self.held else ""
        prior = f" (amended {self.prior})" if self.prior else ""
        return f"{self.state}{'/' + self.reason if self.reason else ''}{prior}{held}"

    def paid(self, day: dt.date) -> bool:
        """Say whether the payment day `day` was paid (withheld days are not)."""
        if day < first_payment(self.start) or day in self.unpaid:
            return False
        return not (self.state != "active" and self.since_run is not None and day > self.since_run)

    def paid_days(self, after: dt.date, until: dt.date) -> int:
        """Count the paid payment days d with after < d <= until."""
        return sum(1 for day in payment_days_in(after, until) if self.paid(day))

    def back_pay(self, as_of: dt.date) -> Decimal:
        """Return the back pay of a reinstatement by a run as of `as_of`."""
        assert self.since_run is not None
        withheld = payment_days_in(self.since_run, as_of)
        prison = payment_days_in(self.prison_from, as_of) if self.prison_from else []
        return self.amount * (len(withheld) - len(prison))

    def close_suspension(self, as_of: dt.date) -> None:
        """End the current suspension at `as_of`: prison months stay unpaid, the rest is paid."""
        if self.prison_from is not None:
            self.unpaid.update(payment_days_in(self.prison_from, as_of))
        self.state, self.reason, self.prior = "active", None, None
        self.since_run = self.prison_from = self.death_run = self.died_on = None
        self.held = None


# ---------------------------------------------------------------------------------------------
# The world: truth, what was delivered and recorded, and the checks of each run.

REVIEW_KINDS = ("face_verification", "home_visit")
STRONG_PROOFS = ("face_own", "review")


def review_record_key(reasons: dict[str, Any]) -> tuple[str, str] | None:
    """Return (source, record_id) of the death record a death review is about, if it says."""
    record = reasons.get("record")
    if isinstance(record, dict) and record.get("record_id") is not None:
        return str(record.get("source", "")), str(record["record_id"])
    if reasons.get("record_id") is not None:
        return str(reasons.get("source", "")), str(reasons["record_id"])
    return None


class World:
    """The model: the truth, the log of what the test did, and the replayed feed."""

    def __init__(self, persons: list[PersonSpec]) -> None:
        self.persons = {p.ref: p for p in persons}
        self.seq = 0
        self.deaths: list[DeathSource] = []
        self.proofs: list[Proof] = []
        self.face_results: list[FaceResult] = []
        self.outcomes: dict[int, Outcome] = {}
        self.sent: dict[int, tuple[dt.date, int]] = {}
        self.duplicates: list[DuplicateDeregistration] = []
        self.delivered_through: dict[str, dt.date] = {}
        self.person_ids: dict[str, int] = {}
        self.refs: dict[int, str] = {}
        self.ledgers: dict[int, Ledger] = {}
        self.runs: dict[int, dt.date] = {}
        self.last_seq_seen = 0
        self.tasks: dict[int, TaskRow] = {}
        self.notices: dict[int, NoticeRow] = {}
        self.certs: dict[int, CertRow] = {}

    def step(self) -> int:
        """Count one step of the history; return its number."""
        self.seq += 1
        return self.seq

    # -- what a run knows ----------------------------------------------------------------

    def known_deaths(self, ref: str, as_of: dt.date, run_seq: int) -> list[DeathSource]:
        """Return the deaths naming `ref` a run can know and that their source did not withdraw."""
        return [
            d for d in self.deaths
            if d.person == ref and not d.mismatch and d.known(as_of, run_seq)
            and not d.withdrawn(run_seq)
        ]  # fmt: skip

    def proofs_known(
        self, ref: str, as_of: dt.date, run_seq: int, kinds: tuple[str, ...] | None = None
    ) -> list[Proof]:
        """Return the proofs of life of `ref` a run can know."""
        if kinds is None:
            kinds = ("face_own", "review") + (("face_proxy",) if PROXY_ALLOWED else ())
        return [
            p for p in self.proofs
            if p.person == ref and p.seq < run_seq and p.day <= as_of and p.kind in kinds
        ]  # fmt: skip

    def standing_deaths(
        self, ref: str, as_of: dt.date, run_seq: int, *, strict: bool,
        kinds: tuple[str, ...] | None = None,
    ) -> list[DeathSource]:  # fmt: skip
        """Return the known deaths no proof refutes: strictly (a proof after the death day)
        or loosely (a proof on the death day or after)."""
        proofs = self.proofs_known(ref, as_of, run_seq, kinds)
        return [
            d for d in self.known_deaths(ref, as_of, run_seq)
            if not any(p.day > d.died_on if strict else p.day >= d.died_on for p in proofs)
        ]  # fmt: skip

    def ledgers_of(self, ref: str) -> list[Ledger]:
        """Return the benefits of a person inside the machine."""
        return [
            ledger
            for ledger in self.ledgers.values()
            if ledger.person == ref and not ledger.outside
        ]

    # -- one entry of the feed -----------------------------------------------------------

    def apply_entry(self, entry: EntryRow, *, as_of: dt.date, run_seq: int, run_id: int) -> None:
        """Check one new entry of a run against the model, then apply it to the replay."""
        ledger = self.ledgers.get(entry.benefit_id)
        if ledger is None:
            fail(I1_TRANSITION, f"entry for a benefit the roll does not have: {entry.describe()}")
            return
        where = (
            f"{ledger.person}/{ledger.benefit_type} (benefit {entry.benefit_id}) in the run as of "
            f"{as_of}: {entry.describe()}, replayed state {ledger.describe()}"
        )
        if not entry.event:
            fail(I1_EVENT, f"the entry names no event: {where}")
        if self.refs.get(entry.person_id) != ledger.person:
            fail(I1_TRANSITION, f"the entry's person is not the benefit's: {where}")
        if ledger.outside:
            fail(I1_TRANSITION, f"an entry for a benefit that arrived {ledger.reason}: {where}")
            return
        event = event_of(entry)
        if entry.approves is not None or event == "approval":
            self._approval(entry, ledger, where)
            return
        problem = self._transition_problem(ledger, event, entry)
        if problem:
            fail(I1_TRANSITION, f"{problem}: {where}")
            # Skipped (triage): follow the engine, to keep checking what comes next.
            self._apply(entry, ledger, event, as_of=as_of, run_seq=run_seq)
            return
        if entry.action in ("suspend", "amend") and event != "death_withdrawn":
            self._check_suspension(entry, ledger, event, where, as_of=as_of, run_seq=run_seq,
                                   run_id=run_id)  # fmt: skip
        elif entry.action == "reinstate" or event == "death_withdrawn":
            self._check_reinstatement(entry, ledger, event, where, as_of=as_of, run_seq=run_seq)
        elif entry.action == "terminate":
            self._check_termination(entry, ledger, where, as_of=as_of, run_seq=run_seq)
        self._apply(entry, ledger, event, as_of=as_of, run_seq=run_seq)

    def _transition_problem(self, ledger: Ledger, event: str, entry: EntryRow) -> str | None:
        """Say what the README's table forbids about this (state, event, entry), if anything."""
        state, reason = ledger.state, ledger.reason
        suspended = state == "suspended"
        held = ledger.held is not None and not ledger.held.superseded
        if entry.action == "reinstate" and held:
            return "a second reinstatement while one waits for approval"
        expected: dict[str, tuple[bool, set[str], str | None]] = {
            # event: (allowed in this state, actions, reason after)
            # A death supersedes a held reinstatement: the amendment tells the payment system.
            # A standing date of death other than the one the suspension took (a corrected
            # record, an earlier one arrived) redates it: an amend, the overpayment anew.
            "death": (
                state == "active" or held
                or (suspended and reason in ("lapsed", "imprisoned", "duplicate_identity"))
                or (suspended and reason == "deceased"
                    and entry.effective_on - dt.timedelta(days=1) != ledger.died_on),
                {"suspend"} if state == "active" else {"amend"}, "deceased",
            ),
            "death_withdrawn": (
                (suspended and reason == "deceased") or state == "terminated",
                {"amend"} if suspended and ledger.prior else {"reinstate"},
                ledger.prior if suspended and ledger.prior else None,
            ),
            "proof_of_life": (
                (suspended and reason in ("deceased", "lapsed", "imprisoned"))
                or state == "terminated",
                {"reinstate"}, None,
            ),
            "recertified": (suspended and reason == "lapsed", {"reinstate"}, None),
            "lapse": (state == "active", {"suspend"}, "lapsed"),
            "imprisonment": (
                state == "active" or (suspended and reason == "lapsed"),
                {"suspend"} if state == "active" else {"amend"}, "imprisoned",
            ),
            "duplicate_identity": (
                state == "active" or (suspended and reason in ("lapsed", "imprisoned")),
                {"suspend"} if state == "active" else {"amend"}, "duplicate_identity",
            ),
            "duplicate_withdrawn": (
                suspended and reason == "duplicate_identity", {"reinstate"}, None
            ),
            "death_stood": (suspended and reason == "deceased", {"terminate"}, "deceased"),
        }  # fmt: skip
        if event not in expected:
            return f"an unknown event {event!r}"
        allowed, actions, after = expected[event]
        if not allowed:
            return f"the event {event} changes nothing in state {ledger.describe()}"
        if entry.action not in actions:
            return f"the event {event} in state {ledger.describe()} makes {actions}"
        if after is not None and entry.action in ("suspend", "amend") and entry.reason != after:
            return f"the event {event} should leave the reason {after}"
        return None

    def _check_suspension(
        self, entry: EntryRow, ledger: Ledger, event: str, where: str, *, as_of: dt.date,
        run_seq: int, run_id: int,
    ) -> None:  # fmt: skip
        """Check a suspension's (or amendment's) cause, start and amount."""
        ref = ledger.person
        person = self.persons[ref]
        if event == "death":
            known = self.known_deaths(ref, as_of, run_seq)
            if not known:
                truth = "alive" if person.alive_on(as_of) else f"dead since {person.died_on}"
                fail(I7_CAUSE, f"suspended as deceased without a death naming them ({truth}): "
                               f"{where}")  # fmt: skip
                return
            died = entry.effective_on - dt.timedelta(days=1)
            earliest = self._earliest_deaths(ref, as_of, run_seq)
            if died not in earliest:
                fail(I4_EFFECTIVE, f"effective_on should be the day after the earliest standing "
                               f"death, one of {sorted(earliest)}: {where}")  # fmt: skip
            expected = ledger.amount * ledger.paid_days(end_of_month(died), as_of)
            # The README: a death amending a duplicate's suspension recovers nothing more, the
            # duplicate's recovery already claims every payment it drew.
            if ledger.reason == "duplicate_identity":
                expected = Decimal("0.00")
            if entry.amount != expected:
                fail(I4_MONEY, f"the overpayment of a death on {died} is {expected} "
                               f"({ledger.amount} x paid payment days after "
                               f"{end_of_month(died)} up to {as_of}, none amending a "
                               f"duplicate): {where}")  # fmt: skip
        elif event == "lapse":
            problem = self.lapse_problem(ref, as_of=as_of, run_seq=run_seq, run_id=run_id)
            if problem:
                fail(I3_LAPSE, f"{problem}: {where}")
            self._check_next_payment(entry, as_of, where)
            self._check_zero(entry, where)
        elif event == "imprisonment":
            found = [
                o for o in self.outcomes.values()
                if o.person == ref and o.outcome == "imprisoned" and o.seq < run_seq
            ]  # fmt: skip
            if not found or ledger.benefit_type not in PRISON_TYPES:
                fail(I7_CAUSE, f"suspended for prison without a visit finding it (or a type "
                               f"that prison does not stop): {where}")  # fmt: skip
            self._check_next_payment(entry, as_of, where)
            self._check_zero(entry, where)
        elif event == "duplicate_identity":
            mine = [
                d for d in self.duplicates
                if d.standing(run_seq) and d.duplicate == ref
                and d.benefit_type == ledger.benefit_type
            ]  # fmt: skip
            if not mine:
                originals = [d for d in self.duplicates if d.original == ref]
                kind = I6_DUPLICATE if originals else I7_CAUSE
                fail(kind, f"suspended as a duplicate without a deregistration naming this "
                           f"benefit as the later of two: {where}")  # fmt: skip
                return
            if entry.action == "suspend":
                self._check_next_payment(entry, as_of, where)
            start = first_payment(ledger.start)
            expected = ledger.amount * ledger.paid_days(start - dt.timedelta(days=1), as_of)
            if entry.amount != expected:
                fail(I4_MONEY, f"the overpayment of a duplicate is {expected} ({ledger.amount} "
                               f"x paid payment days from {start} up to {as_of}): "
                               f"{where}")  # fmt: skip

    def _earliest_deaths(self, ref: str, as_of: dt.date, run_seq: int) -> set[dt.date]:
        """Return the dates a death suspension may run from: the earliest known or standing.

        Which deaths stand is judged strictly and leniently (a refutation the engine may not
        have seen yet): either earliest date is right.
        """
        known = self.known_deaths(ref, as_of, run_seq)
        earliest = {min(d.died_on for d in known)} if known else set()
        for strict in (True, False):
            standing = self.standing_deaths(ref, as_of, run_seq, strict=strict)
            if standing:
                earliest.add(min(d.died_on for d in standing))
        return earliest

    def _check_next_payment(self, entry: EntryRow, as_of: dt.date, where: str) -> None:
        if entry.effective_on != next_payment(as_of):
            fail(I4_EFFECTIVE, f"should take effect on the next payment day {next_payment(as_of)}: "
                           f"{where}")  # fmt: skip

    def _check_zero(self, entry: EntryRow, where: str) -> None:
        if entry.amount != 0:
            fail(I4_MONEY, f"a lapse or prison suspension has nothing to recover: {where}")

    def _check_reinstatement(
        self, entry: EntryRow, ledger: Ledger, event: str, where: str, *, as_of: dt.date,
        run_seq: int,
    ) -> None:  # fmt: skip
        """Check that no death holds, the reinstatement's cause, and its back pay."""
        ref = ledger.person
        standing = self.standing_deaths(ref, as_of, run_seq, strict=False)
        if standing:
            deaths = [(d.source, d.key, str(d.died_on)) for d in standing]
            proofs = [(p.kind, str(p.day)) for p in self.proofs_known(ref, as_of, run_seq)]
            truth = "alive" if self.persons[ref].alive_on(as_of) else "dead"
            fail(I2_DEATH_HOLDS, f"reinstated ({truth}) while deaths {deaths} hold (no proof of "
                                 f"life on or after them: {proofs}, none withdrawn by its "
                                 f"source): {where}")  # fmt: skip
        # An entry that names no event may be a recertification by data: only a named proof
        # of life must show its proof.
        if entry.event == "proof_of_life" and ledger.reason in ("lapsed", "imprisoned"):
            assert ledger.since_run is not None
            after = [p for p in self.proofs_known(ref, as_of, run_seq) if p.day >= ledger.since_run]
            if not after:
                fail(I7_CAUSE, f"reinstated by proof of life without one since the suspension "
                               f"of {ledger.since_run}: {where}")  # fmt: skip
        if event == "duplicate_withdrawn":
            voided = [
                d for d in self.duplicates
                if d.duplicate == ref and d.voided_seq is not None and d.voided_seq < run_seq
            ]  # fmt: skip
            if not voided:
                fail(I7_CAUSE, f"a duplicate withdrawn that nobody voided: {where}")
        if entry.action != "reinstate":
            return
        if ledger.since_run is None:
            return
        expected = ledger.back_pay(as_of)
        if entry.amount != expected:
            prison = f", less those after {ledger.prison_from}" if ledger.prison_from else ""
            fail(I4_MONEY, f"the back pay is {expected} ({ledger.amount} x payment days after "
                           f"{ledger.since_run} up to {as_of}{prison}): {where}")  # fmt: skip
        should_hold = entry.amount > FOUR_EYES
        if (entry.status == "held") != should_hold:
            fail(I4_HELD, f"a back pay of {entry.amount} should be "
                           f"{'held' if should_hold else 'published'} (four eyes above "
                           f"{FOUR_EYES}): {where}")  # fmt: skip
        if entry.effective_on != next_payment(as_of):
            fail(I4_EFFECTIVE, f"a reinstatement takes effect on the next payment day "
                           f"{next_payment(as_of)}: {where}")  # fmt: skip

    def _check_termination(
        self, entry: EntryRow, ledger: Ledger, where: str, *, as_of: dt.date, run_seq: int
    ) -> None:
        """Check that a termination ends a death that stood, uncontested, long enough."""
        assert ledger.death_run is not None
        if (as_of - ledger.death_run).days < TERMINATE_AFTER_DAYS:
            fail(I1_TRANSITION, f"terminated {(as_of - ledger.death_run).days} days after the "
                                f"death suspension of {ledger.death_run}: {where}")  # fmt: skip
        # Only the person's own face or a review refutes here (strictly after the death day):
        # whether a proxy's pass contests a death is left to the engine.
        if not self.standing_deaths(
            ledger.person, as_of, run_seq, strict=True, kinds=STRONG_PROOFS
        ):
            fail(I2_DEATH_HOLDS, f"terminated although no death stands: {where}")
        self._check_zero(entry, where)

    def _approval(self, entry: EntryRow, ledger: Ledger, where: str) -> None:
        """Check and apply an approval entry."""
        held = ledger.held
        if held is None or held.seq != entry.approves:
            fail(APPROVAL, f"an approval of no held reinstatement of this benefit: {where}")
            return
        if held.superseded:
            fail(APPROVAL, f"a held reinstatement superseded by a death was approved: {where}")
        if entry.amount != held.amount or entry.status != "published":
            fail(I4_MONEY, f"an approval publishes the held amount {held.amount}: {where}")
        if entry.approved_by in (None, held.caused_by):
            fail(APPROVAL, f"approved by {entry.approved_by}, who caused it: {where}")
        ledger.close_suspension(held.run_as_of)

    def _apply(self, entry: EntryRow, ledger: Ledger, event: str, *, as_of: dt.date,
               run_seq: int) -> None:  # fmt: skip
        """Apply an entry to the replay, as the payment system does."""
        action = entry.action
        if action == "suspend":
            ledger.state, ledger.reason = "suspended", entry.reason
            ledger.since_run = as_of
            ledger.prison_from = as_of if entry.reason == "imprisoned" else None
            ledger.death_run = as_of if entry.reason == "deceased" else None
            if entry.reason == "deceased":
                ledger.died_on = entry.effective_on - dt.timedelta(days=1)
        elif action == "amend" and event == "death":
            if ledger.reason != "deceased":
                ledger.prior = ledger.prior or ledger.reason
            # A redating too restarts the days before termination: they count from the run of
            # the latest death entry.
            ledger.reason, ledger.death_run = "deceased", as_of
            ledger.died_on = entry.effective_on - dt.timedelta(days=1)
            if ledger.held:
                ledger.held.superseded = True
        elif action == "amend" and event == "death_withdrawn":
            ledger.reason, ledger.prior, ledger.death_run = ledger.prior, None, None
            ledger.died_on = None
        elif action == "amend":
            ledger.reason = entry.reason
            if entry.reason == "imprisoned" and ledger.prison_from is None:
                ledger.prison_from = as_of
        elif action == "reinstate" and entry.status == "held":
            ledger.held = Held(entry.id, entry.seq, entry.amount, as_of, run_seq, entry.caused_by)
        elif action == "reinstate":
            ledger.close_suspension(as_of)
        elif action == "terminate":
            ledger.state = "terminated"

    # -- after a run ----------------------------------------------------------------------

    def forget_withdrawn_duplicates(self, *, run_seq: int) -> None:
        """Forget a duplicate a death amended once no deregistration naming it stands.

        The README's table: `duplicate_withdrawn` under a death changes no entry, but a death
        withdrawn later reinstates instead of returning to the duplicate.
        """
        for ledger in self.ledgers.values():
            held = ledger.held is not None and not ledger.held.superseded
            if ledger.reason != "deceased" or ledger.prior != "duplicate_identity" or held:
                continue
            if not any(
                d.standing(run_seq) and d.duplicate == ledger.person
                and d.benefit_type == ledger.benefit_type
                for d in self.duplicates
            ):  # fmt: skip
                ledger.prior = None

    def supersede_held(self, *, as_of: dt.date, run_seq: int) -> None:
        """Mark held reinstatements superseded where a death came first (no entry needed)."""
        for ledger in self.ledgers.values():
            held = ledger.held
            if held is None or held.superseded or held.run_seq >= run_seq:
                continue
            later = [
                d for d in self.standing_deaths(ledger.person, as_of, run_seq, strict=False)
                if d.seq > held.run_seq
            ]  # fmt: skip
            if later:
                held.superseded = True

    def check_after_run(
        self, *, as_of: dt.date, run_seq: int, previous_run_seq: int, run_id: int,
        before: dict[int, tuple[str, str | None]], report: dict[str, Any],
    ) -> None:  # fmt: skip
        """Check what must have happened by the end of a run, and what must never."""
        for ref in self.persons:
            ledgers = self.ledgers_of(ref)
            standing = self.standing_deaths(ref, as_of, run_seq, strict=False)
            for ledger in ledgers:
                dead_state = ledger.state == "terminated" or ledger.reason == "deceased"
                where = f"{ref}/{ledger.benefit_type} after the run as of {as_of}, replayed " \
                        f"{ledger.describe()}"  # fmt: skip
                if standing and not dead_state:
                    deaths = [(d.source, d.key, str(d.died_on)) for d in standing]
                    fail(I6_DEATH_ACTS, f"deaths {deaths} stand and the benefit is not "
                                        f"suspended as deceased: {where}")  # fmt: skip
                held = ledger.held is not None and not ledger.held.superseded
                strictly = self.standing_deaths(
                    ref, as_of, run_seq, strict=True, kinds=STRONG_PROOFS
                )
                if dead_state and not held and not strictly:
                    known = [
                        (d.source, d.key, str(d.died_on), "withdrawn" if d.withdrawn(run_seq)
                         else "refuted")
                        for d in self.deaths if d.person == ref and not d.mismatch
                        and d.known(as_of, run_seq)
                    ]  # fmt: skip
                    proofs = [(p.kind, str(p.day)) for p in self.proofs_known(ref, as_of, run_seq)]
                    fail(I6_WITHDRAWN, f"no death stands ({known}; proofs {proofs}) and the "
                                       f"benefit is still suspended as deceased: {where}")  # fmt: skip
                if (
                    ledger.state == "suspended" and ledger.reason == "deceased" and not held
                    and standing and ledger.died_on is not None
                    and ledger.died_on not in self._earliest_deaths(ref, as_of, run_seq)
                ):  # fmt: skip
                    fail(I4_EFFECTIVE, f"suspended from the death of {ledger.died_on} while the "
                                       f"earliest standing death is of another day, one of "
                                       f"{sorted(self._earliest_deaths(ref, as_of, run_seq))}: "
                                       f"not redated: {where}")  # fmt: skip
                if (
                    ledger.state == "suspended" and ledger.reason == "deceased" and not held
                    and ledger.death_run is not None
                    and (as_of - ledger.death_run).days > TERMINATE_AFTER_DAYS
                    and self.standing_deaths(ref, as_of, run_seq, strict=False)
                ):  # fmt: skip
                    fail(I6_TERMINATE, f"a death suspended since the run of {ledger.death_run} "
                                       f"stood uncontested and was not terminated: {where}")  # fmt: skip
        self._check_duplicates(as_of=as_of, run_seq=run_seq)
        self._check_prison(as_of=as_of, run_seq=run_seq, since_seq=previous_run_seq, before=before)
        self._check_death_reviews(run_id=run_id, run_seq=run_seq)
        self._check_degraded(as_of=as_of, report=report)
        self._check_silent_certification(as_of=as_of, run_seq=run_seq, run_id=run_id)

    def _check_duplicates(self, *, as_of: dt.date, run_seq: int) -> None:
        for record in self.duplicates:
            if record.seq >= run_seq:
                continue
            ledger = next(
                x for x in self.ledgers_of(record.duplicate)
                if x.benefit_type == record.benefit_type
            )  # fmt: skip
            where = (
                f"{record.duplicate}/{record.benefit_type} (duplicate of {record.original}, "
                f"deregistration {record.record_id}) after the run as of {as_of}, replayed "
                f"{ledger.describe()}"
            )
            suspended = ledger.state == "terminated" or ledger.reason in (
                "duplicate_identity", "deceased",
            )  # fmt: skip
            if record.standing(run_seq) and not suspended:
                fail(I6_DUPLICATE, f"a duplicate deregistration did not suspend the later "
                                   f"benefit: {where}")  # fmt: skip
            voided = record.voided_seq is not None and record.voided_seq < run_seq
            held = ledger.held is not None and not ledger.held.superseded
            # Another deregistration naming the same benefit may stand, and suspend it rightly.
            others = [
                d for d in self.duplicates
                if d is not record and d.standing(run_seq) and d.duplicate == record.duplicate
                and d.benefit_type == record.benefit_type
            ]  # fmt: skip
            if voided and ledger.reason == "duplicate_identity" and not held and not others:
                fail(I6_DUPLICATE, f"a voided duplicate deregistration still suspends: {where}")

    def _check_prison(
        self, *, as_of: dt.date, run_seq: int, since_seq: int,
        before: dict[int, tuple[str, str | None]],
    ) -> None:  # fmt: skip
        for found in self.outcomes.values():
            if found.outcome != "imprisoned" or not since_seq <= found.seq < run_seq:
                continue
            later_proofs = [
                p for p in self.proofs if p.person == found.person and p.seq >= found.seq
            ]
            if later_proofs:
                continue
            for ledger in self.ledgers_of(found.person):
                state, reason = before.get(ledger.benefit_id, ("active", None))
                if ledger.benefit_type not in PRISON_TYPES:
                    continue
                if (state == "active" or reason == "lapsed") and (
                    ledger.state == "active" or ledger.reason == "lapsed"
                ):
                    fail(I6_PRISON, f"a visit found {found.person} imprisoned (task "
                                    f"{found.task_id}) and {ledger.benefit_type} stays "
                                    f"{ledger.describe()} after the run as of {as_of}")  # fmt: skip

    def _check_death_reviews(self, *, run_id: int, run_seq: int) -> None:
        by_record: dict[tuple[str, str], list[int]] = {}
        for task in sorted(self.tasks.values(), key=lambda t: t.id):
            # A review the engine cancelled (its person was held dead meanwhile) was never
            # answered: the record may ask again once that death is gone.
            if task.kind != "death_review" or task.status == "cancelled":
                continue
            key = review_record_key(task.reasons)
            ref = self.refs.get(task.person_id, "?")
            if key is not None:
                by_record.setdefault(key, []).append(task.id)
                continue
            if task.opened_run_id == run_id:
                mine = [d for d in self.deaths if d.person == ref and d.mismatch]
                if mine and all(d.settled_seq is not None for d in mine):
                    fail(I6_DEATH_REVIEW, f"a death review (task {task.id}) opened for {ref} "
                                          f"whose mismatched records are all settled")  # fmt: skip
        for key, tasks in by_record.items():
            if len(tasks) > 1:
                record = next(
                    (d for d in self.deaths if (d.source, d.key) == key or d.key == key[1]), None
                )
                settled = "settled" if record and record.settled_seq else "not yet settled"
                fail(I6_DEATH_REVIEW, f"death record {key} ({settled}) opened death reviews "
                                      f"{tasks}")  # fmt: skip

    def _check_degraded(self, *, as_of: dt.date, report: dict[str, Any]) -> None:
        degraded = report.get("degraded_sources") or {}
        for source, days in degraded.items():
            through = self.delivered_through.get(source)
            if through is not None and through >= as_of - dt.timedelta(days=ORDINARY_LAG_DAYS):
                fail(I6_DEGRADED, f"{source} delivered through {through} (ordinary lag before "
                                  f"the run as of {as_of}) was reported degraded on {days}")  # fmt: skip

    def _check_silent_certification(self, *, as_of: dt.date, run_seq: int, run_id: int) -> None:
        for cert in self.certs.values():
            if cert.run_id != run_id or cert.source != "data_comparison":
                continue
            ref = self.refs.get(cert.person_id)
            if ref is None:
                continue
            person = self.persons[ref]
            standing = self.standing_deaths(ref, as_of, run_seq, strict=False)
            if standing:
                fail(I6_SILENT_CERT, f"{ref} certified silently as of {as_of} while the death "
                                     f"{[(d.source, str(d.died_on)) for d in standing]} "
                                     f"stands")  # fmt: skip
            if person.died_on is not None and (as_of - person.died_on).days > RECENT_MAX_DAYS:
                fail(I6_SILENT_CERT, f"{ref} certified silently as of {as_of}, "
                                     f"{(as_of - person.died_on).days} days after dying on "
                                     f"{person.died_on} with no trace since")  # fmt: skip

    # -- a lapse's real chance --------------------------------------------------------------

    def lapse_problem(self, ref: str, *, as_of: dt.date, run_seq: int, run_id: int) -> str | None:
        """Say why a lapse suspension of `ref` by this run was not earned, or None."""
        person = self.persons[ref]
        pid = self.person_ids[ref]
        certifications = [
            (c.certified_on, c.valid_until) for c in self.certs.values()
            if c.person_id == pid and c.certified_on <= as_of
        ]  # fmt: skip
        certifications.append(person.certification_carried())
        start, end = max(certifications, key=lambda c: c[1])
        if end >= as_of:
            return f"the certification of {start} is valid until {end}"
        period = min(notice_days(b.benefit_type) for b in person.benefits)
        sends = sorted(
            self.sent[n.id][0] for n in self.notices.values()
            if n.person_id == pid and "lapse" in n.template and n.id in self.sent
            and self.sent[n.id][1] < run_seq
        )  # fmt: skip
        if not [s for s in sends if s >= end and (as_of - s).days >= period]:
            return (
                f"no lapse notice sent after the certification ended on {end} and {period} "
                f"days before the run (sent on {sends})"
            )
        reviews = [
            t for t in self.tasks.values()
            if t.person_id == pid and t.kind in REVIEW_KINDS and t.opened_on >= start
            and t.opened_run_id != run_id
        ]  # fmt: skip
        if not reviews:
            return f"no review since the certification of {start}"
        latest = max(reviews, key=lambda t: (t.opened_on, t.id))
        if not self.review_failed(latest, ref=ref, as_of=as_of, run_seq=run_seq):
            outcome = self.outcomes.get(latest.id)
            return (
                f"the latest review (task {latest.id}, {latest.kind} opened {latest.opened_on}, "
                f"due {latest.due_on}, recorded {outcome.outcome if outcome else None}) "
                f"did not fail"
            )
        return None

    def review_failed(self, task: TaskRow, *, ref: str, as_of: dt.date, run_seq: int) -> bool:
        """Say whether a review failed by this run: refused, failed, or ignored after notice."""
        if task.kind == "home_visit":
            outcome = self.outcomes.get(task.id)
            return outcome is not None and outcome.seq < run_seq and outcome.outcome == "refused"
        results = [
            f for f in self.face_results
            if f.person == ref and f.seq < run_seq and task.opened_on <= f.day <= as_of
        ]  # fmt: skip
        passes = [
            f for f in results
            if f.result == "pass" and (f.channel in OWN_FACE_CHANNELS or PROXY_ALLOWED)
        ]  # fmt: skip
        if passes:
            return False
        if any(f.result != "pass" for f in results):
            return True
        notified = any(
            n.task_id == task.id and n.id in self.sent and self.sent[n.id][1] < run_seq
            for n in self.notices.values()
        )
        return task.due_on < as_of and notified
