// The SQL table's object for workerd, answering what dohost's sql-bench guest answers: one
// table of items in the object's SQLite database (a class with `enableSql`, as
// `new_sqlite_classes` declares it on the platform), made in the constructor.
import { DurableObject } from "cloudflare:workers";

export class SqlItems extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  }

  async fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/sql/insert": {
        if (request.method !== "POST") break;
        const v = await request.text();
        // The new id, as dohost's guest answers it (its exec returns last_insert_rowid).
        const { id } = this.sql.exec("INSERT INTO items (v) VALUES (?) RETURNING id", v).one();
        return new Response(String(id));
      }
      case "/sql/get": {
        const id = Number(url.searchParams.get("id"));
        const row = this.sql.exec("SELECT v FROM items WHERE id = ?", id).toArray()[0];
        if (!row) return new Response(`no item ${id}`, { status: 404 });
        return new Response(row.v);
      }
      case "/sql/count": {
        const { n } = this.sql.exec("SELECT count(*) AS n FROM items").one();
        return new Response(String(n));
      }
    }
    return new Response("Not found", { status: 404 });
  }
}
