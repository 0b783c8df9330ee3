// The seed's RateLimiter in JavaScript on dohost's JS SDK: 100 requests a minute per object, then 429 `Rate limit exceeded`.
// It matches the Rust guest (guests/rate-limiter) request for request: any path answers 200
// `OK` while allowed; the window is kept in storage under `window` as the same JSON (the
// times in ms of the allowed requests of the last minute), so an evicted or restarted
// limiter still counts them, and a limiter can switch between the two languages.
import { DurableObject, Response, exportObject } from '../../sdk-js/dohost.js';

const WINDOW_MS = 60_000;
const LIMIT = 100;
const WINDOW = 'window';

class RateLimiter extends DurableObject {
  constructor(state, env) {
    super(state, env);
    // A failed read throws here, so the instance is not built and the request fails (and
    // is retried on the next one) rather than starting with an empty window.
    this.requests = state.storage.get(WINDOW) ?? [];
  }

  fetch(request) {
    const now = Date.now();
    // Forget the requests older than a minute.
    this.requests = this.requests.filter((t) => t + WINDOW_MS > now);
    if (this.requests.length >= LIMIT) {
      return Response.text('Rate limit exceeded', 429)
        .withHeader('x-ratelimit-remaining', '0')
        .withHeader('retry-after', String(Math.ceil((this.requests[0] + WINDOW_MS - now) / 1000)));
    }
    this.requests.push(now);
    this.state.storage.put(WINDOW, this.requests);
    return Response.text('OK').withHeader('x-ratelimit-remaining', String(LIMIT - this.requests.length));
  }
}

export const handler = exportObject(RateLimiter);
