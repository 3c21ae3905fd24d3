"""Wiring of one process: settings, database, store and policies, built once per command."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from liveness.errors import ConfigurationError, SchemaOutdated
from liveness.settings import Settings

# Each part imports what builds it when first asked for, so that a command loads only the
# parts it uses: `liveness runs` needs the database, not the store, ingest or the run.
if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from connectors import SourceConfig, TraceSpec
    from liveness.access.passwords import SignInPolicy
    from liveness.certification.policy import CertificationPolicy
    from liveness.certification.run import RunPolicies
    from liveness.evidence.store import EvidenceStore
    from liveness.ingest import IngestContext
    from liveness.views.area_names import AreaNames


class Services:
    """The objects a command needs, created lazily from one settings object."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def engine(self) -> Engine:
        """Return the state database's engine."""
        from liveness.db import make_engine

        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        """Return the session factory."""
        from liveness.db import make_sessionmaker

        return make_sessionmaker(self.engine)

    @cached_property
    def store(self) -> EvidenceStore:
        """Return the evidence store, with the feature engine the settings choose."""
        from liveness.evidence.store import EvidenceStore

        if self.settings.engine == "local":
            return EvidenceStore(self.settings.evidence_dir)
        from liveness.evidence.engines import spark_engine

        engine = spark_engine(
            master=self.settings.spark_master,
            evidence_url=self.settings.spark_evidence_url,
            shuffle_partitions=self.settings.spark_shuffle_partitions,
            collect_persons=self.settings.spark_collect_persons,
        )
        return EvidenceStore(self.settings.evidence_dir, engine=engine)

    @cached_property
    def source_configs(self) -> dict[str, SourceConfig]:
        """Return the configuration of every source."""
        from connectors import ConnectorError, load_source_configs

        try:
            return load_source_configs(self.settings.sources_config_path)
        except ConnectorError as error:
            raise ConfigurationError(str(error)) from None

    @cached_property
    def traces(self) -> dict[str, TraceSpec]:
        """Return the trace sources, built-in and declared, with how each becomes evidence."""
        from connectors import trace_specs

        return trace_specs(self.source_configs)

    @property
    def trace_links(self) -> dict[str, tuple[str, ...]]:
        """Return each trace source's link modes (for relinks and explanations)."""
        return {name: tuple(spec.link) for name, spec in self.traces.items()}

    @cached_property
    def policies(self) -> RunPolicies:
        """Return the scoring, certification, health and estimator policies."""
        from liveness.certification.run import RunPolicies
        from liveness.evidence.health import load_health_policy
        from liveness.policy_files import file_version
        from liveness.scoring import PolicyError, load_policy

        try:
            scoring = load_policy(self.settings.scoring_policy_path, traces=self.traces)
        except FileNotFoundError:
            raise ConfigurationError(
                f"{self.settings.scoring_policy_path}: scoring policy not found"
            ) from None
        except PolicyError as error:
            raise ConfigurationError(str(error)) from None
        from liveness.estimator.config import load_estimator_config

        health = load_health_policy(
            self.settings.config_dir / "health.toml", sources=tuple(self.traces)
        )
        # Only its [certify] and [review] tables matter to a run; reading it loads no estimator.
        estimator = load_estimator_config(self.settings.config_dir / "estimator.toml")
        sources = self.settings.sources_config_path
        return RunPolicies(
            scoring=scoring, certification=self.certification_policy, health=health,
            estimator=estimator,
            sources_version=file_version(sources.read_bytes()) if sources.is_file() else None,
        )  # fmt: skip

    @cached_property
    def certification_policy(self) -> CertificationPolicy:
        """Return the certification policy (ingest needs it alone: its linking confidence)."""
        from liveness.certification.policy import load_certification_policy

        return load_certification_policy(self.settings.config_dir / "certification.toml")

    @cached_property
    def sign_in_policy(self) -> SignInPolicy:
        """Return the people's sign-in policy: lock-out, one-time code window, password lengths."""
        from liveness.access.passwords import load_sign_in_policy

        return load_sign_in_policy(self.settings.config_dir / "access.toml")

    @cached_property
    def area_names(self) -> AreaNames:
        """Return the names of regions and grids shown beside their codes (read once)."""
        from liveness.views.area_names import load_area_names

        return load_area_names(self.settings.config_dir / "areas.toml")

    def ingest_context(self) -> IngestContext:
        """Return a fresh ingest context."""
        from liveness.ingest import IngestContext

        return IngestContext(
            configs=self.source_configs,
            store=self.store,
            timezone=self.settings.timezone,
            demographic_confidence=self.certification_policy.demographic_confidence,
        )

    def require_schema(self) -> None:
        """Refuse to work on a database that has not been migrated."""
        from liveness.migrate import current_revision

        if current_revision(self.engine) is None:
            raise SchemaOutdated(
                f"the database at {self.engine.url.render_as_string(hide_password=True)} has no "
                "schema yet: run `liveness db upgrade` first"
            )
