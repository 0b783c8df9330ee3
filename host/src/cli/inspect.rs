//! `dohost inspect`: its arguments, and the admin API request each one makes.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// The node's admin listener.
    #[arg(long, env = "DOHOST_ADMIN", default_value = dohost::admin::DEFAULT_ADDR)]
    admin: String,
    /// The file holding the admin API's bearer token, if it has one.
    #[arg(long, value_name = "FILE", env = "DOHOST_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    #[command(subcommand)]
    what: InspectCommand,
}

#[derive(Subcommand)]
pub enum InspectCommand {
    /// The classes served: binding, class name, namespace.
    Classes,
    /// A class's objects (IDs and names), in ID order, a page at a time.
    Objects {
        binding: String,
        /// Start after this object ID (the previous page's `next`).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// An object's stored entries (values as JSON when they parse, else base64).
    Entries {
        binding: String,
        id: String,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        reverse: bool,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// An object's alarm (milliseconds since the Unix epoch, or null).
    Alarm { binding: String, id: String },
    /// Stores VALUE (as is: the SDK stores JSON, so `5` or '"text"') under KEY, as one of
    /// the object's events.
    Put {
        binding: String,
        id: String,
        key: String,
        value: String,
    },
    /// Deletes KEY, as one of the object's events.
    Delete {
        binding: String,
        id: String,
        key: String,
    },
    /// Deletes every entry of the object.
    DeleteAll { binding: String, id: String },
    /// Sets the alarm to AT (milliseconds since the Unix epoch), exactly.
    SetAlarm {
        binding: String,
        id: String,
        at: u64,
    },
    /// Deletes the alarm.
    DeleteAlarm { binding: String, id: String },
    /// Runs the alarm now (sets it due now).
    RunAlarm { binding: String, id: String },
    /// Runs a read-only SQL query on the object's database, as one of its events.
    Sql {
        binding: String,
        id: String,
        query: String,
    },
    /// Drops the object's instance if it is idle (its next event builds a new one).
    Evict { binding: String, id: String },
    /// The object's open WebSockets on that node, with their tags.
    Sockets { binding: String, id: String },
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let token = args
        .admin_token_file
        .as_deref()
        .map(dohost::admin::read_token)
        .transpose()?;
    use dohost::admin::client::segment as seg;
    use hyper::Method;
    let object = |b: &str, id: &str, rest: &str| format!("/objects/{}/{}/{rest}", seg(b), seg(id));
    let (method, path, body) = match args.what {
        InspectCommand::Put {
            binding,
            id,
            key,
            value,
        } => (
            Method::PUT,
            object(&binding, &id, &format!("entries/{}", seg(&key))),
            value.into_bytes(),
        ),
        InspectCommand::Delete { binding, id, key } => (
            Method::DELETE,
            object(&binding, &id, &format!("entries/{}", seg(&key))),
            Vec::new(),
        ),
        InspectCommand::DeleteAll { binding, id } => {
            (Method::DELETE, object(&binding, &id, "entries"), Vec::new())
        }
        InspectCommand::SetAlarm { binding, id, at } => (
            Method::PUT,
            object(&binding, &id, "alarm"),
            at.to_string().into_bytes(),
        ),
        InspectCommand::DeleteAlarm { binding, id } => {
            (Method::DELETE, object(&binding, &id, "alarm"), Vec::new())
        }
        InspectCommand::RunAlarm { binding, id } => {
            (Method::POST, object(&binding, &id, "alarm/run"), Vec::new())
        }
        InspectCommand::Evict { binding, id } => {
            (Method::POST, object(&binding, &id, "evict"), Vec::new())
        }
        InspectCommand::Sql { binding, id, query } => (
            Method::POST,
            object(&binding, &id, "sql"),
            query.into_bytes(),
        ),
        InspectCommand::Sockets { binding, id } => {
            (Method::GET, object(&binding, &id, "sockets"), Vec::new())
        }
        read => (Method::GET, read_path(read), Vec::new()),
    };
    let answer =
        dohost::admin::client::request(&args.admin, token.as_deref(), method, &path, body)?;
    println!("{answer}");
    Ok(())
}

/// The admin API's path for a read (`classes`, `objects`, `entries`, `alarm`).
fn read_path(what: InspectCommand) -> String {
    use dohost::admin::client::{query as q, segment as seg};
    match what {
        InspectCommand::Classes => "/classes".to_string(),
        InspectCommand::Objects {
            binding,
            after,
            limit,
        } => format!(
            "/classes/{}/objects{}",
            seg(&binding),
            q(&[("after", after), ("limit", Some(limit.to_string()))])
        ),
        InspectCommand::Entries {
            binding,
            id,
            prefix,
            start,
            end,
            reverse,
            limit,
        } => format!(
            "/objects/{}/{}/entries{}",
            seg(&binding),
            seg(&id),
            q(&[
                ("prefix", prefix),
                ("start", start),
                ("end", end),
                ("reverse", reverse.then(|| "true".to_string())),
                ("limit", limit.map(|l| l.to_string())),
            ])
        ),
        InspectCommand::Alarm { binding, id } => {
            format!("/objects/{}/{}/alarm", seg(&binding), seg(&id))
        }
        _ => unreachable!("edits are sent by `inspect`"),
    }
}
