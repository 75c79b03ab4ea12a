"""The face store and its in-memory search, on SQLite and on a real PostgreSQL server.

PostgreSQL: the server .ci/start-postgres starts (TEST_POSTGRES_URL); without it these
tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa
from tests_helpers import require

from mysite.faces import store as store_mod
from mysite.faces.index import FaceIndex, Match, confidence
from mysite.faces.store import FaceStore, StoreFull, StoreUnavailable


def _postgres_url() -> str:
    require("postgres")
    return os.environ["TEST_POSTGRES_URL"]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty face database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'faces.sqlite3'}"
        return
    pg = _postgres_url()
    engine = sa.create_engine(pg)
    store_mod.metadata.drop_all(engine)
    engine.dispose()
    yield pg
    engine = sa.create_engine(pg)
    store_mod.metadata.drop_all(engine)
    engine.dispose()


def _vec(seed: int) -> np.ndarray:
    """A unit-length 128-d vector (dlib's embeddings are about that long), the same for one seed."""
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


ODD_NAMES = ["Robert'); DROP TABLE faces;--", "O'Brien \"Bob\"", "李小龙", "%_*?", "a" * 200, " spaced ", "😀 emoji"]


def test_add_list_delete_and_odd_names_stored_as_sent(url) -> None:
    store = FaceStore(url)
    assert store.names() == {} and store.generation() == 0
    for i, name in enumerate(ODD_NAMES):
        assert store.add(name, [_vec(i), _vec(100 + i)]) == 2
    assert store.names() == {n: 2 for n in sorted(ODD_NAMES)}
    assert store.generation() == len(ODD_NAMES)
    assert store.delete("nobody") == 0 and store.generation() == len(ODD_NAMES)  # nothing changed: no new generation
    assert store.delete(ODD_NAMES[0]) == 2
    assert ODD_NAMES[0] not in store.names() and "faces" in sa.inspect(store.engine()).get_table_names()
    snap = store.snapshot()
    assert snap.matrix.shape == (2 * (len(ODD_NAMES) - 1), 128) and snap.matrix.dtype == np.float32
    assert set(snap.names) == set(ODD_NAMES[1:]) and snap.skipped == 0


def test_names_come_a_page_at_a_time_in_the_order_names_sorts_them(url) -> None:
    # A database sorting by its locale (PostgreSQL's en-US: a, b, B, e, É) would page in another order.
    store = FaceStore(url)
    for i, name in enumerate([*ODD_NAMES, "a", "B", "b", "É", "e", "Z"]):
        store.add(name, [_vec(i)] * (1 + i % 2))
    pages, after = [], None
    while page := store.names_page(after, 3):
        assert len(page) <= 3
        pages.extend(page)
        after = page[-1][0]
    assert pages == list(store.names().items()) and len(pages) == len(ODD_NAMES) + 6


@pytest.fixture()
def pg() -> Iterator[tuple[str, sa.Engine]]:
    """The test server's URL and an engine on it as the owner, with no face tables before or after."""
    url = _postgres_url()
    engine = sa.create_engine(url)
    store_mod.metadata.drop_all(engine)
    try:
        yield url, engine
    finally:
        store_mod.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS other CASCADE"))
            conn.execute(sa.text("DROP ROLE IF EXISTS mysite_rw"))
        engine.dispose()


def test_a_page_of_names_is_read_from_an_index_on_postgresql(pg) -> None:
    # Ordered by code point, a page could not use the index on the names (the database's collation): each
    # page read and sorted every name after the last, and a list of 10,000 cost the database 0.64 s.
    url, _ = pg
    store = FaceStore(url)
    store.add("someone", [_vec(1)])
    name = store._name_order()
    query = sa.select(name, sa.func.count()).group_by(name).order_by(name).limit(256).where(name > "a")
    sql = str(query.compile(store.engine(), compile_kwargs={"literal_binds": True}))
    with store.engine().connect() as conn:  # with no other way, the planner takes one it is told not to
        conn.execute(sa.text("SET enable_seqscan = off"))
        conn.execute(sa.text("SET enable_sort = off"))
        plan = "\n".join(row[0] for row in conn.execute(sa.text("EXPLAIN " + sql)))
    assert "faces_userid_c" in plan and "Sort" not in plan, plan


def test_the_names_index_is_made_beside_the_store_whatever_other_schemas_hold(pg) -> None:
    # An index of that name on a "faces" table of another schema passed for the store's own.
    url, engine = pg
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS other"))
        conn.execute(sa.text("CREATE TABLE other.faces (userid text)"))
        conn.execute(sa.text("CREATE INDEX faces_userid_c ON other.faces (userid)"))
    FaceStore(url).add("someone", [_vec(1)])
    with engine.connect() as conn:
        schemas = conn.execute(sa.text("SELECT schemaname FROM pg_indexes WHERE indexname = 'faces_userid_c'"))
        assert sorted(row[0] for row in schemas) == ["other", "public"]


def test_a_role_that_does_not_own_the_tables_is_served(pg) -> None:
    # Creating the list's index at start-up failed for a role that may read and write the tables but does
    # not own them, though the index was there: every face route answered 503.
    from sqlalchemy.engine import make_url

    url, engine = pg
    with engine.begin() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS mysite_rw"))
        conn.execute(sa.text("CREATE ROLE mysite_rw LOGIN"))
    FaceStore(url).add("someone", [_vec(1)])  # the tables and the index, made by their owner
    with engine.begin() as conn:
        conn.execute(sa.text("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO mysite_rw"))
        conn.execute(sa.text("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO mysite_rw"))
    as_role = make_url(url).set(username="mysite_rw").render_as_string(hide_password=False)
    store = FaceStore(as_role)
    store.add("another", [_vec(2)])
    assert store.names_page(None, 10) == [("another", 1), ("someone", 1)]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX faces_userid_c"))
    assert FaceStore(as_role).names_page("another", 10) == [("someone", 1)]  # no index, and unable to make it


def test_a_store_full_of_bad_rows_loses_only_those(url) -> None:
    store = FaceStore(url)
    store.add("good", [_vec(1)])
    nan = np.full(128, np.nan, np.float32).tobytes()
    with store.engine().begin() as conn:
        conn.execute(store_mod.faces.insert(), [
            {"userid": "short", "embedding": b"\x00" * 10, "created": 0.0},
            {"userid": "nan", "embedding": nan, "created": 0.0},
            {"userid": "", "embedding": _vec(2).tobytes(), "created": 0.0},
        ])
    snap = store.snapshot()
    assert snap.names == ("good",) and snap.skipped == 3
    match = FaceIndex(store).search([_vec(1)])[0]
    assert match.userid == "good" and match.distance < 1e-3


def test_search_finds_the_nearest_and_another_instance_sees_a_change_within_a_second(url) -> None:
    a, b = FaceStore(url), FaceStore(url)  # two instances sharing one database
    index_a, index_b = FaceIndex(a), FaceIndex(b)
    assert index_b.search([_vec(1)])[0].userid is None  # empty: nobody to name
    a.add("alice", [_vec(1)])
    a.add("bob", [_vec(2), _vec(3)])
    index_a.changed()
    found = index_a.search([_vec(3) + 0.01, _vec(1), _vec(50)])
    assert [m.userid for m in found[:2]] == ["bob", "alice"]
    assert found[0].confidence > 0.99 and found[2].confidence < 0.01  # a stranger is far from everyone
    # b learns of the change by the generation counter, without being told.
    started = time.monotonic()
    while index_b.search([_vec(2)])[0].userid != "bob":
        assert time.monotonic() - started < 1.0, "the other instance did not see the registration within 1 s"
        time.sleep(0.05)
    a.delete("bob")
    started = time.monotonic()
    while index_b.search([_vec(2)])[0].userid == "bob":
        assert time.monotonic() - started < 1.0, "the other instance did not see the deletion within 1 s"
        time.sleep(0.05)


def test_concurrent_register_and_delete_of_one_name_leave_a_consistent_store(url) -> None:
    store = FaceStore(url)
    store.engine()  # tables made before the threads race
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                if (i + j) % 2:
                    store.add("same", [_vec(i * 100 + j)])
                else:
                    store.delete("same")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    snap = store.snapshot()
    assert store.names().get("same", 0) == len(snap.names)  # whatever won, the table and the count agree
    assert snap.generation == store.generation()
    store.delete("same")
    assert store.names() == {}


def test_a_full_store_refuses_a_registration_whole_and_takes_one_after_a_deletion(url) -> None:
    store = FaceStore(url)
    assert store.add("a", [_vec(1), _vec(2)], most=3) == 2
    generation = store.generation()
    with pytest.raises(StoreFull) as refused:
        store.add("b", [_vec(3), _vec(4)], most=3)  # one would fit, two do not: neither is stored
    assert refused.value.code == 507 and "MYSITE_FACES_MAX" in refused.value.message
    assert store.names() == {"a": 2} and store.generation() == generation  # rolled back, the counter too
    assert store.add("b", [_vec(3)], most=3) == 1
    store.delete("a")
    assert store.add("c", [_vec(5), _vec(6)], most=3) == 2


def test_concurrent_registrations_never_pass_the_limit(url) -> None:
    store = FaceStore(url)
    store.engine()
    most, outcomes = 10, []

    def work(i: int) -> None:
        for j in range(6):
            try:
                outcomes.append(store.add(f"p{i}", [_vec(i * 100 + j)], most=most))
            except StoreFull:
                outcomes.append(0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 24 and sum(outcomes) == most  # each add counted after the one before it committed
    assert sum(store.names().values()) == most


def test_an_unreachable_database_is_a_503_naming_the_setting() -> None:
    # A closed port on loopback: nothing listens there.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = FaceStore(f"postgresql+psycopg://nobody:secret@127.0.0.1:{port}/none")
    with pytest.raises(StoreUnavailable) as err:
        store.names()
    assert err.value.code == 503 and "MYSITE_FACES_DB" in err.value.message and "secret" not in err.value.message


# Every client's default min_confidence for recognize, from each package's source.
CLIENT_DEFAULTS = {"deepstack-python 0.8/0.9": 0.45, "codeproject-ai-api": 0.45, "DeepStack's server": 0.67,
                   "deepstack-sdk": 0.70}
# The measured extremes for faces 40 px wide or more (bench.face_calibration, docs/faces.md).
SAME_PERSON_MAX, OTHER_PERSON_MIN = 0.543, 0.688


def _limit(threshold: float) -> float:
    """The largest distance (to 0.001) whose confidence reaches ``threshold``."""
    return max(d / 1000 for d in range(0, 1500) if confidence(d / 1000) >= threshold)


@pytest.mark.parametrize("client", sorted(CLIENT_DEFAULTS))
def test_every_client_default_falls_inside_the_measured_gap_with_room_on_both_sides(client: str) -> None:
    # Room on both sides: a larger gallery or other photos move both extremes.
    limit = _limit(CLIENT_DEFAULTS[client])
    assert SAME_PERSON_MAX + 0.04 <= limit <= OTHER_PERSON_MIN - 0.06, (client, limit)


def test_confidence_is_a_steep_logistic_of_the_distance() -> None:
    assert confidence(0.61) == pytest.approx(0.5)
    assert confidence(SAME_PERSON_MAX) >= 0.9 and confidence(OTHER_PERSON_MIN) < 0.07
    assert _limit(0.67) == pytest.approx(0.589, abs=0.002) and _limit(0.45) == pytest.approx(0.616, abs=0.002)
    assert confidence(math.inf) == 0.0 and confidence(0.0) == pytest.approx(1.0, abs=1e-5)
    values = [confidence(d / 100) for d in range(0, 150)]
    assert values == sorted(values, reverse=True)


def test_a_face_narrower_than_40_px_is_never_named_however_near() -> None:
    near = Match("Eileen Collins", 0.1, confidence(0.1))
    assert FaceIndex.named(near, 40, 0.45) and not FaceIndex.named(near, 39, 0.0)
    assert not FaceIndex.named(Match(None, math.inf, 0.0), 500, 0.0)


def test_bad_database_urls_stop_the_start_naming_the_variable() -> None:
    from mysite.settings import SettingsError, load
    for bad in ("nonsense", "oracle://x/y", "http://example.com/"):
        with pytest.raises(SettingsError, match="MYSITE_FACES_DB must be a database URL"):
            load({"MYSITE_FACES_DB": bad}, environ={})
    assert load({"MYSITE_FACES_DB": "sqlite:////tmp/x.sqlite3"}, environ={}).faces_db == "sqlite:////tmp/x.sqlite3"
