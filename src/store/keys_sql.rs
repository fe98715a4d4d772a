//! API keys' SQL, shared by both backends like the rest of `sql.rs`. The row keeps the
//! key's record, including the sha256 of its secret — never the secret.

use super::{Arg, Backend, OnUnique, StoreResult, Write, micros, to_body};
use crate::auth::ApiKey;

const KEY_COLUMNS: &str = "SELECT seq, id AS rid, body FROM api_keys";

/// The statements that insert or replace each key by id (revocation rewrites the row).
pub(super) fn key_writes(keys: &[ApiKey], writes: &mut Vec<Write>) -> StoreResult<()> {
    for key in keys {
        writes.push(Write::new(
            "INSERT INTO api_keys (id, role, agent_id, revoked_us, created_us, body) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET revoked_us = excluded.revoked_us, body = excluded.body",
            vec![
                key.id.as_str().into(),
                key.role.as_str().into(),
                key.agent_id.into(),
                key.revoked_at.map(micros).into(),
                micros(key.created_at).into(),
                Arg::Text(to_body("api_keys", &key.id, key)?),
            ],
            OnUnique::Conflict,
            format!("write API key {}", key.id),
        ));
    }
    Ok(())
}

impl Backend {
    pub(super) async fn read_api_key(&self, id: &str) -> StoreResult<Option<ApiKey>> {
        self.fetch_one(
            "api_keys",
            &format!("{KEY_COLUMNS} WHERE id = $1"),
            vec![id.into()],
        )
        .await
    }

    pub(super) async fn read_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.fetch_items(
            "api_keys",
            &format!("{KEY_COLUMNS} ORDER BY seq ASC LIMIT 10000"),
            vec![],
        )
        .await
    }
}
