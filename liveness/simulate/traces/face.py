"""Face checks: results and channels, including proxies."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from liveness.simulate.population import Population, Profile
from liveness.simulate.traces.draws import (
    Trace,
    _categorical,
    _clock,
    _epoch_day,
    _ids,
    _order,
    _pick,
    _poisson_days,
    _timestamps,
)

# Events per person-year by profile (order of Profile), before the personal activity factor.
_FACE_RATE = np.array([0.04, 0.04, 0.03, 0.01, 1.5, 0.04])

_FACE_RESULTS = np.array(["pass", "fail", "no_liveness", "no_face"])
_FACE_CHANNELS = np.array(["app", "kiosk", "assisted", "proxy"])


def build_face(*, rng: np.random.Generator, population: Population) -> Trace:
    """Draw face verifications people did on their own initiative."""
    rate = np.where(
        population.silent, 0.0, _FACE_RATE[population.profile] * np.sqrt(population.activity)
    )
    zero = np.zeros(population.size, dtype=np.int64)
    person, day = _poisson_days(rng, rate=rate, lo=zero, hi=population.activity_end)
    seconds = _clock(rng, person.size, peaks=[(1.0, 14.0, 4.0)], hours=(7.0, 22.99))
    order = _order(day, seconds, person)
    person, day, seconds = person[order], day[order], seconds[order]
    n = person.size
    result = _categorical(rng, np.tile([0.88, 0.05, 0.05, 0.02], (n, 1)))
    away = population.profile[person] == Profile.OUT_OF_PROVINCE
    channel = _categorical(
        rng, np.where(away[:, None], [0.90, 0.0, 0.05, 0.05], [0.55, 0.20, 0.20, 0.05])
    )
    score = np.select(
        [result == 0, result == 1, result == 2],
        [
            rng.integers(800, 1000, size=n),
            rng.integers(300, 700, size=n),
            rng.integers(500, 950, size=n),
        ],
        default=-1,
    )
    scores = [f"{k / 1000:.3f}" for k in range(1001)]
    # The face template id is a stable token per person, derived from the person index.
    token_rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(int(rng.integers(2**63))))
    )
    tokens = token_rng.integers(0, 2**62, size=population.size)
    face_people = np.unique(person)
    token_text = {int(p): f"FT{int(tokens[p]):016x}" for p in face_people}
    face_vocabulary = [token_text[int(p)] for p in face_people]
    epoch = _epoch_day(population)
    table = pa.table(
        {
            "record_id": _ids("V", n, 9),
            "id_number": pa.array(population.id_number[person], type=pa.string()),
            "verified_at": _timestamps((epoch + day) * 86400 + seconds),
            "result": _pick(_FACE_RESULTS, result),
            "channel": _pick(_FACE_CHANNELS, channel),
            "score": _pick(scores, score),
            "request_id": pa.nulls(n, pa.string()),
            "face_id": _pick(face_vocabulary, np.searchsorted(face_people, person)),
        }
    )
    return Trace(table=table, day=day, person=person, protected=np.ones(n, dtype=bool))
