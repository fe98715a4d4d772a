//! `ares key …`: mint, list and revoke API keys straight in the store, for bootstrapping
//! and for operators on the server's machine.

use super::Role;
use crate::config::StoreArgs;
use crate::service::Ares;
use crate::service::keys::{CreateApiKey, ListApiKeys, RevokeApiKey};
use clap::Subcommand;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Mint a key; the key is printed once, as the last word of the output.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// admin, agent or observer.
        #[arg(long, value_enum)]
        role: Role,
        /// For --role agent: the agent the key acts as.
        #[arg(long = "agent")]
        agent_id: Option<Uuid>,
        /// A label for people.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by id.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        key_id: String,
    },
}

pub async fn run(command: KeyCommand) -> anyhow::Result<()> {
    let store_args = match &command {
        KeyCommand::Create { store, .. }
        | KeyCommand::List { store }
        | KeyCommand::Revoke { store, .. } => store.clone(),
    };
    let store = crate::store::connect(&store_args.url()?).await?;
    let ares = Ares::new(store.clone());
    let context = crate::audit::CallContext::system("ares key");
    let outcome = crate::audit::context::scope(context, async {
        match command {
            KeyCommand::Create {
                role,
                agent_id,
                name,
                ..
            } => {
                let created = ares
                    .create_api_key(CreateApiKey {
                        role,
                        agent_id,
                        name,
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                eprintln!(
                    "created {} key {}; it is shown only now, keep it safe:",
                    created.api_key.role.as_str(),
                    created.api_key.id
                );
                println!("{}", created.key);
            }
            KeyCommand::List { .. } => {
                let keys = ares
                    .list_api_keys(ListApiKeys {})
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                for key in keys.keys {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        key.id,
                        key.role.as_str(),
                        key.agent_id
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "-".into()),
                        key.name.unwrap_or_else(|| "-".into()),
                        key.revoked_at
                            .map(|t| format!("revoked {}", t.to_rfc3339()))
                            .unwrap_or_else(|| "active".into()),
                    );
                }
            }
            KeyCommand::Revoke { key_id, .. } => {
                let key = ares
                    .revoke_api_key(RevokeApiKey { key_id })
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("revoked {}", key.id);
            }
        }
        anyhow::Ok(())
    })
    .await;
    store.close().await;
    outcome
}
