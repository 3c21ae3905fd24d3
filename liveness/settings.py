"""The one typed settings object; nothing else reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from liveness.errors import ConfigurationError

# The databases the engine runs on (its migrations and its set-based SQL are written for them).
DATABASES = ("sqlite", "postgresql")

# The policy shipped with the package (a link to the repository's `config/` folder).
PACKAGED_CONFIG = Path(__file__).resolve().parent / "policy"


def default_config_dir() -> Path:
    """Return `./config` where the working folder has one, else the packaged policy."""
    local = Path("config")
    return local if (local / "sources.toml").is_file() else PACKAGED_CONFIG


class Settings(BaseSettings):
    """Engine settings, read from `LIVENESS_*` variables or a `.env` file."""

    model_config = SettingsConfigDict(
        env_prefix="LIVENESS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default="sqlite:///var/liveness.sqlite",
        description="SQLAlchemy URL of the state database (SQLite file by default).",
    )
    evidence_dir: Path = Field(
        default=Path("var/evidence"), description="Folder of the Parquet evidence store."
    )
    engine: Literal["local", "spark"] = Field(
        default="local",
        description="What computes the evidence features: `local` (this machine, the default) "
        "or `spark` (PySpark over the same Parquet store: pip install 'liveness[spark]').",
    )
    spark_master: str = Field(
        default="local[2]",
        description="Spark master of the spark engine: `local[N]`, a cluster URL "
        "(`spark://host:7077`, `yarn`, `k8s://...`) or a Spark Connect address (`sc://host:15002`).",
    )
    spark_evidence_url: str | None = Field(
        default=None,
        description="Where Spark's executors read the evidence store (`hdfs://...`, `s3a://...`, "
        "`file:///...`), laid out as the evidence folder is. Default: the evidence folder itself.",
    )
    spark_shuffle_partitions: int = Field(
        default=8, ge=1,
        description="Spark's shuffle partitions for the features (`spark.sql.shuffle.partitions`): "
        "a few per executor core.",
    )  # fmt: skip
    spark_collect_persons: int = Field(
        default=1_000_000, ge=1,
        description="Persons whose sums the spark engine brings back to this process at once "
        "(about 200 bytes each): ranges of person ids collected in turn, so that no roll "
        "needs spark.driver.maxResultSize raised.",
    )  # fmt: skip
    run_partition_persons: int | None = Field(
        default=None, ge=1,
        description="Run certification by ranges of this many person ids, in one transaction "
        "(docs/PARTITIONED_RUN.md): one range's evidence and grades in memory at a time, the "
        "same lists and report as a run of everyone at once. Default: everyone at once.",
    )  # fmt: skip
    config_dir: Path = Field(
        default_factory=default_config_dir,
        description="Folder of the policy files (scoring.toml, sources.toml, ...). Default: "
        "./config where the working folder has one (a clone, or an agency's own copy), else "
        "the policy shipped with the package.",
    )
    whatif_dir: Path | None = Field(
        default=None,
        description="Folder where `liveness what-if` keeps its reports (one JSON file each), "
        "for the supervisors' page. Default: a `whatif` folder beside the evidence store.",
    )
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Named secrets (database passwords in URLs, API tokens) that sources.toml "
        'refers to by name, as JSON: LIVENESS_SECRETS=\'{"face_api_token": "..."}\'.',
    )
    debug: bool = Field(
        default=False, description="Show tracebacks of unexpected errors (for developers)."
    )
    timezone: str = Field(
        default="Asia/Shanghai", description="Local time zone of naive timestamps and of days."
    )
    api_claim_minutes: int = Field(
        default=240, ge=1, description="Minutes a grid worker's claim on a review task lasts."
    )
    api_replay_window_s: int = Field(
        default=300,
        ge=1,
        description="Seconds a signed verifier callback's or death notice's timestamp may"
        " differ from now.",
    )

    api_docs: bool = Field(
        default=False,
        description="Serve the API's interactive documentation (/docs) and its OpenAPI document "
        "(/openapi.json) without sign-in. Off by default: they map every route for a stranger; "
        "enable it on a development or integration server.",
    )

    web_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs the web pages' session cookies. Unset: a random key per "
        "process, so sessions end when the server restarts (set it when running several).",
    )
    web_session_minutes: int = Field(
        default=480, ge=1, description="Minutes a web session lasts after signing in."
    )
    web_queue_page_size: int = Field(
        default=20, ge=1, le=200, description="Tasks per page of a grid worker's queue."
    )
    web_visits_days: int = Field(
        default=30, ge=1, description='Days back the "my recorded visits" page reaches.'
    )
    web_forecast_minutes: int = Field(
        default=10,
        ge=0,
        description="Minutes the page of who the next run would suspend reuses its forecast "
        "(each forecast tries the whole run; 0: a new one on every view).",
    )
    web_kept_form_minutes: int = Field(
        default=30, ge=1,
        description="Minutes a form typed when the session had ended is kept for its author to "
        "sign in again and find it filled in.",
    )  # fmt: skip
    web_cookie_secure: bool = Field(
        default=False,
        description="Send the session cookie over HTTPS only (set it behind a TLS proxy).",
    )

    def secret_values(self) -> dict[str, str]:
        """Return the named secrets' values, for the transports that need them."""
        return {name: secret.get_secret_value() for name, secret in self.secrets.items()}

    @property
    def scoring_policy_path(self) -> Path:
        """Return the path of the scoring policy file."""
        return self.config_dir / "scoring.toml"

    @property
    def whatif_reports_dir(self) -> Path:
        """Return the folder of the stored what-if reports."""
        return self.whatif_dir or self.evidence_dir.parent / "whatif"

    @property
    def sources_config_path(self) -> Path:
        """Return the path of the sources configuration file."""
        return self.config_dir / "sources.toml"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, key: str) -> str:
        """Refuse a time zone the system does not know (days would fail in the middle of a run)."""
        try:
            ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"no time zone named {key!r} (an IANA name: Asia/Shanghai)") from None
        return key

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        """Refuse a URL that names no database the engine runs on."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError:
            raise ValueError(
                "not a database URL (sqlite:///path or postgresql+psycopg://...)"
            ) from None
        if backend not in DATABASES:
            raise ValueError(f"the engine runs on {' or '.join(DATABASES)}, not {backend!r}")
        return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, validated once; a wrong one names its variable."""
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigurationError(settings_problems(error)) from None


def settings_problems(error: ValidationError) -> str:
    """Name each refused setting by its variable, with the reason and the value given."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "settings"
        reason = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"LIVENESS_{field.upper()}: {reason} (got {item.get('input')!r})")
    return "; ".join(problems)
