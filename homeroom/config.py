"""Typed settings, read from the environment.

Every service has one settings class deriving from `ServiceSettings` with its own
prefix (HOMEROOM_INGEST_, HOMEROOM_RECORDS_, ...). The kernel's shared settings come
from HOMEROOM_* and two well-known names: KAFKA_BOOTSTRAP_SERVERS and
HOMEROOM_DATABASE_URL (a PostgreSQL server URL; each service uses its own database on
it unless HOMEROOM_<SERVICE>_DATABASE_URL names one). Outside development, missing
secrets fail the start instead of falling back to generated development keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from homeroom.peers import PORTS
from homeroom.storage import database_url
from homeroom.tasks import RELAY_FALLBACK_S

Environment = Literal["development", "test", "production"]


class KafkaSettings(BaseSettings):
    """How to reach the bus. Empty bootstrap servers mean "not configured"."""

    model_config = SettingsConfigDict(env_prefix="HOMEROOM_KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(
        default="", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "HOMEROOM_KAFKA_BOOTSTRAP_SERVERS")
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    client_id_prefix: str = "homeroom"
    # The embedded broker, restarted empty, acknowledges sends to partitions it does not have
    # and drops them: publishers then take partitions from a metadata answer given over the
    # connections they still hold (`homeroom/bus/producer.py`). Apache Kafka refuses such
    # sends, so a deployment on it may turn this off (HOMEROOM_KAFKA_CHECK_PARTITIONS=false).
    check_partitions: bool = True

    def client_kwargs(self) -> dict[str, Any]:
        """Connection arguments shared by aiokafka producers, consumers and admin clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            import ssl

            context = ssl.create_default_context(cafile=self.ssl_cafile or None)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile or None)
            kwargs["ssl_context"] = context
        if self.security_protocol.startswith("SASL"):
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        return kwargs


class ServiceSettings(BaseSettings):
    """Settings every service has. A subclass names its service once, as `service_name`'s
    default; by that name its environment prefix is HOMEROOM_<NAME>_ and its port the
    service's conventional one (`homeroom.peers.PORTS`), unless it declares `model_config`
    with another `env_prefix` or a `port` default of its own."""

    model_config = SettingsConfigDict(env_prefix="HOMEROOM_SERVICE_", extra="ignore")

    service_name: str = "service"
    environment: Environment = Field(
        default="development", validation_alias=AliasChoices("HOMEROOM_ENVIRONMENT", "environment")
    )
    host: str = "127.0.0.1"
    port: int = 0  # a subclass's default: its service's conventional port (see above)
    # Set by `./run stack` for every process it starts and echoed by /readyz, so the stack
    # never takes another process answering on the same port for its own service.
    instance_id: str = Field(default="", validation_alias=AliasChoices("HOMEROOM_INSTANCE_ID", "instance_id"))
    database_url: str = ""  # full DSN for this service's database; default derived from server_url
    server_url: str = Field(default="", validation_alias=AliasChoices("HOMEROOM_DATABASE_URL", "server_url"))
    keys_database_url: str = Field(
        default="", validation_alias=AliasChoices("HOMEROOM_KEYS_DATABASE_URL", "keys_database_url")
    )
    # Migrations run as the owner role (least privilege: the service's own login owns
    # nothing). A server URL as the owner; each service derives its database on it, as above.
    migration_server_url: str = Field(
        default="", validation_alias=AliasChoices("HOMEROOM_MIGRATION_DATABASE_URL", "migration_server_url")
    )
    migration_database_url: str = ""  # HOMEROOM_<NAME>_MIGRATION_DATABASE_URL: a full DSN instead
    # False where a job (`homeroom migrate`) migrates before the services start, so a
    # service's container never holds the owner's password (docker-compose.yml).
    migrate_on_start: bool = Field(
        default=True, validation_alias=AliasChoices("HOMEROOM_MIGRATE_ON_START", "migrate_on_start")
    )
    migration_keys_database_url: str = Field(
        default="",
        validation_alias=AliasChoices("HOMEROOM_MIGRATION_KEYS_DATABASE_URL", "migration_keys_database_url"),
    )
    secrets_dir: Path = Field(
        default=Path(".homeroom/secrets"), validation_alias=AliasChoices("HOMEROOM_SECRETS_DIR", "secrets_dir")
    )
    pseudonym_key_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("HOMEROOM_PSEUDONYM_KEY_FILE", "pseudonym_key_file")
    )
    keyring_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("HOMEROOM_KEYRING_FILE", "keyring_file")
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("HOMEROOM_LOG_LEVEL", "log_level"))
    consumer_max_attempts: int = 5
    consumer_backoff_s: float = 0.2
    outbox_poll_interval_s: float = 0.05
    relay_fallback_s: float = RELAY_FALLBACK_S  # homeroom.tasks: the relays' poll while NOTIFY works
    db_pool_size: int = 10
    start_consumers: bool = True
    consumer_session_timeout_ms: int = 10000
    create_database: bool = True  # create this service's database if missing (needs CREATEDB)
    topic_replication_factor: int = Field(
        default=1, validation_alias=AliasChoices("HOMEROOM_TOPIC_REPLICATION_FACTOR", "topic_replication_factor")
    )
    # Requests per verified caller (homeroom/ratelimit.py); "" switches limits off.
    rate_limit: str = Field(default="1200/minute", validation_alias=AliasChoices("HOMEROOM_RATE_LIMIT", "rate_limit"))
    service_token_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("HOMEROOM_SERVICE_TOKEN_FILE", "service_token_file")
    )
    # Notices by e-mail (homeroom.notices). No host: notices are recorded and listed, not mailed.
    smtp_host: str = Field(default="", validation_alias=AliasChoices("HOMEROOM_SMTP_HOST", "smtp_host"))
    smtp_port: int = Field(default=25, validation_alias=AliasChoices("HOMEROOM_SMTP_PORT", "smtp_port"))
    smtp_sender: str = Field(
        default="Homeroom <notices@homeroom.invalid>",
        validation_alias=AliasChoices("HOMEROOM_SMTP_SENDER", "smtp_sender"),
    )
    smtp_starttls: bool = Field(default=False, validation_alias=AliasChoices("HOMEROOM_SMTP_STARTTLS", "smtp_starttls"))
    smtp_tls: bool = Field(default=False, validation_alias=AliasChoices("HOMEROOM_SMTP_TLS", "smtp_tls"))
    smtp_username: str = Field(default="", validation_alias=AliasChoices("HOMEROOM_SMTP_USERNAME", "smtp_username"))
    smtp_password_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("HOMEROOM_SMTP_PASSWORD_FILE", "smtp_password_file")
    )
    notice_address_book_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("HOMEROOM_NOTICE_ADDRESS_BOOK_FILE", "notice_address_book_file")
    )
    # Outside production, a recipient the address book does not list gets role.id@<this domain>.
    notice_dev_domain: str = Field(
        default="homeroom.test", validation_alias=AliasChoices("HOMEROOM_NOTICE_DEV_DOMAIN", "notice_dev_domain")
    )
    notice_poll_interval_s: float = 1.0

    # A service's own secret files that production must name (field → what it holds); outside
    # production each defaults to a file in the secrets directory, created on first use.
    production_secret_files: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """The conventions of the class docstring, applied once the subclass is built."""
        super().__pydantic_init_subclass__(**kwargs)
        name = str(cls.model_fields["service_name"].default)
        if cls.model_config.get("env_prefix") == ServiceSettings.model_config.get("env_prefix"):
            cls.model_config = {**cls.model_config, "env_prefix": f"HOMEROOM_{name.upper()}_"}
        if cls.model_fields["port"].default == 0 and name in PORTS:
            cls.model_fields["port"].default = PORTS[name]
            cls.model_rebuild(force=True)

    @model_validator(mode="after")
    def _derive(self) -> ServiceSettings:
        if not self.database_url and self.server_url:
            self.database_url = database_url(self.server_url, f"homeroom_{self.service_name}")
        if not self.keys_database_url and self.server_url:
            self.keys_database_url = database_url(self.server_url, "homeroom_keys")
        if not self.migration_database_url and self.migration_server_url:
            self.migration_database_url = database_url(self.migration_server_url, f"homeroom_{self.service_name}")
        if not self.migration_keys_database_url and self.migration_server_url:
            self.migration_keys_database_url = database_url(self.migration_server_url, "homeroom_keys")
        return self

    def require_production_secrets(self) -> None:
        """Fail at start when a production deployment would run on development secrets."""
        if self.environment != "production":
            return
        missing = [
            name
            for name, value in (
                ("HOMEROOM_PSEUDONYM_KEY_FILE", self.pseudonym_key_file),
                ("HOMEROOM_KEYRING_FILE", self.keyring_file),
            )
            if value is None
        ]
        if missing:
            raise ValueError(f"production start refused: set {', '.join(missing)} (no generated development secrets)")
        for name, what in self.production_secret_files.items():
            if getattr(self, name) is None:
                env = f"{self.model_config.get('env_prefix', '')}{name}".upper()
                raise ValueError(f"production start refused: set {env} ({what})")

    def secret_path(self, configured: Path | None, default_name: str) -> Path:
        """A secret's file: the one configured, else `default_name` in the secrets directory."""
        return configured or self.secrets_dir / default_name

    @property
    def pseudonym_key_path(self) -> Path:
        return self.secret_path(self.pseudonym_key_file, "pseudonym.key")

    @property
    def keyring_path(self) -> Path:
        return self.secret_path(self.keyring_file, "keyring.json")
