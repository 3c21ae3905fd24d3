"""Card issuance: senior transit, citizen and social-security cards, with reissues."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from liveness.simulate.population import NEVER, Population, Profile

IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]
DateArray = npt.NDArray[np.datetime64]

CARD_KINDS = ("transit_senior", "citizen", "social_security")
_PREFIX = {"transit_senior": "8860", "citizen": "6230", "social_security": "3307"}
# Yearly share of cards lost or broken and replaced during the period.
_REISSUE_RATE = 0.03


@dataclass(frozen=True)
class CardHolding:
    """One card kind: per person the card used before and after an eventual reissue."""

    before: IntArray  # index into Cards arrays, -1 for "holds no such card"
    after: IntArray
    reissue_day: IntArray  # day index of the reissue, NEVER if none

    def card_at(self, *, person: IntArray, day: IntArray) -> IntArray:
        """Return the card index valid for each (person, day)."""
        result: IntArray = np.where(
            day < self.reissue_day[person], self.before[person], self.after[person]
        )
        return result


@dataclass(frozen=True)
class Cards:
    """All cards (columns of cards.csv) and the per-person holdings of the used kinds."""

    card_no: StrArray
    kind: StrArray
    owner: IntArray
    issued_on: DateArray
    cancelled_on: DateArray
    transit: CardHolding
    citizen: CardHolding


# Long by design: one linear recipe on one random stream; its order fixes the files.
def build_cards(*, rng: np.random.Generator, population: Population) -> Cards:
    """Issue cards to the population and replace a few of them during the period."""
    n = population.size
    start = np.datetime64(population.start, "D")
    profile = population.profile
    has_transit = np.isin(profile, [Profile.ACTIVE_URBAN, Profile.MODERATE]) | (
        np.isin(profile, [Profile.BEDRIDDEN, Profile.HOMEBOUND]) & (rng.random(n) < 0.3)
    )
    p_citizen = np.where(profile == Profile.OUT_OF_PROVINCE, 0.7, 0.92)
    has_citizen = rng.random(n) < p_citizen
    activity_end = population.activity_end

    owners: list[IntArray] = []
    kinds: list[StrArray] = []
    issued: list[DateArray] = []
    cancelled: list[DateArray] = []
    holdings: dict[str, CardHolding] = {}
    counter = 0
    for kind, holders in (
        ("transit_senior", np.flatnonzero(has_transit)),
        ("citizen", np.flatnonzero(has_citizen)),
        ("social_security", np.arange(n)),
    ):
        first = counter + np.arange(holders.size)
        counter += holders.size
        issued_first = start - rng.integers(30, 3000, size=holders.size).astype("timedelta64[D]")
        reissue = np.full(holders.size, NEVER, dtype=np.int64)
        if kind != "social_security" and population.days > 1:
            day = rng.integers(1, population.days, size=holders.size)
            # Only the holder replaces a card, so only while still living an ordinary life.
            replaced = (rng.random(holders.size) < _REISSUE_RATE * population.days / 365) & (
                day < activity_end[holders]
            )
            reissue = np.where(replaced, day, NEVER)
        else:
            replaced = np.zeros(holders.size, dtype=bool)
        reissued = np.flatnonzero(replaced)
        second = counter + np.arange(reissued.size)
        counter += reissued.size
        reissue_date = start + reissue[reissued].astype("timedelta64[D]")

        cancel_first = np.full(holders.size, np.datetime64("NaT"), dtype="datetime64[D]")
        cancel_first[reissued] = reissue_date
        owners += [holders, holders[reissued]]
        kinds += [np.full(holders.size + reissued.size, kind)]
        issued += [issued_first, reissue_date]
        cancelled += [cancel_first, np.full(reissued.size, np.datetime64("NaT"), "datetime64[D]")]

        before = np.full(n, -1, dtype=np.int64)
        before[holders] = first
        after = before.copy()
        after[holders[reissued]] = second
        day_of = np.full(n, NEVER, dtype=np.int64)
        day_of[holders] = reissue
        holdings[kind] = CardHolding(before=before, after=after, reissue_day=day_of)

    # Card numbers are a shuffled serial behind a kind prefix, so they do not reveal the owner.
    serial = rng.permutation(counter) + 10**11
    kind_all = np.concatenate(kinds)
    prefix = np.concatenate([np.full(k.size, _PREFIX[str(k[0])]) for k in kinds if k.size])
    card_no = np.strings.add(prefix, serial.astype("U12"))
    return Cards(
        card_no=card_no,
        kind=kind_all,
        owner=np.concatenate(owners),
        issued_on=np.concatenate(issued),
        cancelled_on=np.concatenate(cancelled),
        transit=holdings["transit_senior"],
        citizen=holdings["citizen"],
    )
