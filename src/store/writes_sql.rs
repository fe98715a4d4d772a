//! A commit's statements, planned first and then sent to the database: shared by both
//! backends like the rest of `sql.rs`.
//!
//! Each backend defines `ONE_TRIP`. SQLite runs its connection on a thread of its own, and
//! every statement sent to it is a hand-off to that thread and back, which cost more than
//! most of the statements themselves. So there a batch's statements go as one
//! multi-statement query: one hand-off per batch, each statement still prepared once and
//! cached. PostgreSQL's extended protocol takes one statement per query, so there they go
//! one by one.

use super::super::ONE_TRIP;
use super::{Arg, Backend, Db, OnUnique, StoreError, StoreResult, Tx, query};
use futures_util::StreamExt;
use sqlx::{Either, Executor};
use std::borrow::Cow;
use std::fmt::Write as _;

/// Queries of at most this many statements stay prepared for the next batch of the same
/// shape; a larger one (a sweep over many tasks, say) is rare and would crowd the cache.
const CACHED_STATEMENTS: usize = 12;

/// One statement of a commit, and how to read its outcome.
pub(super) struct Write {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
    on_unique: OnUnique,
    /// What the statement does, for an error.
    what: String,
    /// A versioned update: changing no row means the stored version has moved on.
    versioned: bool,
}

impl Write {
    pub(super) fn new(
        sql: impl Into<Cow<'static, str>>,
        args: Vec<Arg>,
        on_unique: OnUnique,
        what: String,
    ) -> Self {
        Self {
            sql: sql.into(),
            args,
            on_unique,
            what,
            versioned: false,
        }
    }

    /// The statement updates a row at a version; if no row has that version, the write
    /// conflicts with one made since the row was read.
    pub(super) fn versioned(self) -> Self {
        Self {
            versioned: true,
            ..self
        }
    }

    fn check(&self, changed: u64) -> StoreResult<()> {
        if self.versioned && changed == 0 {
            tracing::debug!(what = %self.what, "stale version");
            return Err(StoreError::Conflict);
        }
        Ok(())
    }
}

impl Backend {
    /// Runs `writes` in `tx`, in order; the first that fails fails the lot, and the caller
    /// rolls back whatever ran before it.
    pub(super) async fn run_writes(&self, tx: &mut Tx, writes: Vec<Write>) -> StoreResult<()> {
        self.run_trip(tx, writes).await.map(drop)
    }

    /// Runs `writes` as [`Self::run_writes`] does, and returns the last row a statement
    /// answered with (only in one trip: a query among the writes, as the last of them).
    pub(super) async fn run_trip(
        &self,
        tx: &mut Tx,
        mut writes: Vec<Write>,
    ) -> StoreResult<Option<<Db as sqlx::Database>::Row>> {
        if !ONE_TRIP {
            for mut write in writes {
                let args = std::mem::take(&mut write.args);
                let changed = self
                    .exec(tx, &write.sql, args, write.on_unique, &write.what)
                    .await?;
                write.check(changed)?;
            }
            return Ok(None);
        }
        if writes.is_empty() {
            return Ok(None);
        }
        let (text, args) = joined(&mut writes);
        let persistent = writes.len() <= CACHED_STATEMENTS;
        let mut steps = (&mut **tx).fetch_many(query(&text, args).persistent(persistent));
        let (mut ran, mut last_row) = (0, None);
        while let Some(step) = steps.next().await {
            let write = writes.get(ran).ok_or_else(|| {
                StoreError::Internal(anyhow::anyhow!(
                    "{} statements answered {} times",
                    writes.len(),
                    ran + 1
                ))
            })?;
            match step {
                Ok(Either::Left(done)) => {
                    write.check(done.rows_affected())?;
                    ran += 1;
                }
                Ok(Either::Right(row)) => last_row = Some(row),
                Err(e) => return Err(self.fail_write(e, write.on_unique, &write.what)),
            }
        }
        if ran < writes.len() {
            return Err(StoreError::Internal(anyhow::anyhow!(
                "only {ran} of {} statements ran",
                writes.len()
            )));
        }
        Ok(last_row)
    }
}

/// The statements as one query, their placeholders numbered on across it, and the values
/// of all of them in order. Takes the values out of `writes`.
fn joined(writes: &mut [Write]) -> (String, Vec<Arg>) {
    let mut text = String::with_capacity(writes.iter().map(|w| w.sql.len() + 8).sum());
    let mut args = Vec::with_capacity(writes.iter().map(|w| w.args.len()).sum());
    for write in writes {
        if !text.is_empty() {
            text.push_str(";\n");
        }
        push_renumbered(&mut text, &write.sql, args.len());
        args.append(&mut write.args);
    }
    (text, args)
}

/// Appends `sql` to `text` with each `$N` placeholder moved on by `offset`.
fn push_renumbered(text: &mut String, sql: &str, offset: usize) {
    if offset == 0 {
        text.push_str(sql);
        return;
    }
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => {
                let _ = write!(text, "{}", n + offset);
            }
            Err(_) => text.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    text.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(sql: &'static str, args: usize) -> Write {
        let args = (0..args as i64).map(Arg::Int).collect();
        Write::new(sql, args, OnUnique::Conflict, String::new())
    }

    #[test]
    fn placeholders_are_numbered_on_across_the_statements() {
        let mut writes = [
            write("INSERT INTO a VALUES ($1, $2)", 2),
            write("UPDATE b SET x = $2 WHERE id = $1 AND v = $3", 3),
            write("INSERT INTO c VALUES ($1, $10, 'a$b')", 10),
        ];
        let (text, args) = joined(&mut writes);
        assert_eq!(
            text,
            "INSERT INTO a VALUES ($1, $2);\n\
             UPDATE b SET x = $4 WHERE id = $3 AND v = $5;\n\
             INSERT INTO c VALUES ($6, $15, 'a$b')"
        );
        assert_eq!(args.len(), 15);
        assert!(writes.iter().all(|w| w.args.is_empty()), "the values moved");
    }

    #[test]
    fn a_statement_alone_is_left_as_it_is() {
        let mut text = String::new();
        push_renumbered(&mut text, "SELECT $1, $12", 0);
        assert_eq!(text, "SELECT $1, $12");
    }
}
