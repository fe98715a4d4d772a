//! Migrations that have shipped are never edited. sqlx records each applied migration's
//! checksum and refuses to start on a database whose applied migration has changed since, so
//! an edit to a shipped file would stop every existing installation from upgrading. A change
//! to the schema is a new migration; a new migration's hash is added here when it ships.

use sha2::{Digest, Sha256};

const SHIPPED: &[(&str, &str)] = &[
    (
        "migrations/postgres/0001_init.sql",
        "db4e0389064eb9a06925d35ca8eee064087e4b667b7928fcb06007f9e477dc32",
    ),
    (
        "migrations/postgres/0002_audit.sql",
        "6489cb37242903e42d2701211e868e061fda588a5c4ee99fef52e69f4840be7f",
    ),
    (
        "migrations/postgres/0003_api_keys.sql",
        "2388cd2296f1eb1fcc35c4851c8c43499284e06a15f8fbf78394a3e5a8b308da",
    ),
    (
        "migrations/postgres/0004_events.sql",
        "4ed08b9013bc409222c5a1d3809cb5673a3380948ad28c6066768f9562c0ed89",
    ),
    (
        "migrations/postgres/0005_task_dependencies.sql",
        "4311eb33c5b31362b46b7ad6531a62696fab79f3b7420fd6c6d9bbde1a9194b4",
    ),
    (
        "migrations/postgres/0006_event_outbox.sql",
        "bee5802d260c5e2fdc94d92625fb126d27eed6ad0e911404d8042ca9e037ab5f",
    ),
    (
        "migrations/postgres/0007_verdict_totals.sql",
        "ba2eca8a2e2100a675e7f443bc545bc1d6e6a8a2e0b18f01dc4f49bc627f5808",
    ),
    (
        "migrations/postgres/0008_covering_indexes.sql",
        "61a5daaf1923a56f8ba3d6ef2d0b476fe8e0b1525d1e055205f2e3fd46e274a9",
    ),
    (
        "migrations/postgres/0009_task_deadlines.sql",
        "eaa0fcb57d13d5b9fb8c3e9713b2fe1ed6f7079cdf4a28ee76d3edb1fe09754a",
    ),
    (
        "migrations/sqlite/0001_init.sql",
        "6ede5e76dcaa115d1b0e7550f3944ca47a2cb5b4128ce93d684d5146fd9520b6",
    ),
    (
        "migrations/sqlite/0002_audit.sql",
        "32d0290fcebb5fa61a880e7123d3ae106d5155a360ec35490ece2bd0a297e734",
    ),
    (
        "migrations/sqlite/0003_api_keys.sql",
        "0ff326e2809a9733000b22dd8ec42407af0e7e7b461c3a8ab5331e501855b400",
    ),
    (
        "migrations/sqlite/0004_events.sql",
        "8fe0a1cc8fc56347bf9594c35ec5c2e62dd4decd18b3a4433506fd2afc39be19",
    ),
    (
        "migrations/sqlite/0005_task_dependencies.sql",
        "9e054dbab1a229a73560a68df938c000876c0f135fc0222501cd00998804ce5a",
    ),
    (
        "migrations/sqlite/0006_event_outbox.sql",
        "bee5802d260c5e2fdc94d92625fb126d27eed6ad0e911404d8042ca9e037ab5f",
    ),
    (
        "migrations/sqlite/0007_verdict_totals.sql",
        "2a7e834e3b9ca9c6e1199e5fcae56d9f18114c23445d25699462aba6cd577b75",
    ),
    (
        "migrations/sqlite/0008_covering_indexes.sql",
        "3ae1c5427782b3bccba7d25e20b3fddb5e562668cfe94824ef4ed97c73e9c129",
    ),
    (
        "migrations/sqlite/0009_task_deadlines.sql",
        "302465560c0c697873d534af9abba874caab1219e008532dfa7a6f00b535ee2a",
    ),
];

#[test]
fn shipped_migrations_are_never_edited() {
    let root = env!("CARGO_MANIFEST_DIR");
    for (path, sealed) in SHIPPED {
        let text = std::fs::read(format!("{root}/{path}"))
            .unwrap_or_else(|e| panic!("{path} shipped and must stay: {e}"));
        assert_eq!(
            hex::encode(Sha256::digest(&text)),
            *sealed,
            "{path} has shipped and was edited: put the change in a new migration"
        );
    }
}

#[test]
fn every_migration_is_listed_once_it_ships() {
    let root = env!("CARGO_MANIFEST_DIR");
    for backend in ["sqlite", "postgres"] {
        for entry in std::fs::read_dir(format!("{root}/migrations/{backend}")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let path = format!("migrations/{backend}/{name}");
            assert!(
                SHIPPED.iter().any(|(p, _)| *p == path),
                "{path} is not in SHIPPED: add its sha256 to tests/migrations.rs"
            );
        }
    }
}
