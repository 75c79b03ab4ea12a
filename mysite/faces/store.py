"""Registered faces in a database: SQLAlchemy Core over SQLite (the default) or PostgreSQL.

Two tables. ``faces`` holds one row per registered face: the person's name as given
(a bound parameter, never interpreted) and the 128 numbers of its embedding as
float32 bytes; photos are never stored. ``faces_generation`` holds one counter,
raised in the same transaction as every change, so an instance can tell cheaply
whether its in-memory copy (``index.py``) is stale, also when another instance
sharing the database made the change.

Any failure to reach the database is an ``Unavailable`` (503) naming the setting;
the engine is made on first use in each process (never shared across a fork).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from mysite.errors import ApiError, Reason, Unavailable

log = logging.getLogger(__name__)

DIMENSIONS = 128
EMBEDDING_BYTES = DIMENSIONS * 4  # float32
MAX_NAME = 200  # characters in a name
CONNECT_TIMEOUT = 3  # seconds to reach a database server before answering 503

metadata = sa.MetaData()
faces = sa.Table(
    "faces", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("userid", sa.String(MAX_NAME), nullable=False, index=True),
    sa.Column("embedding", sa.LargeBinary, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)
generation = sa.Table(
    "faces_generation", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("value", sa.BigInteger, nullable=False),
)


class StoreUnavailable(Unavailable):
    """The face database cannot be reached or used: 503, the rest of the site unaffected."""

    reason = Reason.UNAVAILABLE


class StoreFull(ApiError):
    """A registration past the faces the store may hold: 507 until some are deleted."""

    code, status, reason = 507, "insufficient storage", Reason.STORE_FULL


@dataclass(frozen=True)
class Snapshot:
    """Every usable registered face at one generation: names and an N x 128 float32 matrix."""

    generation: int
    names: tuple[str, ...]
    matrix: np.ndarray
    skipped: int  # rows that were not a usable embedding (wrong size, not finite)


def default_url(data_dir: Path) -> str:
    """The SQLite file in the instance's data folder."""
    return f"sqlite:///{(data_dir / 'faces.sqlite3').resolve()}"


def check_url(url: str) -> str:
    """``url`` if SQLAlchemy can read it as a database URL, else ValueError (a settings error at start)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(url) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise ValueError(url)
    return url


def public_url(url: str) -> str:
    """The URL as a message may show it: never the password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unreadable URL)"


def _check_room(conn: sa.Connection, more: int, most: int | None) -> None:
    if most is None:
        return
    held = int(conn.execute(sa.select(sa.func.count()).select_from(faces)).scalar_one())
    if held + more > most:
        raise StoreFull(f"the face store holds {held} faces and may hold {most} "
                        f"(MYSITE_FACES_MAX); delete some before registering more")


class FaceStore:
    """The registered faces of one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        """This process's engine, made (and the tables created) on first use."""
        with self._lock:
            if self._engine is None or self._pid != os.getpid():
                self._engine = self._connect()
                self._pid = os.getpid()
            return self._engine

    def _connect(self) -> Engine:
        url = make_url(self.url)
        args: dict[str, object] = {}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            args = {"timeout": 10}  # seconds a writer waits for another's lock
        else:  # PostgreSQL (psycopg) and MySQL drivers take the same keyword
            args = {"connect_timeout": CONNECT_TIMEOUT}
        try:
            engine = sa.create_engine(url, connect_args=args, pool_pre_ping=True)
            metadata.create_all(engine)
            with engine.begin() as conn:
                if conn.execute(sa.select(generation.c.value).where(generation.c.id == 1)).first() is None:
                    conn.execute(generation.insert().values(id=1, value=0))
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        except ImportError as exc:  # the driver for this URL is not installed
            raise StoreUnavailable(f"the face database {public_url(self.url)} needs a driver that is not "
                                   f"installed ({exc.name}); for PostgreSQL: pip install 'psycopg[binary]'") from None
        if engine.dialect.name == "postgresql":
            _index_names(engine)
        return engine

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        log.error("face database %s: %s", public_url(self.url), str(exc).splitlines()[0])
        return StoreUnavailable(f"the face database is unreachable or failing ({type(exc).__name__}); "
                                "check MYSITE_FACES_DB and the database server, then retry")

    def _bump(self, conn: sa.Connection) -> None:
        conn.execute(generation.update().where(generation.c.id == 1).values(value=generation.c.value + 1))

    def add(self, userid: str, embeddings: Sequence[Sequence[float]], most: int | None = None) -> int:
        """Register ``embeddings`` under ``userid`` in one transaction; how many rows were added.

        ``most``: faces the whole store may hold (None: no limit); past it, ``StoreFull`` and nothing added.
        """
        rows = [{"userid": userid, "embedding": np.asarray(e, np.float32).tobytes(), "created": time.time()}
                for e in embeddings]
        try:
            with self.engine().begin() as conn:
                self._bump(conn)  # first: its lock on the counter's row makes concurrent adds count in turn
                _check_room(conn, len(rows), most)
                conn.execute(faces.insert(), rows)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        return len(rows)

    def check_room(self, more: int, most: int | None) -> None:
        """``StoreFull`` if ``more`` faces would not fit now: a registration's early refusal, before its work
        (``add`` counts again in its own transaction)."""
        if most is None:
            return
        try:
            with self.engine().connect() as conn:
                _check_room(conn, more, most)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None

    def delete(self, userid: str) -> int:
        """Forget every face of ``userid``; how many there were."""
        try:
            with self.engine().begin() as conn:
                count = conn.execute(faces.delete().where(faces.c.userid == userid)).rowcount
                if count:
                    self._bump(conn)
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        return int(count or 0)

    def names(self) -> dict[str, int]:
        """Everyone registered, sorted, with how many faces each has."""
        try:
            with self.engine().connect() as conn:
                found = conn.execute(sa.select(faces.c.userid, sa.func.count()).group_by(faces.c.userid)).all()
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        return {str(n): int(c) for n, c in sorted(found, key=lambda row: str(row[0]))}

    def names_page(self, after: str | None, most: int) -> list[tuple[str, int]]:
        """At most ``most`` of the names that sort after ``after`` (all, from None), in order, with how many
        faces each has: a list is read a page at a time, so what one holds does not grow with the store."""
        name = self._name_order()
        query = sa.select(name, sa.func.count()).group_by(name).order_by(name).limit(most)
        if after is not None:
            query = query.where(name > after)
        try:
            with self.engine().connect() as conn:
                found = conn.execute(query).all()
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        return [(str(n), int(c)) for n, c in found]

    def _name_order(self) -> sa.ColumnElement[str]:
        # By code point, as names() sorts: SQLite compares UTF-8 bytes, PostgreSQL its locale unless told "C".
        column = faces.c.userid
        return column.collate("C") if self.engine().dialect.name == "postgresql" else column

    def generation(self) -> int:
        """The change counter: it moves whenever a face is added or deleted anywhere."""
        try:
            with self.engine().connect() as conn:
                value = conn.execute(sa.select(generation.c.value).where(generation.c.id == 1)).scalar()
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        return int(value or 0)

    def snapshot(self) -> Snapshot:
        """Every usable face, read in one transaction with the generation it belongs to."""
        try:
            with self.engine().connect() as conn, conn.begin():
                gen = conn.execute(sa.select(generation.c.value).where(generation.c.id == 1)).scalar()
                rows = conn.execute(sa.select(faces.c.userid, faces.c.embedding).order_by(faces.c.id)).all()
        except SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        names: list[str] = []
        vectors: list[np.ndarray] = []
        skipped = 0
        for userid, blob in rows:
            vector = np.frombuffer(blob, np.float32) if isinstance(blob, bytes) and len(blob) == EMBEDDING_BYTES \
                else None
            if vector is None or not isinstance(userid, str) or not userid or not np.isfinite(vector).all():
                skipped += 1
                continue
            names.append(userid)
            vectors.append(vector)
        if skipped:
            log.warning("face database: %d rows are not usable embeddings and were left out", skipped)
        matrix = np.vstack(vectors) if vectors else np.zeros((0, DIMENSIONS), np.float32)
        return Snapshot(int(gen or 0), tuple(names), matrix, skipped)


def _index_names(engine: Engine) -> None:
    """On PostgreSQL, the index the list's pages are read from (names in code-point order), when missing.
    Without it the list still works, each page at a cost that grows with the store: a role that may not
    create it (not the table's owner), or another process creating it at the same moment, is no error."""
    exists = sa.text("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'faces' "
                     "AND indexname = 'faces_userid_c'")
    try:
        with engine.begin() as conn:
            if conn.execute(exists).first() is None:
                conn.execute(sa.text('CREATE INDEX IF NOT EXISTS faces_userid_c ON faces (userid COLLATE "C")'))
    except SQLAlchemyError as exc:
        log.warning("the face list's index (faces_userid_c) could not be made: %s; the list works, each page "
                    "costing the database more as the store grows", str(exc).splitlines()[0][:200])
