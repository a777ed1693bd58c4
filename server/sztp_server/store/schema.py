"""Schema versions and migrations for both backends.

Each backend has an ordered list of migrations numbered 1, 2, 3, ...; version 1 is the initial
schema. `migrate` runs inside the caller's open-time transaction, so a database is either at
its old version or fully at the new one. The two lists describe the same logical schema and
must gain a migration together, with the same version number.

Rows: `store_state` holds the single global revision; `resources` the admin resources;
`reports` the bounded progress history (each row with its size), with `report_heads` keeping
each device's latest report id, report count and byte total so status and pruning never scan
the history; `audit` the admin change log; `tokens` API token hashes; `device_events` the
flight recorder's device requests; `issued_certificates` the LDevIDs issued to devices, and
when and why each revoked one was. On
SQLite, `reports`, `report_heads`, `device_events` and `issued_certificates` live in a file of
their own (`REPORTS_FILE_SCHEMA`), so that a report does not wait for the state file's write
lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .errors import StoreError


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# The name under which SQLite attaches the reports file to every connection.
REPORTS_SCHEMA = "progress"

# The reports file's tables, created before the migrations run (migration 4 moves the rows an
# older database holds into them). The columns of `reports`/`report_heads` after migration 2,
# in the same order.
REPORTS_FILE_SCHEMA: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS {REPORTS_SCHEMA}.reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        serial TEXT NOT NULL,
        received_at TEXT NOT NULL,
        progress_type TEXT NOT NULL,
        message TEXT,
        source_address TEXT,
        attempt INTEGER NOT NULL,
        ssh_host_keys TEXT NOT NULL,
        trust_anchor_certs TEXT NOT NULL,
        truncated INTEGER NOT NULL DEFAULT 0,
        size_bytes INTEGER NOT NULL DEFAULT 0
    )""",
    f"CREATE INDEX IF NOT EXISTS {REPORTS_SCHEMA}.reports_by_serial ON reports (serial, id)",
    f"""CREATE TABLE IF NOT EXISTS {REPORTS_SCHEMA}.report_heads (
        serial TEXT PRIMARY KEY,
        latest_id INTEGER NOT NULL,
        report_count INTEGER NOT NULL,
        report_bytes INTEGER NOT NULL DEFAULT 0
    )""",
    # The flight recorder (migration 7): device requests, served and refused.
    f"""CREATE TABLE IF NOT EXISTS {REPORTS_SCHEMA}.device_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        rpc TEXT NOT NULL,
        status INTEGER NOT NULL,
        serial TEXT,
        authenticated INTEGER NOT NULL,
        refusal TEXT,
        remote TEXT,
        duration_us INTEGER NOT NULL,
        profile TEXT,
        image TEXT,
        detail TEXT
    )""",
    f"CREATE INDEX IF NOT EXISTS {REPORTS_SCHEMA}.device_events_by_serial "
    "ON device_events (serial, id)",
    f"CREATE INDEX IF NOT EXISTS {REPORTS_SCHEMA}.device_events_refused ON device_events (id) "
    "WHERE refusal IS NOT NULL",
    # Migration 8: events dropped by age.
    f"CREATE INDEX IF NOT EXISTS {REPORTS_SCHEMA}.device_events_by_time ON device_events (at)",
    # The webhook outbox (migration 9): events waiting for delivery, finished ones for a while.
    f"""CREATE TABLE IF NOT EXISTS {REPORTS_SCHEMA}.webhook_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook TEXT NOT NULL,
        event_type TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        finished_at TEXT,
        delivered INTEGER,
        last_error TEXT
    )""",
    f"CREATE INDEX IF NOT EXISTS {REPORTS_SCHEMA}.webhook_outbox_due "
    "ON webhook_outbox (next_attempt_at) WHERE finished_at IS NULL",
    f"CREATE INDEX IF NOT EXISTS {REPORTS_SCHEMA}.webhook_outbox_finished "
    "ON webhook_outbox (finished_at) WHERE finished_at IS NOT NULL",
    # Migration 13: the LDevIDs issued to devices.
    f"""CREATE TABLE IF NOT EXISTS {REPORTS_SCHEMA}.issued_certificates (
        issuer TEXT NOT NULL,
        serial_number TEXT NOT NULL,
        device TEXT NOT NULL,
        profile TEXT,
        subject TEXT NOT NULL,
        not_before TEXT NOT NULL,
        not_after TEXT NOT NULL,
        issued_at TEXT NOT NULL,
        certificate TEXT NOT NULL,
        revoked_at TEXT,
        revocation_reason TEXT,
        PRIMARY KEY (issuer, serial_number)
    )""",
    f"CREATE INDEX IF NOT EXISTS {REPORTS_SCHEMA}.issued_certificates_by_device "
    "ON issued_certificates (device, issued_at)",
    # Migration 14: a CRL reads its issuer's revoked certificates only, not all it issued.
    f"CREATE INDEX IF NOT EXISTS {REPORTS_SCHEMA}.issued_certificates_revoked "
    "ON issued_certificates (issuer) WHERE revoked_at IS NOT NULL",
    # Migration 10: events queued once, whichever instance saw their cause first.
    f"""CREATE TABLE IF NOT EXISTS {REPORTS_SCHEMA}.webhook_marks (
        mark TEXT PRIMARY KEY,
        at TEXT NOT NULL
    )""",
)
# Columns its tables gained after they were first created (migrations 8, 11, 14), added to a
# reports file made before: (table, name, type).
REPORTS_FILE_ADDED_COLUMNS = (
    ("device_events", "profile", "TEXT"),
    ("device_events", "image", "TEXT"),
    ("device_events", "detail", "TEXT"),  # migration 11
    ("issued_certificates", "revocation_reason", "TEXT"),  # migration 14
)


class SqlRunner(Protocol):
    """What `migrate` needs of a DB-API connection (sqlite3 and psycopg both fit)."""

    def execute(self, query: Any) -> Any: ...


SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            """CREATE TABLE store_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                revision INTEGER NOT NULL
            )""",
            "INSERT INTO store_state (id, revision) VALUES (1, 0)",
            # Timestamps are ISO 8601 UTC text with microseconds; specs and lists are JSON text.
            """CREATE TABLE resources (
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                spec TEXT NOT NULL,
                revision INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (kind, name)
            )""",
            # AUTOINCREMENT: ids are never reused, so "latest" and audit cursors stay monotonic.
            """CREATE TABLE reports (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                serial TEXT NOT NULL,
                received_at TEXT NOT NULL,
                progress_type TEXT NOT NULL,
                message TEXT,
                source_address TEXT,
                attempt INTEGER NOT NULL,
                ssh_host_keys TEXT NOT NULL,
                trust_anchor_certs TEXT NOT NULL
            )""",
            "CREATE INDEX reports_by_serial ON reports (serial, id)",
            """CREATE TABLE report_heads (
                serial TEXT PRIMARY KEY,
                latest_id INTEGER NOT NULL,
                report_count INTEGER NOT NULL
            )""",
            """CREATE TABLE audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at TEXT NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                detail TEXT NOT NULL
            )""",
            """CREATE TABLE tokens (
                name TEXT PRIMARY KEY,
                token_hash TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL,
                created_at TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "report sizes and truncation; no reports of deleted devices",
        (
            "ALTER TABLE reports ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE reports ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE report_heads ADD COLUMN report_bytes INTEGER NOT NULL DEFAULT 0",
            # Version 1 kept the reports of a deleted device for whoever got its serial next.
            "DELETE FROM reports WHERE serial NOT IN "
            "(SELECT name FROM resources WHERE kind = 'device')",
            "DELETE FROM report_heads WHERE serial NOT IN "
            "(SELECT name FROM resources WHERE kind = 'device')",
            # Close to report_size (the JSON text of the lists adds a few bytes).
            "UPDATE reports SET size_bytes = length(CAST(coalesce(message, '') AS BLOB)) "
            "+ length(ssh_host_keys) + length(trust_anchor_certs)",
            "UPDATE report_heads SET report_bytes = (SELECT coalesce(sum(size_bytes), 0) "
            "FROM reports WHERE reports.serial = report_heads.serial)",
        ),
    ),
    Migration(
        3,
        "audit entries found by time, for retention",
        ("CREATE INDEX audit_by_time ON audit (at)",),
    ),
    Migration(
        4,
        "progress reports in a file of their own",
        (
            f"INSERT OR IGNORE INTO {REPORTS_SCHEMA}.reports SELECT * FROM main.reports",  # noqa: S608
            f"INSERT OR IGNORE INTO {REPORTS_SCHEMA}.report_heads SELECT * FROM main.report_heads",  # noqa: S608
            "DROP TABLE main.reports",
            "DROP TABLE main.report_heads",
        ),
    ),
    Migration(
        5,
        "what changed since a revision, for readers catching up",
        (
            # Earlier entries keep a NULL revision: a reader older than this migration reads
            # the whole state once.
            "ALTER TABLE audit ADD COLUMN revision INTEGER",
            "CREATE INDEX audit_by_revision ON audit (revision)",
            "CREATE INDEX resources_by_revision ON resources (revision)",
        ),
    ),
    Migration(
        6,
        "devices found by profile and by model in name order, a page at a time",
        (
            "CREATE INDEX resources_by_profile ON resources "
            "(kind, json_extract(spec, '$.profile'), name)",
            "CREATE INDEX resources_by_model ON resources "
            "(kind, json_extract(spec, '$.model'), name)",
        ),
    ),
    # Its table is in REPORTS_FILE_SCHEMA: created with the reports file, whenever that is.
    Migration(7, "the flight recorder: device requests, served and refused", ()),
    # In the reports file too: REPORTS_FILE_ADDED_COLUMNS, checked whenever it is opened.
    Migration(8, "the flight recorder: the profile and image served, events dropped by age", ()),
    # Its table is in REPORTS_FILE_SCHEMA.
    Migration(9, "the webhook outbox", ()),
    Migration(10, "webhook events queued once", ()),
    # In the reports file: REPORTS_FILE_ADDED_COLUMNS.
    Migration(11, "the flight recorder: what a device said of itself, why it was not served", ()),
    Migration(
        12,
        "devices found and counted by site",
        ("CREATE INDEX resources_by_site ON resources (kind, json_extract(spec, '$.site'), name)",),
    ),
    # Its table is in REPORTS_FILE_SCHEMA: a device request writes it, never the state file.
    Migration(13, "the LDevIDs issued to devices", ()),
    # In the reports file: REPORTS_FILE_ADDED_COLUMNS, and its index in REPORTS_FILE_SCHEMA.
    Migration(14, "LDevIDs revoked, with the reason, for their issuer's CRL", ()),
)

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        (
            """CREATE TABLE store_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                revision BIGINT NOT NULL
            )""",
            "INSERT INTO store_state (id, revision) VALUES (1, 0)",
            # COLLATE "C": byte order, so listings sort exactly as they do on SQLite.
            """CREATE TABLE resources (
                kind TEXT COLLATE "C" NOT NULL,
                name TEXT COLLATE "C" NOT NULL,
                spec JSONB NOT NULL,
                revision BIGINT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (kind, name)
            )""",
            """CREATE TABLE reports (
                id BIGSERIAL PRIMARY KEY,
                serial TEXT COLLATE "C" NOT NULL,
                received_at TIMESTAMPTZ NOT NULL,
                progress_type TEXT NOT NULL,
                message TEXT,
                source_address TEXT,
                attempt INTEGER NOT NULL,
                ssh_host_keys JSONB NOT NULL,
                trust_anchor_certs JSONB NOT NULL
            )""",
            "CREATE INDEX reports_by_serial ON reports (serial, id)",
            """CREATE TABLE report_heads (
                serial TEXT COLLATE "C" PRIMARY KEY,
                latest_id BIGINT NOT NULL,
                report_count INTEGER NOT NULL
            )""",
            """CREATE TABLE audit (
                id BIGSERIAL PRIMARY KEY,
                at TIMESTAMPTZ NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                detail JSONB NOT NULL
            )""",
            """CREATE TABLE tokens (
                name TEXT COLLATE "C" PRIMARY KEY,
                token_hash TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "report sizes and truncation; no reports of deleted devices",
        (
            "ALTER TABLE reports ADD COLUMN truncated BOOLEAN NOT NULL DEFAULT FALSE",
            "ALTER TABLE reports ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE report_heads ADD COLUMN report_bytes BIGINT NOT NULL DEFAULT 0",
            "DELETE FROM reports WHERE serial NOT IN "
            "(SELECT name FROM resources WHERE kind = 'device')",
            "DELETE FROM report_heads WHERE serial NOT IN "
            "(SELECT name FROM resources WHERE kind = 'device')",
            "UPDATE reports SET size_bytes = octet_length(coalesce(message, '')) "
            "+ octet_length(ssh_host_keys::text) + octet_length(trust_anchor_certs::text)",
            "UPDATE report_heads SET report_bytes = (SELECT coalesce(sum(size_bytes), 0) "
            "FROM reports WHERE reports.serial = report_heads.serial)",
        ),
    ),
    Migration(
        3,
        "audit entries found by time, for retention",
        ("CREATE INDEX audit_by_time ON audit (at)",),
    ),
    # In step with SQLite's migration 4; one PostgreSQL database takes reports without waiting
    # for an admin's commit already (row locks, not a file lock).
    Migration(4, "progress reports in a file of their own (SQLite only)", ()),
    Migration(
        5,
        "what changed since a revision, for readers catching up",
        (
            "ALTER TABLE audit ADD COLUMN revision BIGINT",
            "CREATE INDEX audit_by_revision ON audit (revision)",
            "CREATE INDEX resources_by_revision ON resources (revision)",
        ),
    ),
    Migration(
        6,
        "devices found by profile and by model in name order, a page at a time",
        (
            "CREATE INDEX resources_by_profile ON resources (kind, (spec ->> 'profile'), name)",
            "CREATE INDEX resources_by_model ON resources (kind, (spec ->> 'model'), name)",
        ),
    ),
    Migration(
        7,
        "the flight recorder: device requests, served and refused",
        (
            """CREATE TABLE device_events (
                id BIGSERIAL PRIMARY KEY,
                at TIMESTAMPTZ NOT NULL,
                rpc TEXT NOT NULL,
                status INTEGER NOT NULL,
                serial TEXT COLLATE "C",
                authenticated BOOLEAN NOT NULL,
                refusal TEXT,
                remote TEXT,
                duration_us BIGINT NOT NULL
            )""",
            "CREATE INDEX device_events_by_serial ON device_events (serial, id)",
            "CREATE INDEX device_events_refused ON device_events (id) WHERE refusal IS NOT NULL",
        ),
    ),
    Migration(
        8,
        "the flight recorder: the profile and image served, events dropped by age",
        (
            "ALTER TABLE device_events ADD COLUMN profile TEXT, ADD COLUMN image TEXT",
            "CREATE INDEX device_events_by_time ON device_events (at)",
        ),
    ),
    Migration(
        9,
        "the webhook outbox",
        (
            """CREATE TABLE webhook_outbox (
                id BIGSERIAL PRIMARY KEY,
                webhook TEXT NOT NULL,
                event_type TEXT NOT NULL,
                body TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TIMESTAMPTZ NOT NULL,
                finished_at TIMESTAMPTZ,
                delivered BOOLEAN,
                last_error TEXT
            )""",
            "CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) "
            "WHERE finished_at IS NULL",
            "CREATE INDEX webhook_outbox_finished ON webhook_outbox (finished_at) "
            "WHERE finished_at IS NOT NULL",
        ),
    ),
    Migration(
        10,
        "webhook events queued once",
        (
            """CREATE TABLE webhook_marks (
                mark TEXT COLLATE "C" PRIMARY KEY,
                at TIMESTAMPTZ NOT NULL
            )""",
        ),
    ),
    Migration(
        11,
        "the flight recorder: what a device said of itself, why it was not served",
        ("ALTER TABLE device_events ADD COLUMN detail TEXT",),
    ),
    Migration(
        12,
        "devices found and counted by site",
        ("CREATE INDEX resources_by_site ON resources (kind, (spec ->> 'site'), name)",),
    ),
    Migration(
        13,
        "the LDevIDs issued to devices",
        (
            """CREATE TABLE issued_certificates (
                issuer TEXT COLLATE "C" NOT NULL,
                serial_number TEXT COLLATE "C" NOT NULL,
                device TEXT COLLATE "C" NOT NULL,
                profile TEXT,
                subject TEXT NOT NULL,
                not_before TIMESTAMPTZ NOT NULL,
                not_after TIMESTAMPTZ NOT NULL,
                issued_at TIMESTAMPTZ NOT NULL,
                certificate TEXT NOT NULL,
                revoked_at TIMESTAMPTZ,
                PRIMARY KEY (issuer, serial_number)
            )""",
            "CREATE INDEX issued_certificates_by_device ON issued_certificates (device, issued_at)",
        ),
    ),
    Migration(
        14,
        "LDevIDs revoked, with the reason, for their issuer's CRL",
        (
            "ALTER TABLE issued_certificates ADD COLUMN revocation_reason TEXT",
            "CREATE INDEX issued_certificates_revoked ON issued_certificates (issuer) "
            "WHERE revoked_at IS NOT NULL",
        ),
    ),
)


def migrate(connection: SqlRunner, migrations: tuple[Migration, ...]) -> int:
    """Bring the schema up to the last migration; return the version now in force.

    Must run inside a transaction that serialises concurrent openers (SQLite: BEGIN
    IMMEDIATE; PostgreSQL: an advisory transaction lock).
    """
    supported = migrations[-1].version
    connection.execute(
        """CREATE TABLE IF NOT EXISTS schema_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        )"""
    )
    row = connection.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
    current = row[0] if row else 0
    if current > supported:
        raise StoreError(
            f"database schema version {current} is newer than this server supports "
            f"({supported}); upgrade sztp-server"
        )
    pending = [migration for migration in migrations if migration.version > current]
    for migration in pending:
        for statement in migration.statements:
            connection.execute(statement)
    if pending:
        # Inlined, not bound: the two drivers spell placeholders differently, and the value is
        # an int from the migration table above, never input.
        connection.execute(
            f"INSERT INTO schema_version (id, version) VALUES (1, {int(supported)}) "  # noqa: S608
            "ON CONFLICT (id) DO UPDATE SET version = excluded.version"
        )
    return supported
