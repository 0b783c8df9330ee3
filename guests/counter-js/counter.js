// The seed's Counter in JavaScript: /increment, /decrement and /get answer the value as text.
// Built with componentize-js against dohost's WIT (`make guests`). The value is stored as
// JSON under the key `value`, as the Rust SDK stores it.
import { get, put } from 'dohost:object/storage@0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function text(body, status = 200) {
  return {
    status,
    headers: [['content-type', 'text/plain; charset=utf-8']],
    body: encoder.encode(body),
  };
}

class Counter {
  constructor(ctx) {
    // Restore the value before any request runs (the seed's blockConcurrencyWhile).
    const stored = get('value');
    this.value = stored === undefined ? 0 : JSON.parse(decoder.decode(stored));
  }

  fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case '/increment':
        this.value++;
        put('value', encoder.encode(JSON.stringify(this.value)));
        return text(String(this.value));
      case '/decrement':
        this.value--;
        put('value', encoder.encode(JSON.stringify(this.value)));
        return text(String(this.value));
      case '/get':
        return text(String(this.value));
      default:
        return text('Not found', 404);
    }
  }

  alarm(info) {}
  websocketMessage(ws, message) {}
  websocketClose(ws, code, reason, wasClean) {}
  websocketError(ws, error) {}
}

export const handler = { DurableObject: Counter };
