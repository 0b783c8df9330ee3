// For the tests: the JS SDK's conventions, each on a route (the routes and answers of guests/test-object-py), so a test can check that a mistake behaves as it does in Rust.
//
// | request | does |
// | --- | --- |
// | `/raise` | writes `before`, then throws: 500, and the write is kept |
// | `/http-error` | throws `HttpError(418, "short and stout")` |
// | `/none` | returns undefined (a mistake: 500, said in the host log) |
// | `/get?key=K` | the JSON value of K |
// | `/bad-value` | tries to store bytes and a value JSON cannot encode: the two errors |
// | `/many?n=N` | putMany, getMany, list and deleteMany of N keys (batched under the limit) |
// | `/rollback` | a transaction that throws, then what is left |
// | `/too-large` | a value over the host's limit: the StorageError's code |
// | `/alarm-in?secs=S` | sets the alarm S seconds from now, answers how far away it is (ms) |
// | `/string-value` | stores a string, answers the bytes stored |
// | `/string-body`, `/object-body` | a Response built from a string, and from an object |
// | `/sql` | a fixed SQL scenario (the same as test-object-py's): what each step answered, as JSON |
// | `/ws?name=N` (upgrade) | a WebSocket tagged `user:N`, attachment `{name: N}`; it echoes text as `N: text` and binary as is, and answers `who` with what the handler sees |
import { DurableObject, HttpError, Response, SqlError, StorageError, exportObject } from '../../sdk-js/dohost.js';

class TestObject extends DurableObject {
  fetch(request) {
    const storage = this.state.storage;
    const q = request.query;
    if (request.header('upgrade') === 'websocket') {
      const name = q.get('name') ?? 'anonymous';
      const ws = this.state.acceptWebSocket([`user:${name}`]);
      ws.setAttachment({ name });
      return Response.websocket(ws);
    }
    switch (request.path) {
      case '/raise':
        storage.put('before', 'kept');
        throw new Error('deliberate');
      case '/http-error':
        throw new HttpError(418, 'short and stout');
      case '/none':
        return undefined;
      case '/get':
        return Response.json(storage.get(q.get('key')) ?? null);
      case '/bad-value': {
        const errors = [];
        for (const value of [new Uint8Array([1, 2]), 10n]) {
          try {
            storage.put('bad', value);
          } catch (e) {
            errors.push(e.message);
          }
        }
        return Response.json({ errors, stored: storage.getBytes('bad') ?? null });
      }
      case '/many': {
        const n = Number(q.get('n'));
        const keys = Array.from({ length: n }, (_, i) => `m${String(i).padStart(5, '0')}`);
        storage.putMany(keys.map((k, i) => [k, i]));
        const got = storage.getMany(keys);
        const listed = storage.list({ prefix: 'm', keysOnly: true });
        const deleted = storage.deleteMany(got.keys());
        return Response.json({ got: got.size, listed: listed.length, deleted, left: storage.list().size });
      }
      case '/rollback':
        try {
          storage.transaction(() => {
            storage.put('inside', 1);
            throw new Error('undo');
          });
        } catch {
          // The point: the write is gone.
        }
        return Response.json({ inside: storage.get('inside') ?? null });
      case '/too-large':
        try {
          storage.put('big', 'x'.repeat(storage.limits().maxValueBytes + 1));
        } catch (e) {
          if (e instanceof StorageError) return Response.json({ code: e.code, message: e.message });
          throw e;
        }
        return Response.text('stored', 500);
      case '/alarm-in':
        storage.setAlarmIn(Number(q.get('secs')) * 1000);
        return Response.json(storage.getAlarm() - Date.now());
      case '/string-value':
        // What the raw bindings stored as 0 bytes: a string is JSON text.
        storage.put('s', 'a string');
        return new Response(storage.getBytes('s'));
      case '/string-body':
        return new Response('plain body');
      case '/object-body':
        // Not a body: an error (500), never an empty answer.
        return new Response({ not: 'bytes' });
      case '/sql':
        return Response.json(sqlScenario(storage));
      default:
        return Response.text('Not found', 404);
    }
  }

  webSocketMessage(ws, message) {
    const { name } = ws.attachment();
    if (message === 'who') {
      // What a handler gets: a plain-number ID, listed among the object's sockets.
      const listed = this.state.getWebSockets(`user:${name}`).map((w) => w.id);
      ws.sendJson({ idType: typeof ws.id, listed: listed.includes(ws.id), tags: ws.tags() });
    } else if (typeof message === 'string') {
      ws.send(`${name}: ${message}`);
    } else {
      ws.send(message);
    }
  }
}

// Every part of the SQL API once; the Python test object answers the same JSON.
function sqlScenario(storage) {
  const sql = storage.sql;
  sql.exec('DROP TABLE IF EXISTS t; CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)');
  const inserted = sql.exec(
    'INSERT INTO t(name, score, data) VALUES (?, ?, ?), (?, ?, ?)',
    'ada', 1.5, new Uint8Array([0, 1, 255]), 'bob', null, null,
  );
  const cursor = sql.exec('SELECT id, name, score, data FROM t ORDER BY id');
  // The first row by iteration, the rest with toArray: one pass over the rows.
  const first = cursor.next().value;
  const rows = [first, ...cursor.toArray()].map((row) => ({
    ...row,
    data: row.data instanceof ArrayBuffer ? Array.from(new Uint8Array(row.data)) : row.data,
  }));
  const errors = {};
  for (const [name, query] of [['syntax', 'SELEC 1'], ['constraint', "INSERT INTO t(id, name) VALUES (1, 'again')"]]) {
    try {
      sql.exec(query);
    } catch (e) {
      if (!(e instanceof SqlError)) throw e;
      errors[name] = e.code;
    }
  }
  try {
    storage.transaction(() => {
      sql.exec("INSERT INTO t(name) VALUES ('carol')");
      throw new Error('undo');
    });
  } catch {
    // The point: the insert is gone.
  }
  return {
    columns: cursor.columnNames,
    written: inserted.rowsWritten,
    rows,
    read_some: cursor.rowsRead > 0,
    raw: [...sql.exec('SELECT name FROM t ORDER BY id').raw()],
    one: sql.exec('SELECT count(*) AS n, ? AS flag FROM t', true).one(),
    errors,
    after_rollback: sql.exec('SELECT count(*) AS n FROM t').one().n,
    sized: sql.databaseSize > 0,
  };
}

export const handler = exportObject(TestObject);
