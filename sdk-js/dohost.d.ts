// Type declarations of dohost's JavaScript SDK (sdk-js/dohost.js), written by hand: the generated ones (gen-types.mjs) describe the raw WIT bindings below it.

/** A value `JSON.stringify` encodes: what storage, attachments and `Response.json` take. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The WIT `storage.error-code`, or 'decode' for a stored value that is not JSON. */
export type StorageErrorCode =
  | 'key-too-large'
  | 'value-too-large'
  | 'too-many-keys'
  | 'storage-full'
  | 'no-transaction'
  | 'invalid-argument'
  | 'internal'
  | 'decode';

/** Storage refused a call (nothing was changed by it), or a value could not be (de)coded. */
export class StorageError extends Error {
  readonly code: StorageErrorCode;
  constructor(code: StorageErrorCode, message: string);
}

/** The WIT `sql.error-code`. */
export type SqlErrorCode =
  | 'syntax'
  | 'constraint'
  | 'mismatch'
  | 'not-authorized'
  | 'too-large'
  | 'storage-full'
  | 'interrupted'
  | 'sql-disabled'
  | 'internal';

/** A SQL statement failed; nothing of it was applied (what the event ran before it stands). */
export class SqlError extends Error {
  readonly code: SqlErrorCode;
  constructor(code: SqlErrorCode, message: string);
}

/** A column's value, as Cloudflare answers it: integers and reals are Numbers, blobs ArrayBuffers. */
export type SqlStorageValue = ArrayBuffer | string | number | null;

/** What `exec` binds: a Number (integral ones as INTEGER), a BigInt, a boolean (0 or 1), text, bytes or NULL. */
export type SqlBinding = SqlStorageValue | bigint | boolean | undefined | ArrayBufferView;

/** The rows of `sql.exec`, read once: iterating, `next`, `one`, `toArray` and `raw` take the rows not yet read. */
export class SqlStorageCursor<T extends Record<string, SqlStorageValue> = Record<string, SqlStorageValue>>
  implements IterableIterator<T>
{
  readonly columnNames: string[];
  /** Rows read by the statements (SQLite's count of rows visited). */
  readonly rowsRead: number;
  /** Rows inserted, updated or deleted by the statements. */
  readonly rowsWritten: number;
  /** dohost's addition: the rowid of the last row inserted (0 before any). */
  readonly lastInsertRowid: number;
  next(): IteratorResult<T>;
  [Symbol.iterator](): IterableIterator<T>;
  toArray(): T[];
  /** The only row; throws when there are none or several. */
  one(): T;
  raw<U extends SqlStorageValue[] = SqlStorageValue[]>(): IterableIterator<U>;
}

/** The object's SQLite database (Cloudflare's `SqlStorage`); its writes commit with the event's other writes. */
export class SqlStorage {
  /** Runs at once; throws SqlError when a statement fails. */
  exec<T extends Record<string, SqlStorageValue> = Record<string, SqlStorageValue>>(
    query: string,
    ...bindings: SqlBinding[]
  ): SqlStorageCursor<T>;
  /** In bytes; counts in the object's storage quota. */
  readonly databaseSize: number;
}

/** The WIT `objects.error-code`. */
export type CallErrorCode = 'unknown-binding' | 'invalid-id' | 'deadlock' | 'object-failed' | 'unavailable';

/** A call to another object failed. */
export class CallError extends Error {
  readonly code: CallErrorCode;
  constructor(code: CallErrorCode, message: string);
}

/** Thrown from `fetch`: answered with `status` (400..=599) and the message as text. */
export class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string);
}

export interface ListOptions {
  /** Inclusive lower bound. */
  start?: string;
  /** Exclusive upper bound. */
  end?: string;
  /** Only keys starting with this. */
  prefix?: string;
  /** Descending key order. */
  reverse?: boolean;
  /** At most this many entries. */
  limit?: number;
}

export interface StorageLimits {
  maxKeyBytes: number;
  maxValueBytes: number;
  /** The `*Many` methods batch by it. */
  maxKeysPerCall: number;
  /** Alarms sooner than this from now are moved to now plus this. */
  minAlarmIntervalMs: number;
}

/** The handle a `transaction` callback receives: storage, plus `rollback`. */
export interface Transaction extends Storage {
  /** Discards the transaction's writes when the callback returns, even without throwing. */
  rollback(): void;
}

/** The object's private, transactional key-value storage; values are JSON by default. */
export class Storage {
  /** The object's SQLite database (Cloudflare's `ctx.storage.sql`). */
  readonly sql: SqlStorage;
  limits(): StorageLimits;
  /** The value under `key`, decoded from JSON; undefined when absent. */
  get<T = Json>(key: string): T | undefined;
  /** The values that exist among `keys`, in key order. Any number of keys. */
  getMany<T = Json>(keys: Iterable<string>): Map<string, T>;
  /** Stores `value` as JSON (a BigInt, undefined or a function throws StorageError 'invalid-argument'). */
  put(key: string, value: unknown): void;
  /** Stores several entries, all or none (batched in a transaction past the host's per-call limit). */
  putMany(entries: Record<string, unknown> | Map<string, unknown> | Array<[string, unknown]>): void;
  /** True when the key existed. */
  delete(key: string): boolean;
  /** How many of the keys existed; all or none are removed. */
  deleteMany(keys: Iterable<string>): number;
  list<T = Json>(options?: ListOptions & { keysOnly?: false }): Map<string, T>;
  list(options: ListOptions & { keysOnly: true }): string[];
  listBytes(options?: ListOptions): Array<[string, Uint8Array]>;
  deleteAll(): void;
  getBytes(key: string): Uint8Array | undefined;
  putBytes(key: string, bytes: Uint8Array | ArrayBuffer | ArrayBufferView): void;
  /** Commits when `fn` returns (or its promise resolves); rolls back and rethrows when it throws. Nests. */
  transaction<R>(fn: (txn: Transaction) => R): R;
  /** A Date or milliseconds since the epoch. */
  setAlarm(at: Date | number): void;
  setAlarmIn(delayMs: number): void;
  /** Milliseconds since the epoch, or null. */
  getAlarm(): number | null;
  deleteAlarm(): void;
}

/** The request an object receives. */
export class Request {
  /** Upper case. */
  readonly method: string;
  /** Absolute, e.g. `http://127.0.0.1:8787/increment?by=2`. */
  readonly url: string;
  /** Names in lower case, as the host delivers them. */
  readonly headers: Array<[string, string]>;
  readonly body: Uint8Array;
  /** A request built by hand for `Stub.fetch`: a path (`/get`) or an absolute URL. */
  static create(
    url: string,
    init?: { method?: string; headers?: Record<string, string> | Array<[string, string]>; body?: string | Uint8Array },
  ): Request;
  /** E.g. `/increment`. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Case-insensitive; null when absent. */
  header(name: string): string | null;
  lastEventId(): string | null;
  bytes(): Uint8Array;
  /** HttpError 400 when the body is not UTF-8. */
  text(): string;
  /** HttpError 400 saying why when the body is not JSON. */
  json<T = Json>(): T;
}

/** An object's answer. */
export class Response {
  status: number;
  headers: Array<[string, string]>;
  body: Uint8Array;
  constructor(
    body?: string | Uint8Array | ArrayBuffer | null,
    init?: { status?: number; headers?: Record<string, string> | Array<[string, string]> },
  );
  static text(body: string, status?: number): Response;
  /** A value JSON cannot encode gives a 500 saying so. */
  static json(value: unknown, status?: number): Response;
  static bytes(body: Uint8Array | ArrayBuffer, status?: number): Response;
  static empty(status: number): Response;
  /** 101, after `state.acceptWebSocket`. */
  static websocket(ws: WebSocket): Response;
  /** 200 `text/event-stream`, after `state.openStream`; `first` is the stream's first chunk. */
  static eventStream(first?: string): Response;
  /** 202, returned after `state.defer()` (the host ignores it). */
  static deferred(): Response;
  withStatus(status: number): this;
  withHeader(name: string, value: string | number): this;
  header(name: string): string | null;
  text(): string;
  json<T = Json>(): T;
}

/** One of the object's WebSockets; stable across hibernation. */
export class WebSocket {
  readonly id: number;
  /** A string is sent as a text message, bytes as a binary one. */
  send(message: string | Uint8Array | ArrayBuffer): void;
  sendJson(value: unknown): void;
  /** 1000, or 3000-4999; a reason of at most 123 bytes. */
  close(code?: number, reason?: string): void;
  tags(): string[];
  /** The JSON value kept with the socket, or null. */
  attachment<T = Json>(): T | null;
  /** At most 2 KiB of JSON; survives hibernation. */
  setAttachment(value: unknown): void;
  autoResponseTimestamp(): number | null;
}

export interface SseEvent {
  /** Each line becomes one `data:` line. */
  data?: string;
  /** What a reconnecting client sends back as `Last-Event-ID`. */
  id?: string;
  /** The event type (`message` without one). */
  event?: string;
  retryMs?: number;
}

/** One server-sent event, framed as `EventSource` reads it. */
export function formatEvent(event: SseEvent): string;

/** One of the object's open streamed responses; stable across hibernation. */
export class Stream {
  readonly id: number;
  write(chunk: string | Uint8Array | ArrayBuffer): void;
  sendEvent(event: SseEvent): void;
  close(): void;
  isOpen(): boolean;
  tags(): string[];
}

export class ObjectId {
  readonly binding: string;
  /** 64 lowercase hex characters. */
  readonly id: string;
  readonly name: string | undefined;
  toString(): string;
}

/** The objects of one binding. */
export class Namespace {
  readonly binding: string;
  constructor(binding: string);
  idFromName(name: string): ObjectId;
  newUniqueId(): ObjectId;
  idFromString(id: string): ObjectId;
  get(id: ObjectId): Stub;
}

/** A handle to call one object; failures are CallErrors. */
export class Stub {
  readonly id: ObjectId;
  fetch(request: Request): Response;
  fetch(url: string, init?: Parameters<typeof Request.create>[1]): Response;
}

/** A request answered later, from this or another event. */
export class Deferred {
  readonly handle: number;
  respond(response: Response): boolean;
  isOpen(): boolean;
}

/** What the object knows about itself, and the door to storage, alarms, sockets and streams. */
export class State {
  /** 64 lowercase hex characters. */
  readonly id: string;
  /** The name the ID came from, if any. */
  readonly name: string | null;
  readonly binding: string;
  readonly className: string;
  /** The configuration's plain variables. */
  readonly env: Record<string, string>;
  readonly storage: Storage;
  transaction<R>(fn: (txn: Transaction) => R): R;
  setAlarm(at: Date | number): void;
  setAlarmIn(delayMs: number): void;
  getAlarm(): number | null;
  deleteAlarm(): void;
  /** Up to 10 tags; answer the fetch with `Response.websocket(ws)`. */
  acceptWebSocket(tags?: string[]): WebSocket;
  getWebSockets(tag?: string): WebSocket[];
  /** Returns how many sockets it was sent to. */
  broadcast(message: string | Uint8Array, options?: { tag?: string; except?: WebSocket | number }): number;
  setWebSocketAutoResponse(pair: [string, string] | null): void;
  /** Answer the fetch with e.g. `Response.eventStream()`. */
  openStream(tags?: string[]): Stream;
  getStreams(tag?: string): Stream[];
  stream(id: number): Stream;
  defer(): Deferred | null;
  pendingRequests(): Deferred[];
  namespace(binding: string): Namespace;
}

export function namespace(binding: string): Namespace;

export interface AlarmInfo {
  retryCount: number;
  isRetry: boolean;
}

/** Base class of an object; every handler but `fetch` defaults to doing nothing. */
export class DurableObject {
  readonly state: State;
  /** The same as `state` (Cloudflare's name). */
  readonly ctx: State;
  readonly env: Record<string, string>;
  constructor(state: State, env: Record<string, string>);
  /** An exception is answered 500 (an HttpError: its status) and the event's writes still commit. */
  fetch(request: Request): Response | Promise<Response>;
  /** An exception discards the handler's writes and makes the host retry. */
  alarm(info: AlarmInfo): void | Promise<void>;
  /** A text message is a string, a binary one a Uint8Array. */
  webSocketMessage(ws: WebSocket, message: string | Uint8Array): void | Promise<void>;
  webSocketClose(ws: WebSocket, code: number, reason: string, wasClean: boolean): void | Promise<void>;
  webSocketError(ws: WebSocket, error: string): void | Promise<void>;
}

/** What `export const handler = exportObject(MyObject)` exports: the WIT `handler` interface. */
export function exportObject(
  cls: new (state: State, env: Record<string, string>) => { fetch(request: Request): Response | Promise<Response> },
): { DurableObject: unknown };
