"""For the tests: the Python SDK's conventions, each on a route, so a test can check that a
mistake behaves as it does in Rust.

| request | does |
| --- | --- |
| `/raise` | writes `before`, then raises: 500, and the write is kept |
| `/http-error` | raises `HttpError(418, "short and stout")` |
| `/none` | returns None (a mistake: 500, said in the host log) |
| `/get?key=K` | the JSON value of K |
| `/bad-value` | tries to store bytes and an object JSON cannot encode: the two errors |
| `/many?n=N` | put_many, get_many, list and delete_many of N keys (batched under the limit) |
| `/rollback` | a transaction that raises, then what is left |
| `/too-large` | a value over the host's limit: the StorageError's code |
| `/alarm-in?secs=S` | sets the alarm S seconds from now, answers how far away it is (ms) |
| `/sql` | a fixed SQL scenario (the same as test-object-js's): what each step answered, as JSON |
"""

import dohost
from dohost import HttpError, Response, SqlError, StorageError


@dohost.durable_object
class TestObject(dohost.DurableObject):
    def fetch(self, request):
        storage = self.state.storage
        q = request.query
        if request.path == "/raise":
            storage.put("before", "kept")
            raise ValueError("deliberate")
        if request.path == "/http-error":
            raise HttpError(418, "short and stout")
        if request.path == "/none":
            return None
        if request.path == "/get":
            return Response.json(storage.get(q["key"]))
        if request.path == "/bad-value":
            errors = []
            for value in (b"raw", object()):
                try:
                    storage.put("bad", value)
                except TypeError as e:
                    errors.append(str(e))
            return Response.json({"errors": errors, "stored": storage.get_bytes("bad")})
        if request.path == "/many":
            n = int(q["n"])
            storage.put_many({f"m{i:05}": i for i in range(n)})
            got = storage.get_many([f"m{i:05}" for i in range(n)])
            keys = storage.list(prefix="m", keys_only=True)
            deleted = storage.delete_many(list(got))
            return Response.json(
                {"got": len(got), "listed": len(keys), "deleted": deleted, "left": len(storage.list())}
            )
        if request.path == "/rollback":
            try:
                with storage.transaction():
                    storage.put("inside", 1)
                    raise RuntimeError("undo")
            except RuntimeError:
                pass
            return Response.json({"inside": storage.get("inside")})
        if request.path == "/too-large":
            try:
                storage.put("big", "x" * (storage.limits().max_value_bytes + 1))
            except StorageError as e:
                return Response.json({"code": e.code, "message": e.message})
            return Response.text("stored", 500)
        if request.path == "/alarm-in":
            import time

            storage.set_alarm_in(float(q["secs"]))
            return Response.json(storage.get_alarm() - int(time.time() * 1000))
        if request.path == "/sql":
            return Response.json(sql_scenario(storage))
        return Response.text("Not found", 404)


def sql_scenario(storage):
    """Every part of the SQL API once; the JavaScript test object answers the same JSON."""
    sql = storage.sql
    sql.exec("DROP TABLE IF EXISTS t; CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)")
    inserted = sql.exec(
        "INSERT INTO t(name, score, data) VALUES (?, ?, ?), (?, ?, ?)",
        "ada", 1.5, b"\x00\x01\xff", "bob", None, None,
    )
    cursor = sql.exec("SELECT id, name, score, data FROM t ORDER BY id")
    # The first row by iteration, the rest with to_array: one pass over the rows.
    rows = [next(iter(cursor))] + cursor.to_array()
    for row in rows:
        if row["data"] is not None:
            row["data"] = list(row["data"])
    errors = {}
    for name, query in (("syntax", "SELEC 1"), ("constraint", "INSERT INTO t(id, name) VALUES (1, 'again')")):
        try:
            sql.exec(query)
        except SqlError as e:
            errors[name] = e.code
    try:
        with storage.transaction():
            sql.exec("INSERT INTO t(name) VALUES ('carol')")
            raise RuntimeError("undo")
    except RuntimeError:
        pass
    return {
        "columns": cursor.column_names,
        "written": inserted.rows_written,
        "rows": rows,
        "read_some": cursor.rows_read > 0,
        "raw": list(sql.exec("SELECT name FROM t ORDER BY id").raw()),
        "one": sql.exec("SELECT count(*) AS n, ? AS flag FROM t", True).one(),
        "errors": errors,
        "after_rollback": sql.exec("SELECT count(*) AS n FROM t").one()["n"],
        "sized": sql.database_size > 0,
    }
