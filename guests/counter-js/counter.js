// The seed's Counter in JavaScript on dohost's JS SDK: /increment, /decrement and /get answer the value as text.
// Built with componentize-js against dohost's WIT (see package.json's `build`). The value is
// stored as JSON under the key `value`, as the Rust SDK stores it, so the Rust, Python and
// JavaScript counters share it.
import { DurableObject, Response, exportObject } from '../../sdk-js/dohost.js';

class Counter extends DurableObject {
  constructor(state, env) {
    super(state, env);
    // Restore the value before any request runs (the seed's blockConcurrencyWhile).
    this.value = state.storage.get('value') ?? 0;
  }

  fetch(request) {
    switch (request.path) {
      case '/increment':
        this.value++;
        this.state.storage.put('value', this.value);
        return Response.text(String(this.value));
      case '/decrement':
        this.value--;
        this.state.storage.put('value', this.value);
        return Response.text(String(this.value));
      case '/get':
        return Response.text(String(this.value));
      default:
        return Response.text('Not found', 404);
    }
  }
}

export const handler = exportObject(Counter);
