// dohost's JavaScript SDK: Durable Objects for componentize-js over the `object` world of wit/dohost.wit, with the Rust SDK's conventions.
//
// A thin layer over the bindings componentize-js generates for the world's imports: values
// are stored as JSON text exactly as the Rust SDK stores them (so objects in any language
// share data), `*Many` calls are batched by the host's limit inside a transaction, storage
// failures are `StorageError`s, `storage.sql` is Cloudflare's `SqlStorage` over the object's
// SQLite database, and `exportObject` adapts a class to the exported resource.
import * as wstorage from 'dohost:object/storage@0.1.0';
import * as walarms from 'dohost:object/alarms@0.1.0';
import * as wobjects from 'dohost:object/objects@0.1.0';
import * as wrequests from 'dohost:object/requests@0.1.0';
import * as wsockets from 'dohost:object/websockets@0.1.0';
import * as wstreams from 'dohost:object/streams@0.1.0';
import * as wsql from 'dohost:object/sql@0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/** Storage refused a call (nothing was changed by it), or a value could not be (de)coded. */
export class StorageError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'StorageError';
    // The WIT `error-code` ('key-too-large', 'value-too-large', ...) or 'decode'.
    this.code = code;
  }
}

/** A SQL statement failed (nothing of it was applied; what the event ran before it stands). */
export class SqlError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'SqlError';
    // The WIT `sql.error-code`: 'syntax', 'constraint', 'mismatch', 'not-authorized',
    // 'too-large', 'storage-full', 'interrupted', 'sql-disabled' or 'internal'.
    this.code = code;
  }
}

/** A call to another object failed; `code` is the WIT `objects.error-code` ('deadlock', ...). */
export class CallError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'CallError';
    this.code = code;
  }
}

/**
 * Thrown from `fetch`, answered with `status` (400..=599) and the message as text, as the
 * Rust SDK's `Error::status`. Any other exception is a bare 500 with the message logged.
 */
export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
  }
}

// componentize-js throws a `ComponentError` whose `payload` is the WIT result's error value:
// a record {code, message} for storage and objects, a string for sockets and streams.
function payloadOf(e) {
  return e !== null && typeof e === 'object' && 'payload' in e ? e.payload : undefined;
}

function storageCall(f) {
  try {
    return f();
  } catch (e) {
    const p = payloadOf(e);
    if (p && typeof p === 'object' && 'code' in p) throw new StorageError(p.code, p.message);
    throw e;
  }
}

function sqlCall(f) {
  try {
    return f();
  } catch (e) {
    const p = payloadOf(e);
    if (p && typeof p === 'object' && 'code' in p) throw new SqlError(p.code, p.message);
    throw e;
  }
}

function objectsCall(f) {
  try {
    return f();
  } catch (e) {
    const p = payloadOf(e);
    if (p && typeof p === 'object' && 'code' in p) throw new CallError(p.code, p.message);
    throw e;
  }
}

// Sockets and streams fail with a sentence; a plain Error carries it with a stack.
function stringCall(f) {
  try {
    return f();
  } catch (e) {
    const p = payloadOf(e);
    if (typeof p === 'string') throw new Error(p);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------
// JSON and bytes
// ---------------------------------------------------------------------------------------

// JSON text as the Rust SDK's serde_json writes it: `42`, `"a"`, `{"k":1}`. JSON.stringify
// answers undefined (not text) for undefined, functions and symbols, and throws for BigInt
// and cycles: both are errors here, never an empty value.
function encodeJson(value, what) {
  // JSON.stringify would store a Uint8Array as {"0":1,...}: raw bytes have their own calls.
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
    throw new StorageError('invalid-argument', `${what} is bytes, not a JSON value: store bytes with putBytes`);
  }
  let text;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new StorageError('invalid-argument', `${what} cannot be encoded as JSON: ${e.message}`);
  }
  if (text === undefined) {
    throw new StorageError('invalid-argument', `${what} cannot be encoded as JSON: it is ${typeof value}`);
  }
  return encoder.encode(text);
}

function decodeJson(key, bytes) {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (e) {
    throw new StorageError('decode', `the value stored under ${JSON.stringify(key)} is not JSON: ${e.message}`);
  }
}

// Strings as UTF-8, byte views as they are; anything else is refused (the bindings would
// otherwise lower it as an empty list).
function toBytes(body, what) {
  if (typeof body === 'string') return encoder.encode(body);
  return onlyBytes(body, what);
}

// Raw storage takes bytes only: a string there is more likely a value meant for `put`.
function onlyBytes(body, what) {
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new TypeError(`${what} must be a Uint8Array or an ArrayBuffer (or a string where text is taken), not ${describe(body)}`);
}

// The bindings build their Uint8Arrays in another realm, so `instanceof Uint8Array` fails
// on them in user code: give user code a view of its own realm over the same bytes.
function u8(bytes) {
  return bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// A list<u64> arrives as a BigUint64Array, whose `map` could only hold BigInts.
function ids(list, make) {
  return Array.from(list, make);
}

function describe(v) {
  if (v === null) return 'null';
  if (typeof v === 'object') return v.constructor ? `a ${v.constructor.name}` : 'an object';
  return typeof v;
}

// Host handles are u64 (BigInt in the bindings); the host counts them from 1, so they fit a
// Number, which user code compares and stores as JSON.
function toNumber(id) {
  const n = Number(id);
  if (!Number.isSafeInteger(n)) throw new RangeError(`host id ${id} does not fit a JavaScript number`);
  return n;
}

// ---------------------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------------------

/** The object's private, transactional key-value storage; values are JSON by default. */
export class Storage {
  #limits;

  /** The object's SQLite database (Cloudflare's `ctx.storage.sql`). */
  sql = new SqlStorage();

  /** The host's limits (asked once per instance); `maxKeysPerCall` sizes the batches. */
  limits() {
    if (!this.#limits) {
      const l = wstorage.getLimits();
      this.#limits = {
        maxKeyBytes: l.maxKeyBytes,
        maxValueBytes: l.maxValueBytes,
        // At least 1, so that batching always makes progress.
        maxKeysPerCall: Math.max(1, l.maxKeysPerCall),
        minAlarmIntervalMs: Number(l.minAlarmIntervalMs),
      };
    }
    return this.#limits;
  }

  /** The value under `key`, decoded from JSON; undefined when absent. */
  get(key) {
    const bytes = this.getBytes(key);
    return bytes === undefined ? undefined : decodeJson(key, bytes);
  }

  /** The values that exist among `keys`, as a Map in key order. */
  getMany(keys) {
    keys = [...keys];
    const found = new Map();
    for (const batch of chunks(keys, this.limits().maxKeysPerCall)) {
      for (const [k, v] of storageCall(() => wstorage.getMany(batch))) found.set(k, decodeJson(k, v));
    }
    return found;
  }

  /** Stores `value` as JSON under `key`. */
  put(key, value) {
    this.putBytes(key, encodeJson(value, `the value for key ${JSON.stringify(key)}`));
  }

  /**
   * Stores several entries: an object, a Map or [key, value] pairs. More than the host takes
   * in one call are stored in batches inside a transaction, so a failure stores none.
   */
  putMany(entries) {
    const pairs = entries instanceof Map || Array.isArray(entries) ? [...entries] : Object.entries(entries);
    const encoded = pairs.map(([k, v]) => [k, encodeJson(v, `the value for key ${JSON.stringify(k)}`)]);
    const perCall = this.limits().maxKeysPerCall;
    if (encoded.length <= perCall) return storageCall(() => wstorage.putMany(encoded));
    this.transaction(() => {
      for (const batch of chunks(encoded, perCall)) storageCall(() => wstorage.putMany(batch));
    });
  }

  /** Removes `key`; true when it existed. */
  delete(key) {
    return storageCall(() => wstorage.delete(key));
  }

  /** Removes several keys (batched as `putMany`); returns how many existed. */
  deleteMany(keys) {
    keys = [...keys];
    const perCall = this.limits().maxKeysPerCall;
    if (keys.length <= perCall) return storageCall(() => wstorage.deleteMany(keys));
    return this.transaction(() => {
      let existed = 0;
      for (const batch of chunks(keys, perCall)) existed += storageCall(() => wstorage.deleteMany(batch));
      return existed;
    });
  }

  /**
   * Entries within [start, end) starting with prefix, in key order (descending with
   * `reverse`), at most `limit`: a Map of decoded values, or an array of keys with `keysOnly`.
   */
  list(options = {}) {
    const entries = this.listBytes(options);
    if (options.keysOnly) return entries.map(([k]) => k);
    const out = new Map();
    for (const [k, v] of entries) out.set(k, decodeJson(k, v));
    return out;
  }

  /** Raw entries as [key, Uint8Array] pairs, with the options of `list`. */
  listBytes(options = {}) {
    const { start, end, prefix, reverse = false, limit } = options;
    const entries = storageCall(() =>
      wstorage.list({ start, end, prefix, reverse: Boolean(reverse), limit }),
    );
    return entries.map(([k, v]) => [k, u8(v)]);
  }

  /** Removes every key of this object. */
  deleteAll() {
    storageCall(() => wstorage.deleteAll());
  }

  /** The raw bytes under `key` (a Uint8Array), undefined when absent. */
  getBytes(key) {
    const bytes = storageCall(() => wstorage.get(key));
    return bytes === undefined ? undefined : u8(bytes);
  }

  /** Stores raw bytes under `key`. */
  putBytes(key, bytes) {
    const value = onlyBytes(bytes, `the bytes for key ${JSON.stringify(key)}`);
    storageCall(() => wstorage.put(key, value));
  }

  /**
   * Runs `fn(txn)` in a transaction: its writes are kept when it returns and discarded when
   * it throws (the exception is rethrown) or calls `txn.rollback()`. Transactions nest. An
   * async `fn` commits or rolls back when its promise settles.
   */
  transaction(fn) {
    storageCall(() => wstorage.transactionBegin());
    let rolledBack = false;
    const txn = Object.create(this, {
      rollback: { value: () => { rolledBack = true; } },
    });
    const finish = (ok) => {
      if (ok && !rolledBack) storageCall(() => wstorage.transactionCommit());
      else storageCall(() => wstorage.transactionRollback());
    };
    let result;
    try {
      result = fn(txn);
    } catch (e) {
      finish(false);
      throw e;
    }
    if (result && typeof result.then === 'function') {
      return result.then(
        (v) => { finish(true); return v; },
        (e) => { finish(false); throw e; },
      );
    }
    finish(true);
    return result;
  }

  /** Schedules the alarm at a Date or milliseconds since the epoch, replacing any other. */
  setAlarm(at) {
    const ms = at instanceof Date ? at.getTime() : at;
    if (typeof ms !== 'number' || !Number.isFinite(ms)) {
      throw new TypeError(`setAlarm takes a Date or milliseconds since the epoch, not ${describe(at)}`);
    }
    storageCall(() => walarms.setAlarm(BigInt(Math.max(0, Math.floor(ms)))));
  }

  /** Schedules the alarm `delayMs` from now. */
  setAlarmIn(delayMs) {
    this.setAlarm(Date.now() + delayMs);
  }

  /** The pending alarm in milliseconds since the epoch, or null. */
  getAlarm() {
    const at = storageCall(() => walarms.getAlarm());
    return at === undefined ? null : Number(at);
  }

  /** Cancels the pending alarm, if any. */
  deleteAlarm() {
    storageCall(() => walarms.deleteAlarm());
  }
}

// ---------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------

const SQL_INT_MIN = -(2n ** 63n);
const SQL_INT_MAX = 2n ** 63n - 1n;

// A JavaScript value as a SQL parameter. An integral Number binds as an INTEGER (so other
// languages read back the integer they expect), any other as a REAL; a boolean as 0 or 1
// (SQLite has no booleans); bytes as a BLOB; null and undefined as NULL.
function toSqlValue(v, index) {
  if (v === null || v === undefined) return { tag: 'null' };
  if (typeof v === 'boolean') return { tag: 'integer', val: v ? 1n : 0n };
  if (typeof v === 'number') {
    return Number.isSafeInteger(v) ? { tag: 'integer', val: BigInt(v) } : { tag: 'real', val: v };
  }
  if (typeof v === 'bigint') {
    if (v < SQL_INT_MIN || v > SQL_INT_MAX) throw new RangeError(`binding ${index + 1}: ${v} does not fit SQLite's 64-bit integers`);
    return { tag: 'integer', val: v };
  }
  if (typeof v === 'string') return { tag: 'text', val: v };
  if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return { tag: 'blob', val: onlyBytes(v, 'a blob') };
  throw new TypeError(`binding ${index + 1}: cannot bind ${describe(v)} to a SQL parameter (null, number, bigint, boolean, string or bytes)`);
}

// A column's value as Cloudflare answers it: integers and reals as Numbers (an integer past
// 2^53 loses precision, as there), text as a string, a blob as an ArrayBuffer (of this
// realm: a copy, see `u8`).
function fromSqlValue(v) {
  switch (v.tag) {
    case 'null':
      return null;
    case 'integer':
      return Number(v.val);
    case 'blob': {
      const out = new ArrayBuffer(v.val.byteLength);
      new Uint8Array(out).set(v.val);
      return out;
    }
    default:
      return v.val;
  }
}

/**
 * The result of `sql.exec`: the last statement's rows, read once (iterating, `next`, `one`,
 * `toArray` and `raw` each take the rows not yet read), and what the statements did.
 */
export class SqlStorageCursor {
  #rows;
  #next = 0;
  #rowsRead;
  #rowsWritten;

  constructor(rows) {
    this.columnNames = [...rows.columns];
    this.#rows = rows.rows;
    this.#rowsRead = Number(rows.rowsRead);
    this.#rowsWritten = Number(rows.rowsWritten);
    // Not in Cloudflare's cursor: the rowid of the last row inserted (0 before any).
    this.lastInsertRowid = Number(rows.lastInsertRowid);
  }

  /** Rows read by the statements (SQLite's count of rows visited). */
  get rowsRead() {
    return this.#rowsRead;
  }

  /** Rows inserted, updated or deleted by the statements. */
  get rowsWritten() {
    return this.#rowsWritten;
  }

  #object(values) {
    const row = {};
    this.columnNames.forEach((name, i) => {
      row[name] = values[i];
    });
    return row;
  }

  #take() {
    const rest = this.#rows.slice(this.#next);
    this.#next = this.#rows.length;
    return rest.map((row) => row.map(fromSqlValue));
  }

  /** The next row as an object of column name to value: `{done, value}`, as an iterator. */
  next() {
    if (this.#next >= this.#rows.length) return { done: true, value: undefined };
    const values = this.#rows[this.#next++].map(fromSqlValue);
    return { done: false, value: this.#object(values) };
  }

  [Symbol.iterator]() {
    return this;
  }

  /** The rows not yet read, as objects. */
  toArray() {
    return this.#take().map((values) => this.#object(values));
  }

  /** The only row; an Error when there are none or several. */
  one() {
    const rows = this.toArray();
    if (rows.length !== 1) {
      throw new Error(`Expected exactly one result from SQL query, but got ${rows.length === 0 ? 'no results' : 'multiple results'}.`);
    }
    return rows[0];
  }

  /** The rows not yet read, as arrays in column order (an iterator). */
  raw() {
    return this.#take()[Symbol.iterator]();
  }
}

/**
 * The object's SQLite database, as Cloudflare's `SqlStorage`. Its writes commit with the
 * event's key-value writes (`storage.transaction` covers both); BEGIN/COMMIT in SQL are
 * refused.
 */
export class SqlStorage {
  /**
   * Runs `query` (one statement, or several separated by `;`, the bindings going to the
   * last one's `?`s) at once and answers a cursor over the last statement's rows. Throws
   * SqlError when a statement fails.
   */
  exec(query, ...bindings) {
    if (typeof query !== 'string') throw new TypeError(`exec takes the SQL as a string, not ${describe(query)}`);
    const params = bindings.map(toSqlValue);
    return new SqlStorageCursor(sqlCall(() => wsql.exec(query, params)));
  }

  /** The database's size in bytes; it counts in the object's storage quota. */
  get databaseSize() {
    return Number(wsql.databaseSize());
  }
}

function* chunks(items, size) {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/** The request an object receives. */
export class Request {
  #url;

  constructor(wit) {
    this.method = wit.method;
    this.url = wit.url;
    this.headers = wit.headers;
    this.body = u8(wit.body);
  }

  /** A request built by hand, for calling another object: `Request.create('/get')`. */
  static create(url, { method = 'GET', headers = [], body } = {}) {
    const absolute = url.startsWith('/') ? `http://object${url}` : url;
    const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
    return new Request({
      method: method.toUpperCase(),
      url: absolute,
      headers: pairs.map(([k, v]) => [String(k).toLowerCase(), String(v)]),
      body: body === undefined ? new Uint8Array(0) : toBytes(body, 'the request body'),
    });
  }

  #parsed() {
    if (!this.#url) this.#url = new URL(this.url);
    return this.#url;
  }

  /** The path, e.g. `/increment`. */
  get path() {
    return this.#parsed().pathname || '/';
  }

  /** The query parameters. */
  get query() {
    return this.#parsed().searchParams;
  }

  /** A header's value (names compare case-insensitively), or null. */
  header(name) {
    const lower = name.toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === lower);
    return found ? found[1] : null;
  }

  /** The `Last-Event-ID` a reconnecting server-sent events client sends, or null. */
  lastEventId() {
    return this.header('last-event-id');
  }

  /** The body as bytes. */
  bytes() {
    return this.body;
  }

  /** The body as UTF-8 text (HttpError 400 when it is not). */
  text() {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(this.body);
    } catch {
      throw new HttpError(400, 'request body is not UTF-8');
    }
  }

  /** The body parsed as JSON (HttpError 400 saying why when it is not JSON). */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      if (e instanceof HttpError) throw e;
      throw new HttpError(400, `request body is not the expected JSON: ${e.message}`);
    }
  }

  toWit() {
    return { method: this.method, url: this.url, headers: this.headers, body: this.body };
  }
}

/** An object's answer: status, headers as [name, value] pairs, body as bytes. */
export class Response {
  constructor(body, { status = 200, headers = [] } = {}) {
    this.status = status;
    this.headers = Array.isArray(headers) ? headers.map(([k, v]) => [k, v]) : Object.entries(headers);
    this.body = body === undefined || body === null ? new Uint8Array(0) : toBytes(body, 'the response body');
  }

  /** A `text/plain; charset=utf-8` body. */
  static text(body, status = 200) {
    return new Response(String(body), { status, headers: [['content-type', 'text/plain; charset=utf-8']] });
  }

  /** A JSON body; a value JSON cannot encode gives a 500 saying so (as the Rust SDK). */
  static json(value, status = 200) {
    let text;
    try {
      text = JSON.stringify(value);
    } catch (e) {
      return Response.text(`could not encode the response as JSON: ${e.message}`, 500);
    }
    if (text === undefined) return Response.text(`could not encode the response as JSON: it is ${typeof value}`, 500);
    return new Response(text, { status, headers: [['content-type', 'application/json']] });
  }

  /** Raw bytes, no content type. */
  static bytes(body, status = 200) {
    return new Response(toBytes(body, 'the response body'), { status });
  }

  /** An empty body with this status. */
  static empty(status) {
    return new Response(undefined, { status });
  }

  /** 101: the answer to an upgrade accepted with `state.acceptWebSocket`. */
  static websocket(ws) {
    void ws;
    return Response.empty(101);
  }

  /** 200 `text/event-stream` with `first` as the first chunk, after `state.openStream`. */
  static eventStream(first = '') {
    return new Response(String(first), {
      headers: [
        ['content-type', 'text/event-stream'],
        ['cache-control', 'no-cache'],
        ['x-accel-buffering', 'no'],
      ],
    });
  }

  /** 202, the placeholder a fetch returns after `state.defer()` (the host ignores it). */
  static deferred() {
    return Response.empty(202);
  }

  /** Changes the status (chainable). */
  withStatus(status) {
    this.status = status;
    return this;
  }

  /** Sets a header, replacing one of the same name (chainable). */
  withHeader(name, value) {
    const lower = name.toLowerCase();
    this.headers = this.headers.filter(([k]) => k.toLowerCase() !== lower);
    this.headers.push([name, String(value)]);
    return this;
  }

  /** A header's value, or null. */
  header(name) {
    const lower = name.toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === lower);
    return found ? found[1] : null;
  }

  /** The body as text (for responses from other objects). */
  text() {
    return decoder.decode(this.body);
  }

  /** The body parsed as JSON. */
  json() {
    return JSON.parse(this.text());
  }

  static fromWit(r) {
    return new Response(u8(r.body), { status: r.status, headers: r.headers });
  }

  toWit() {
    return { status: this.status, headers: this.headers, body: this.body };
  }
}

// ---------------------------------------------------------------------------------------
// WebSockets and streams
// ---------------------------------------------------------------------------------------

function toWitMessage(message) {
  if (typeof message === 'string') return { tag: 'text', val: message };
  return { tag: 'binary', val: toBytes(message, 'a WebSocket message') };
}

// A text message's value is a string, a binary one's a Uint8Array: user code tells them
// apart with `typeof`.
function fromWitMessage(m) {
  return m.tag === 'text' ? m.val : u8(m.val);
}

/** One of the object's WebSockets; stable across hibernation. */
export class WebSocket {
  #id;

  constructor(id) {
    this.#id = BigInt(id);
    this.id = toNumber(id);
  }

  /** Sends a string as a text message, bytes as a binary one. */
  send(message) {
    const m = toWitMessage(message);
    stringCall(() => wsockets.send(this.#id, m));
  }

  /** Sends `value` encoded as JSON, as a text message. */
  sendJson(value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`sendJson: ${typeof value} cannot be encoded as JSON`);
    this.send(text);
  }

  /** Closes the socket (1000, or 3000-4999; a reason of at most 123 bytes). */
  close(code = 1000, reason = '') {
    stringCall(() => wsockets.close(this.#id, code, reason));
  }

  /** The tags the socket was accepted with. */
  tags() {
    return wsockets.getTags(this.#id);
  }

  /** The value kept with the socket (JSON), or null. */
  attachment() {
    const bytes = wsockets.deserializeAttachment(this.#id);
    return bytes === undefined ? null : JSON.parse(decoder.decode(bytes));
  }

  /** Keeps `value` (as JSON, at most 2 KiB) with the socket; it survives hibernation. */
  setAttachment(value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`setAttachment: ${typeof value} cannot be encoded as JSON`);
    stringCall(() => wsockets.serializeAttachment(this.#id, encoder.encode(text)));
  }

  /** When the host last sent the auto-response on this socket (ms since the epoch), or null. */
  autoResponseTimestamp() {
    const at = wsockets.getAutoResponseTimestamp(this.#id);
    return at === undefined ? null : Number(at);
  }
}

/** One server-sent event, framed as `EventSource` reads it (as the Rust SDK's SseEvent). */
export function formatEvent({ data = '', id, event, retryMs } = {}) {
  let out = '';
  const oneLine = (s) => String(s).replace(/[\r\n]/g, '');
  if (id !== undefined && id !== null) out += `id: ${oneLine(id)}\n`;
  if (event !== undefined && event !== null) out += `event: ${oneLine(event)}\n`;
  if (retryMs !== undefined && retryMs !== null) out += `retry: ${retryMs}\n`;
  // CRLF, LF and CR all end a line in the format: one `data:` line each.
  for (const line of String(data).split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return out + '\n';
}

/** One of the object's open streamed responses; stable across hibernation. */
export class Stream {
  #id;

  constructor(id) {
    this.#id = BigInt(id);
    this.id = toNumber(id);
  }

  /** Writes a chunk (string or bytes); it leaves once the event's writes are durable. */
  write(chunk) {
    const bytes = toBytes(chunk, 'a stream chunk');
    stringCall(() => wstreams.write(this.#id, bytes));
  }

  /** Writes one server-sent event: {data, id, event, retryMs}. */
  sendEvent(event) {
    this.write(formatEvent(event));
  }

  /** Ends the stream after the chunks written before. */
  close() {
    stringCall(() => wstreams.close(this.#id));
  }

  /** True while the stream is open and its client still reads it. */
  isOpen() {
    return wstreams.isOpen(this.#id);
  }

  /** The tags the stream was opened with. */
  tags() {
    return wstreams.getTags(this.#id);
  }
}

// ---------------------------------------------------------------------------------------
// Other objects and deferred responses
// ---------------------------------------------------------------------------------------

/** The objects of one binding (`env.COUNTER` in Cloudflare's API). */
export class Namespace {
  constructor(binding) {
    this.binding = binding;
  }

  /** The ID `name` maps to (always the same). */
  idFromName(name) {
    return new ObjectId(this.binding, objectsCall(() => wobjects.idFromName(this.binding, name)), name);
  }

  /** A fresh random ID. */
  newUniqueId() {
    return new ObjectId(this.binding, objectsCall(() => wobjects.newUniqueId(this.binding)));
  }

  /** Checks a 64-hex-character ID of this binding. */
  idFromString(id) {
    return new ObjectId(this.binding, objectsCall(() => wobjects.idFromString(this.binding, id)));
  }

  /** A stub to call the object `id`. */
  get(id) {
    return new Stub(id);
  }
}

/** An object ID of one binding. */
export class ObjectId {
  constructor(binding, id, name) {
    this.binding = binding;
    this.id = id;
    this.name = name;
  }

  toString() {
    return this.id;
  }
}

/** A handle to call one object. */
export class Stub {
  constructor(id) {
    this.id = id;
  }

  /** Delivers a Request (or a path/URL and init, as `Request.create`) and returns its Response. */
  fetch(request, init) {
    const req = request instanceof Request ? request : Request.create(request, init);
    const { binding, id, name } = this.id;
    return Response.fromWit(objectsCall(() => wobjects.fetch(binding, id, name, req.toWit())));
  }
}

/** A request whose answer comes later, from this or another event. */
export class Deferred {
  #handle;

  constructor(handle) {
    this.#handle = BigInt(handle);
    this.handle = toNumber(handle);
  }

  /** Answers it; false when it was already answered, expired or its client went away. */
  respond(response) {
    return wrequests.respond(this.#handle, toWitResponse(response));
  }

  /** True while its client still waits. */
  isOpen() {
    return wrequests.isOpen(this.#handle);
  }
}

// ---------------------------------------------------------------------------------------
// The object: state, base class and the export adapter
// ---------------------------------------------------------------------------------------

/** What an object knows about itself, and the door to storage, alarms, sockets and streams. */
export class State {
  constructor(ctx) {
    this.id = ctx.id;
    this.name = ctx.name ?? null;
    this.binding = ctx.binding;
    this.className = ctx.className;
    this.env = Object.fromEntries(ctx.env);
    this.storage = new Storage();
  }

  transaction(fn) {
    return this.storage.transaction(fn);
  }

  setAlarm(at) {
    this.storage.setAlarm(at);
  }

  setAlarmIn(delayMs) {
    this.storage.setAlarmIn(delayMs);
  }

  getAlarm() {
    return this.storage.getAlarm();
  }

  deleteAlarm() {
    this.storage.deleteAlarm();
  }

  /** Accepts the current request's WebSocket upgrade; answer with `Response.websocket(ws)`. */
  acceptWebSocket(tags = []) {
    return new WebSocket(stringCall(() => wsockets.accept([...tags])));
  }

  /** The open WebSockets, or those carrying `tag`. */
  getWebSockets(tag) {
    return ids(wsockets.getWebsockets(tag ?? undefined), (id) => new WebSocket(id));
  }

  /** Sends to every open socket (carrying `tag`), except `except`; returns how many. */
  broadcast(message, { tag, except } = {}) {
    const m = toWitMessage(message);
    const skip = except === undefined || except === null ? undefined : BigInt(typeof except === 'object' ? except.id : except);
    return stringCall(() => wsockets.broadcast(m, tag ?? undefined, skip));
  }

  /** A [request, response] text pair the host answers on every socket without waking the object; null to stop. */
  setWebSocketAutoResponse(pair) {
    wsockets.setAutoResponse(pair ? [pair[0], pair[1]] : undefined);
  }

  /** Opens the current request's response as a stream; answer with e.g. `Response.eventStream()`. */
  openStream(tags = []) {
    return new Stream(stringCall(() => wstreams.open([...tags])));
  }

  /** The open streams, or those carrying `tag`. */
  getStreams(tag) {
    return ids(wstreams.getStreams(tag ?? undefined), (id) => new Stream(id));
  }

  /** A stream whose id the object kept. */
  stream(id) {
    return new Stream(id);
  }

  /** Defers the current fetch's answer (return `Response.deferred()`); null outside a fetch. */
  defer() {
    const handle = wrequests.defer();
    return handle === undefined ? null : new Deferred(handle);
  }

  /** The deferred requests still waiting. */
  pendingRequests() {
    return ids(wrequests.pending(), (h) => new Deferred(h));
  }

  /** The objects of a binding. */
  namespace(binding) {
    return new Namespace(binding);
  }
}

/** The objects of a binding, outside an object's state. */
export function namespace(binding) {
  return new Namespace(binding);
}

/** Base class of an object: `fetch` to implement; the other handlers do nothing. */
export class DurableObject {
  constructor(state, env) {
    this.state = state;
    // Cloudflare's name for the same object.
    this.ctx = state;
    this.env = env;
  }

  fetch(request) {
    void request;
    return Response.text('Not found', 404);
  }

  alarm(info) {
    void info;
  }

  webSocketMessage(ws, message) {
    void ws, message;
  }

  webSocketClose(ws, code, reason, wasClean) {
    void ws, code, reason, wasClean;
  }

  webSocketError(ws, error) {
    void ws, error;
  }
}

// A response for the host: exactly status, headers and body bytes.
function toWitResponse(res) {
  if (!(res instanceof Response)) {
    throw new TypeError(`expected a Response, got ${describe(res)}`);
  }
  if (!Number.isInteger(res.status) || res.status < 100 || res.status > 599) {
    throw new TypeError(`response status ${res.status} is not an HTTP status`);
  }
  return {
    status: res.status,
    headers: res.headers.map(([k, v]) => [String(k), String(v)]),
    body: toBytes(res.body, 'the response body'),
  };
}

// As the Rust SDK's Response::from_error: an HttpError is answered with its status and
// message; anything else is a bare 500 (the client learns nothing of the object's
// internals) and the why goes to the host's log.
function errorResponse(e) {
  if (e instanceof HttpError && Number.isInteger(e.status) && e.status >= 400 && e.status <= 599) {
    return Response.text(e.message, e.status).toWit();
  }
  return internalError(e && e.stack ? `${e}\n${e.stack.trimEnd()}` : String(e));
}

function internalError(why) {
  console.error(`error (answered 500): ${why}`);
  return Response.text('Internal Server Error', 500).toWit();
}

/**
 * Adapts a class (usually extending DurableObject) to the exported `durable-object`
 * resource: `export const handler = exportObject(MyObject);`.
 */
export function exportObject(UserClass) {
  if (typeof UserClass !== 'function' || typeof UserClass.prototype.fetch !== 'function') {
    throw new TypeError('exportObject takes a class with a fetch method');
  }
  class Adapter {
    #obj;

    constructor(ctx) {
      const state = new State(ctx);
      this.#obj = new UserClass(state, state.env);
    }

    // An exception is answered (500, or an HttpError's status) and the event's writes
    // commit, as a Rust `Err`; only a trap discards them.
    async fetch(witRequest) {
      let res;
      try {
        res = await this.#obj.fetch(new Request(witRequest));
      } catch (e) {
        return errorResponse(e);
      }
      if (!(res instanceof Response)) {
        return internalError(
          `fetch returned ${describe(res)}, not a Response (return Response.text(...), Response.json(...), ...)`,
        );
      }
      try {
        return toWitResponse(res);
      } catch (e) {
        return internalError(e.message);
      }
    }

    // The bindings read a returned {tag: 'err'} as the WIT result's error: the host
    // discards the handler's writes and retries.
    async alarm(info) {
      const obj = this.#obj;
      if (typeof obj.alarm !== 'function') return { tag: 'ok', val: undefined };
      try {
        await obj.alarm({ retryCount: info.retryCount, isRetry: info.isRetry });
        return { tag: 'ok', val: undefined };
      } catch (e) {
        return { tag: 'err', val: String(e && e.message !== undefined ? e.message : e) };
      }
    }

    async websocketMessage(ws, message) {
      if (typeof this.#obj.webSocketMessage === 'function') {
        await this.#obj.webSocketMessage(new WebSocket(ws), fromWitMessage(message));
      }
    }

    async websocketClose(ws, code, reason, wasClean) {
      if (typeof this.#obj.webSocketClose === 'function') {
        await this.#obj.webSocketClose(new WebSocket(ws), code, reason, wasClean);
      }
    }

    async websocketError(ws, error) {
      if (typeof this.#obj.webSocketError === 'function') {
        await this.#obj.webSocketError(new WebSocket(ws), error);
      }
    }
  }
  return { DurableObject: Adapter };
}
