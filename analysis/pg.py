"""PostgreSQL connections: the source URL, credentials from the environment, clear errors.

A warehouse is named by a URL without a password::

    postgresql://analyst@warehouse.example.com:5432/sales?schema=kpisat

The schema comes from ``?schema=NAME``, else ``KPISAT_PG_SCHEMA``, else ``public``.
The password comes only from the environment, in this order: the variable named by
``KPISAT_PG_PASSWORD_ENV`` (``KPISAT_PG_PASSWORD_ENV=WAREHOUSE_PW``), then what libpq
finds by itself (``PGPASSWORD``, ``~/.pgpass`` / ``PGPASSFILE``). A URL carrying a
password is refused, so the password can never reach a notebook, manifest or log.

Every failure becomes a one-line ``SourceError`` naming host, port and database but
never the password or the connection string; only ``analysis.sources`` and
``analysis.pg_load`` call this module.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from .errors import SourceError

log = logging.getLogger(__name__)

#: Names the environment variable holding the password (its value is the name).
PASSWORD_ENV = "KPISAT_PG_PASSWORD_ENV"
#: Schema holding the canonical tables when the URL has no ``?schema=``.
SCHEMA_ENV = "KPISAT_PG_SCHEMA"
DEFAULT_SCHEMA = "public"
#: Seconds to wait for a server before giving up (unless the URL or PGCONNECT_TIMEOUT says).
CONNECT_TIMEOUT = 10
SCHEMES = ("postgresql://", "postgres://")
#: Query parameters that would carry a secret; a URL holding one is refused.
SECRET_KEYS = frozenset({"password", "passwd", "pwd", "token", "secret", "sslpassword"})
_PASSWORD_HINT = ("set PGPASSWORD, add a ~/.pgpass entry, or name the variable holding it "
                  f"in {PASSWORD_ENV}")


@dataclass(frozen=True)
class PgTarget:
    """Where a warehouse is, without credentials.

    Attributes
    ----------
    conninfo : str
        The URL as libpq takes it: no password, no ``schema`` parameter.
    schema : str
        Schema holding the canonical tables.
    user, host, port, dbname : str or None
        As the URL gives them (None: libpq's defaults / ``PG*`` variables apply).
    """

    conninfo: str
    schema: str
    user: str | None
    host: str | None
    port: str | None
    dbname: str | None

    @property
    def where(self) -> str:
        """``host:port/dbname`` for messages (defaults named as such)."""
        host = self.host or os.environ.get("PGHOST") or "the default host"
        port = self.port or os.environ.get("PGPORT")
        db = self.dbname or os.environ.get("PGDATABASE") or self.user or "default"
        return f"{host}{':' + port if port else ''}/{db}"

    def describe(self) -> str:
        """The source for logs and manifests: the URL without secrets, with the schema."""
        return f"{self.conninfo.split('?', 1)[0]}?schema={self.schema}"

    def location(self, table: str) -> str:
        """Where ``table`` is read from, for messages: ``schema.table at host:port/db``."""
        return f"{self.schema}.{table} at {self.where}"


def is_postgres_url(text: str) -> bool:
    """True when ``text`` is a ``postgresql://`` (or ``postgres://``) URL."""
    return str(text).startswith(SCHEMES)


def parse_url(url: str, *, schema: str | None = None) -> PgTarget:
    """Parse a warehouse URL, refusing one that carries a password.

    Parameters
    ----------
    url : str
        ``postgresql://user@host:port/dbname[?schema=NAME&sslmode=...]``; query
        parameters other than ``schema`` pass through to libpq.
    schema : str, optional
        Overrides the URL's ``?schema=`` and ``KPISAT_PG_SCHEMA``.

    Returns
    -------
    PgTarget

    Raises
    ------
    SourceError
        When the URL holds a password (the message never repeats it) or is malformed.
    """
    if not is_postgres_url(url):
        raise SourceError("not a PostgreSQL URL; write it like postgresql://user@host:5432/dbname")
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if ":" in userinfo or any(k.lower() in SECRET_KEYS for k, _ in query):
        raise SourceError("the PostgreSQL URL contains a password; remove it from the URL and "
                          + _PASSWORD_HINT)
    chosen = schema or next((v for k, v in query if k == "schema"), None) \
        or os.environ.get(SCHEMA_ENV) or DEFAULT_SCHEMA
    rest = [(k, v) for k, v in query if k != "schema"]
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    host, _, port = hosts.rpartition(":") if "," not in hosts and not hosts.endswith("]") \
        else (hosts, "", "")
    if not host:  # no port given: rpartition put everything in `port`
        host, port = port, ""
    host = host or dict(query).get("host")
    return PgTarget(conninfo=conninfo, schema=chosen, user=unquote(userinfo) or None,
                    host=unquote(host) if host else None, port=port or None,
                    dbname=unquote(parts.path.lstrip("/")) or None)


def password_from_env() -> str | None:
    """The password from the variable named by ``KPISAT_PG_PASSWORD_ENV``, if it names one.

    Returns None when ``KPISAT_PG_PASSWORD_ENV`` is unset: libpq then looks at
    ``PGPASSWORD`` and ``~/.pgpass`` itself.

    Raises
    ------
    SourceError
        When the named variable is not set (the message names the variable only).
    """
    name = os.environ.get(PASSWORD_ENV, "").strip()
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        raise SourceError(f"{PASSWORD_ENV} names the variable {name}, which is not set; "
                          f"export {name} or unset {PASSWORD_ENV} to use PGPASSWORD / ~/.pgpass")
    return value


def connect(target: PgTarget, *, read_only: bool = True, snapshot: bool = False):
    """Open a connection to ``target`` with the password from the environment.

    Parameters
    ----------
    target : PgTarget
    read_only : bool
        Every transaction read-only (sources); loaders pass False.
    snapshot : bool
        Read every table in one REPEATABLE READ transaction, so tables loaded while
        kpisat reads are seen consistently (all before or all after).

    Returns
    -------
    psycopg.Connection

    Raises
    ------
    SourceError
        One line, without password or connection string: server unreachable,
        authentication failed, database missing, or the driver's own message.
    """
    import psycopg

    extra: dict[str, object] = {"application_name": "kpisat"}
    password = password_from_env()
    if password is not None:
        extra["password"] = password
    if "connect_timeout" not in target.conninfo and not os.environ.get("PGCONNECT_TIMEOUT"):
        extra["connect_timeout"] = CONNECT_TIMEOUT
    try:
        con = psycopg.connect(target.conninfo, **extra)
    except psycopg.Error as e:
        raise connection_error(e, target) from None
    if snapshot:
        con.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    con.read_only = read_only
    log.debug("connected to %s", target.describe())
    return con


# ---------------------------------------------------------------- errors
#: (pattern in libpq's message, what happened, what to do) — first match wins.
_CONNECT_FAILURES = (
    (r"password authentication failed|no password supplied|authentication failed"
     r"|password is required|SCRAM|role \S+ does not exist",
     "authentication failed for user {user}", _PASSWORD_HINT),
    (r"database \S+ does not exist",
     "database {db} does not exist", "check the database name in the URL"),
    (r"Connection refused",
     "connection refused", "check the host and port in the URL and that the server is running"),
    (r"could not translate host name|Name or service not known|nodename nor servname",
     "host not found", "check the host name in the URL"),
    (r"timeout expired|timed out|No route to host|Network is unreachable",
     "host unreachable", "check the host, port and network (firewall, VPN)"),
    (r"no pg_hba\.conf entry|not permitted to log in|permission denied for database",
     "the server does not allow this login",
     "ask the database administrator for access (pg_hba.conf, CONNECT privilege)"),
    (r"invalid response to SSL negotiation|unexpected message from server|"
     r"server closed the connection unexpectedly",
     "the server there does not answer as PostgreSQL", "check the host and port in the URL"),
    (r"SSL", "SSL negotiation failed",
     "set ?sslmode=require or ?sslmode=disable to match the server"),
)


def connection_error(exc: BaseException, target: PgTarget) -> SourceError:
    """A one-line SourceError for a failed connection, with no secret in it."""
    text = str(exc)
    for pattern, what, todo in _CONNECT_FAILURES:
        if re.search(pattern, text, re.IGNORECASE):
            what = what.format(user=repr(target.user or os.environ.get("PGUSER") or "default"),
                               db=repr(target.dbname or os.environ.get("PGDATABASE") or "default"))
            return SourceError(f"cannot connect to PostgreSQL at {target.where}: {what} — {todo}")
    return SourceError(f"cannot connect to PostgreSQL at {target.where}: {sanitize(text)}")


def query_error(exc: BaseException, target: PgTarget, table: str | None = None) -> SourceError:
    """A one-line SourceError for a failed query (reading or loading ``table``)."""
    import psycopg

    where = target.location(table) if table else f"schema {target.schema} at {target.where}"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return SourceError(f"cannot read {where}: permission denied — grant the user USAGE on "
                           f"schema {target.schema} and SELECT on its tables")
    if isinstance(exc, psycopg.OperationalError):
        return SourceError(f"lost the connection to PostgreSQL while reading {where}: "
                           f"{sanitize(str(exc))}")
    return SourceError(f"PostgreSQL error on {where}: {sanitize(str(exc))}")


_SECRET_OPTION = re.compile(
    r"\b(password|passwd|pwd|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.I)
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@", re.I)


def sanitize(text: str) -> str:
    """The first line of a driver message with passwords and connection strings removed."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = re.sub(r"^connection failed:\s*", "", lines[0] if lines else "unknown error")
    line = _SECRET_OPTION.sub(lambda m: f"{m.group(1)}=***", line)
    line = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}@", line)
    for secret in _known_secrets():
        line = line.replace(secret, "***")
    return line


def _known_secrets() -> list[str]:
    found = [os.environ.get("PGPASSWORD", "")]
    name = os.environ.get(PASSWORD_ENV, "").strip()
    if name:
        found.append(os.environ.get(name, ""))
    return [s for s in found if len(s) >= 3]
