//! The seed's transaction example, grown into a small bank.
//!
//! | request | does |
//! | --- | --- |
//! | `POST /deposit` | the seed's example: +100 to `balance` in a transaction; answers the new balance |
//! | `POST /open?account=A&balance=N` | creates account A with N |
//! | `GET /balance?account=A` | A's balance (404 if there is no such account) |
//! | `POST /transfer?from=A&to=B&amount=N` | moves N from A to B atomically |
//! | `POST /transfer?...&dry_run=1` | computes the transfer, then `txn.rollback()` |
//! | `GET /accounts` | every account and balance |
//!
//! A transfer debits A first and only then checks the funds and B: failing half-way, it
//! answers 409 and the transaction rolls back, so A is untouched.

use dohost_sdk::{
    DurableObject, Env, Error, ListOptions, Request, Response, Result, State, durable_object,
};
use serde_json::json;

#[durable_object]
pub struct Bank {
    state: State,
}

fn param(req: &Request, name: &str) -> Result<String> {
    req.query_param(name)
        .ok_or_else(|| Error::bad_request(format!("missing ?{name}=")))
}

fn account_key(name: &str) -> String {
    format!("account:{name}")
}

impl DurableObject for Bank {
    fn new(state: State, _env: Env) -> Self {
        Bank { state }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        let storage = self.state.storage();
        match (req.method(), req.path()) {
            ("POST", "/deposit") => {
                let balance = storage.transaction(|txn| {
                    let balance: i64 = txn.get("balance")?.unwrap_or(0);
                    let new_balance = balance + 100;
                    txn.put("balance", &new_balance)?;
                    Ok(new_balance)
                })?;
                Ok(Response::text(balance.to_string()))
            }
            ("POST", "/open") => {
                let account = param(&req, "account")?;
                let balance: i64 = param(&req, "balance")?.parse()?;
                storage.put(&account_key(&account), &balance)?;
                Ok(Response::json(
                    &json!({ "account": account, "balance": balance }),
                ))
            }
            ("GET", "/balance") => {
                let account = param(&req, "account")?;
                match storage.get::<i64>(&account_key(&account))? {
                    Some(b) => Ok(Response::text(b.to_string())),
                    None => Ok(Response::text("no such account").with_status(404)),
                }
            }
            ("POST", "/transfer") => {
                let from = param(&req, "from")?;
                let to = param(&req, "to")?;
                let amount: i64 = req.require_query("amount")?;
                let dry_run = req.query_param("dry_run").is_some();
                let result = storage.transaction(|txn| {
                    let from_balance: i64 = txn
                        .get(&account_key(&from))?
                        .ok_or_else(|| Error::msg(format!("no account {from}")))?;
                    // Debit first: everything after this point can still fail.
                    txn.put(&account_key(&from), &(from_balance - amount))?;
                    if amount <= 0 {
                        return Err(Error::msg("amount must be positive"));
                    }
                    if from_balance < amount {
                        return Err(Error::msg(format!("insufficient funds in {from}")));
                    }
                    let to_balance: i64 = txn
                        .get(&account_key(&to))?
                        .ok_or_else(|| Error::msg(format!("no account {to}")))?;
                    txn.put(&account_key(&to), &(to_balance + amount))?;
                    if dry_run {
                        txn.rollback();
                    }
                    Ok(json!({
                        "from": from_balance - amount,
                        "to": to_balance + amount,
                        "dry_run": dry_run,
                    }))
                });
                match result {
                    Ok(v) => Ok(Response::json(&v)),
                    Err(e) => Ok(Response::text(format!("transfer failed: {e}")).with_status(409)),
                }
            }
            ("GET", "/accounts") => {
                let accounts: Vec<(String, i64)> =
                    storage.list(ListOptions::new().prefix("account:"))?;
                let accounts: Vec<_> = accounts
                    .into_iter()
                    .map(|(k, v)| (k.trim_start_matches("account:").to_string(), v))
                    .collect();
                Ok(Response::json(&accounts))
            }
            _ => Ok(Response::text("Not found").with_status(404)),
        }
    }
}
