# workerd serving the seed's Counter (and the SQL table's SqlItems) behind a routing worker,
# storage on local disk.
# The bench driver passes --socket-addr http=127.0.0.1:PORT and --directory-path do-storage=DIR.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .counterWorker),
    (name = "do-storage", disk = (path = "/tmp/dohost-bench-workerd", writable = true)),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:8788", http = (), service = "main") ],
);

const counterWorker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "counter.js", esModule = embed "build/counter.js"),
    (name = "chat.js", esModule = embed "chat.js"),
    (name = "sql.js", esModule = embed "sql.js"),
  ],
  compatibilityDate = "2024-11-01",
  durableObjectNamespaces = [
    (className = "Counter", uniqueKey = "dohost-bench-counter"),
    (className = "ChatRoom", uniqueKey = "dohost-bench-chat"),
    # SQLite-backed (the platform's new_sqlite_classes): ctx.storage.sql.
    (className = "SqlItems", uniqueKey = "dohost-bench-sql", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [
    (name = "COUNTER", durableObjectNamespace = "Counter"),
    (name = "ROOM", durableObjectNamespace = "ChatRoom"),
    (name = "SQL", durableObjectNamespace = "SqlItems"),
  ],
);
