// The seed's Counter, exactly as durable-objects.md has it ("Basic Durable Object"); the bench
// strips its types with esbuild, since workerd runs JavaScript.
export class Counter {
  private value: number = 0;
  private state: DurableObjectState;

  constructor(state: DurableObjectState, env: Env) {
    this.state = state;
    // Restore state from storage
    this.state.blockConcurrencyWhile(async () => {
      this.value = (await this.state.storage.get('value')) || 0;
    });
  }

  async fetch(request: Request) {
    const url = new URL(request.url);

    switch (url.pathname) {
      case '/increment':
        this.value++;
        await this.state.storage.put('value', this.value);
        return new Response(String(this.value));

      case '/decrement':
        this.value--;
        await this.state.storage.put('value', this.value);
        return new Response(String(this.value));

      case '/get':
        return new Response(String(this.value));

      default:
        return new Response('Not found', { status: 404 });
    }
  }
}
