"""The web session: a signed cookie naming the signed-in client, with its CSRF token.

The cookie holds no personal data and no token: only the client's id, the key of a session
the server recorded at sign-in (liveness.access.sessions), a CSRF token and when it was
signed (between a person's password and their one-time code: the id of the client whose
password was accepted, and when; nobody is signed in yet). The session and the client are
looked up on every request, so signing out, revoking the client's token or its expiry ends its
web sessions at once, even for a copied cookie.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "lv_session"
LANG_COOKIE = "lv_lang"
CSRF_FIELD = "csrf_token"
# What a form held when its session had ended: kept across sign-in (see api.web.pages).
KEPT_COOKIE = "lv_kept"


@dataclass(frozen=True)
class WebSession:
    """Who is signed in (None: nobody yet) and the token every form must echo."""

    client_id: int | None
    csrf: str
    # The key of the server's record of this session (None: nobody signed in).
    key: str | None = None
    # A password accepted, its one-time code awaited: whose, and when (seconds since 1970).
    pending_id: int | None = None
    pending_at: int | None = None

    @classmethod
    def anonymous(cls) -> WebSession:
        """Return a fresh session of nobody, with a new CSRF token (for the sign-in form)."""
        return cls(client_id=None, csrf=secrets.token_urlsafe(32))

    @classmethod
    def signed_in(cls, client_id: int, key: str) -> WebSession:
        """Return a session for a client just signed in; the CSRF token is renewed."""
        return cls(client_id=client_id, csrf=secrets.token_urlsafe(32), key=key)

    @classmethod
    def awaiting_code(cls, client_id: int, *, at: int) -> WebSession:
        """Return a session whose password step passed at `at`; the CSRF token is renewed."""
        return cls(
            client_id=None, csrf=secrets.token_urlsafe(32), pending_id=client_id, pending_at=at
        )

    def accepts(self, submitted: object) -> bool:
        """Return whether a form's CSRF field matches this session's token."""
        return isinstance(submitted, str) and hmac.compare_digest(submitted, self.csrf)


@dataclass(frozen=True)
class KeptForm:
    """What someone typed into a form when their session had ended, until they sign in again.

    `page` is the page the form returns to, `client_id` who was signed in when it was typed
    (None: no longer known, e.g. after a restart without a configured key), `fields` the
    form's own fields (never a password or CSRF token).
    """

    page: str
    client_id: int | None
    fields: dict[str, str]


class _CompactJSON:
    """JSON without ASCII escapes: a note in Chinese takes a third of the cookie it would."""

    @staticmethod
    def loads(payload: str | bytes) -> Any:
        """Parse JSON."""
        return json.loads(payload)

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        """Write compact JSON, keeping non-ASCII text as it is."""
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), **kwargs)


class SessionSigner:
    """Signs sessions into cookie values and reads them back, refusing tampered or old ones."""

    def __init__(self, secret: str | None, *, max_age_s: int) -> None:
        # Without a configured key, one per process: sessions end when the server restarts.
        self._serializer = URLSafeTimedSerializer(
            secret or secrets.token_urlsafe(32), salt="liveness.web.session"
        )
        self._kept = URLSafeTimedSerializer(
            self._serializer.secret_key, salt="liveness.web.kept", serializer=_CompactJSON
        )
        self.max_age_s = max_age_s

    def dump(self, session: WebSession) -> str:
        """Return the cookie value of a session."""
        raw: dict[str, object] = {"c": session.client_id, "x": session.csrf, "k": session.key}
        if session.pending_id is not None:
            raw |= {"p": session.pending_id, "pt": session.pending_at}
        return self._serializer.dumps(raw)

    def load(self, value: str | None) -> WebSession | None:
        """Return the session of a cookie value, or None if absent, tampered or expired."""
        if not value:
            return None
        try:
            raw = self._serializer.loads(value, max_age=self.max_age_s)
        except BadSignature:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("x"), str):
            return None
        client, key = raw.get("c"), raw.get("k")
        pending, pending_at = raw.get("p"), raw.get("pt")
        return WebSession(
            client_id=client if isinstance(client, int) else None, csrf=raw["x"],
            key=key if isinstance(key, str) else None,
            pending_id=pending if isinstance(pending, int) else None,
            pending_at=pending_at if isinstance(pending_at, int) else None,
        )  # fmt: skip

    def dump_kept(self, kept: KeptForm) -> str:
        """Return the cookie value of a kept form."""
        return self._kept.dumps({"p": kept.page, "c": kept.client_id, "f": kept.fields})

    def load_kept(self, value: str | None, *, max_age_s: int) -> KeptForm | None:
        """Return the kept form of a cookie value, or None if absent, tampered or too old."""
        if not value:
            return None
        try:
            raw = self._kept.loads(value, max_age=max_age_s)
        except BadSignature:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("p"), str):
            return None
        fields = raw.get("f")
        if not isinstance(fields, dict):
            return None
        client = raw.get("c")
        return KeptForm(
            page=raw["p"], client_id=client if isinstance(client, int) else None,
            fields={str(k): v for k, v in fields.items() if isinstance(v, str)},
        )  # fmt: skip
