//! Audit entries, the hash that chains each to the one before, and the walk that finds the
//! first entry that was edited, removed or reordered. Pure: no database in sight.
//!
//! An entry's `hash` is sha256 over its `prev_hash`, a NUL byte, and the RFC 8785 canonical
//! JSON of every other field (`seq`, `id`, `at`, `actor`, `tool`, `args_digest`, `outcome`,
//! `agent_ids`, `task_ids`). The first entry has `seq` 1 and chains to [`GENESIS`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The `prev_hash` of the first entry: 64 zeros.
pub const GENESIS: &str = crate::evidence::GENESIS;

/// Who made a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    /// The API key the call came with; none for the local stdio user and for ARES itself.
    pub key_id: Option<String>,
    /// `admin`, `agent`, `observer`, or `system` for ARES's own background work.
    pub role: String,
    /// The agent an `agent` key is bound to.
    pub agent_id: Option<Uuid>,
    /// Who this is in words: `local` (the stdio user), `system`, or the key's id.
    pub label: String,
}

impl Actor {
    /// The local user on stdio, who acts as admin.
    pub fn local() -> Self {
        Self {
            key_id: None,
            role: "admin".into(),
            agent_id: None,
            label: "local".into(),
        }
    }

    /// ARES itself: timers and other work no caller asked for.
    pub fn system() -> Self {
        Self {
            key_id: None,
            role: "system".into(),
            agent_id: None,
            label: "system".into(),
        }
    }

    /// A caller identified by an API key.
    pub fn key(key_id: impl Into<String>, role: impl Into<String>, agent_id: Option<Uuid>) -> Self {
        let key_id = key_id.into();
        Self {
            label: key_id.clone(),
            key_id: Some(key_id),
            role: role.into(),
            agent_id,
        }
    }
}

/// An entry as `Ares::commit` writes it, before the store gives it its place in the chain
/// (inside the same transaction as the change it records).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub tool: String,
    pub args_digest: String,
    pub outcome: String,
    pub agent_ids: Vec<Uuid>,
    pub task_ids: Vec<Uuid>,
}

/// What an entry says apart from its place, id and time: the row's `body` column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditBody {
    pub actor: Actor,
    pub tool: String,
    pub args_digest: String,
    pub outcome: String,
    pub agent_ids: Vec<Uuid>,
    pub task_ids: Vec<Uuid>,
}

/// One entry of the audit log: who did what, when, chained to the entry before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditRecord {
    /// Position in the chain, from 1; also the `after` cursor of `get_audit_log`.
    pub seq: i64,
    pub id: Uuid,
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// Who made it.
    pub actor: Actor,
    /// The tool called (`internal` for work no call asked for).
    pub tool: String,
    /// Hex sha256 of the RFC 8785 canonical JSON of the call's arguments.
    pub args_digest: String,
    /// `ok`: only calls that changed something are recorded.
    pub outcome: String,
    /// Agents the change touched.
    pub agent_ids: Vec<Uuid>,
    /// Tasks the change touched.
    pub task_ids: Vec<Uuid>,
    /// The previous entry's `hash` (64 zeros for the first).
    pub prev_hash: String,
    /// sha256 over `prev_hash` and the canonical JSON of every other field.
    pub hash: String,
}

/// The fields an entry's hash covers, in a fixed shape.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: i64,
    id: Uuid,
    at: DateTime<Utc>,
    actor: &'a Actor,
    tool: &'a str,
    args_digest: &'a str,
    outcome: &'a str,
    agent_ids: &'a [Uuid],
    task_ids: &'a [Uuid],
}

impl AuditRecord {
    /// Gives a draft its place after the entry whose hash is `prev_hash`.
    pub fn seal(draft: AuditDraft, seq: i64, prev_hash: &str) -> Self {
        let mut record = Self {
            seq,
            id: draft.id,
            at: draft.at,
            actor: draft.actor,
            tool: draft.tool,
            args_digest: draft.args_digest,
            outcome: draft.outcome,
            agent_ids: draft.agent_ids,
            task_ids: draft.task_ids,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        record.hash = record.expected_hash();
        record
    }

    /// Rebuilds an entry from its stored columns.
    pub fn from_parts(
        seq: i64,
        id: Uuid,
        at: DateTime<Utc>,
        body: AuditBody,
        prev_hash: String,
        hash: String,
    ) -> Self {
        Self {
            seq,
            id,
            at,
            actor: body.actor,
            tool: body.tool,
            args_digest: body.args_digest,
            outcome: body.outcome,
            agent_ids: body.agent_ids,
            task_ids: body.task_ids,
            prev_hash,
            hash,
        }
    }

    pub fn body(&self) -> AuditBody {
        AuditBody {
            actor: self.actor.clone(),
            tool: self.tool.clone(),
            args_digest: self.args_digest.clone(),
            outcome: self.outcome.clone(),
            agent_ids: self.agent_ids.clone(),
            task_ids: self.task_ids.clone(),
        }
    }

    /// What `hash` must be, given `prev_hash` and the other fields as they are now.
    pub fn expected_hash(&self) -> String {
        let hashed = Hashed {
            seq: self.seq,
            id: self.id,
            at: self.at,
            actor: &self.actor,
            tool: &self.tool,
            args_digest: &self.args_digest,
            outcome: &self.outcome,
            agent_ids: &self.agent_ids,
            task_ids: &self.task_ids,
        };
        let json = serde_json_canonicalizer::to_vec(&hashed).expect("audit entries serialize");
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update([0]);
        h.update(&json);
        hex::encode(h.finalize())
    }
}

/// Hex sha256 of the RFC 8785 canonical JSON of a tool call's arguments.
pub fn args_digest(args: &serde_json::Value) -> String {
    let json = serde_json_canonicalizer::to_vec(args).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

/// How the chain is broken at the first bad place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakReason {
    /// The entry's content no longer matches its hash (or its successor's link).
    Edited,
    /// Entries are missing at this position.
    Removed,
    /// An entry sits where it was not written.
    Reordered,
    /// The chain holds together, but not with a checkpoint ARES signed: it was rebuilt.
    Rewritten,
}

impl BreakReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Edited => "edited",
            Self::Removed => "removed",
            Self::Reordered => "reordered",
            Self::Rewritten => "rewritten",
        }
    }
}

/// The first bad place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Broken {
    /// The chain position (`seq`, from 1) where the chain first fails.
    pub index: i64,
    /// The entry found there; for `removed`, the entry after the gap (none when the end of
    /// the log is gone).
    pub id: Option<Uuid>,
    pub reason: BreakReason,
    /// What was found, in words.
    pub detail: String,
}

/// Where a walk first found something wrong, before the rest of the log says why.
#[derive(Debug, Clone)]
pub struct Suspect {
    /// The position the chain expected next.
    pub index: i64,
    /// Where in the walk the suspect entry came (0-based).
    position: usize,
    record: Box<AuditRecord>,
    hash_valid: bool,
    linked: bool,
    prev_id: Option<Uuid>,
}

/// Walks a log in stored order, one entry (or page) at a time, and stops at the first entry
/// that does not follow from the one before. Keeps only the last hash, so a log of any
/// length can be streamed through it.
#[derive(Debug, Clone)]
pub struct ChainWalker {
    next_seq: i64,
    prev_hash: String,
    prev_id: Option<Uuid>,
    position: usize,
    /// Lengths whose head hash is wanted (the checkpoints), and what was found.
    wanted: std::collections::BTreeMap<i64, Option<(String, Uuid)>>,
}

impl Default for ChainWalker {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainWalker {
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS.to_string(),
            prev_id: None,
            position: 0,
            wanted: Default::default(),
        }
    }

    /// Asks the walk to remember the hash of the entry at position `length`.
    pub fn want_head_at(&mut self, length: i64) {
        self.wanted.entry(length).or_insert(None);
    }

    /// Takes the next entry; a [`Suspect`] when it does not follow.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), Suspect> {
        let hash_valid = record.expected_hash() == record.hash;
        let linked = record.prev_hash == self.prev_hash;
        if !(hash_valid && linked && record.seq == self.next_seq) {
            return Err(Suspect {
                index: self.next_seq,
                position: self.position,
                record: Box::new(record.clone()),
                hash_valid,
                linked,
                prev_id: self.prev_id,
            });
        }
        if let Some(slot) = self.wanted.get_mut(&record.seq) {
            *slot = Some((record.hash.clone(), record.id));
        }
        self.next_seq += 1;
        self.prev_hash = record.hash.clone();
        self.prev_id = Some(record.id);
        self.position += 1;
        Ok(())
    }

    /// Entries walked so far, all intact.
    pub fn length(&self) -> i64 {
        self.next_seq - 1
    }

    /// The hash of the last intact entry (GENESIS when none).
    pub fn head_hash(&self) -> &str {
        &self.prev_hash
    }

    /// The hash of the entry at `length`, if it was wanted and walked (GENESIS for 0).
    pub fn head_at(&self, length: i64) -> Option<&str> {
        if length == 0 {
            return Some(GENESIS);
        }
        self.wanted
            .get(&length)
            .and_then(|h| h.as_ref())
            .map(|(hash, _)| hash.as_str())
    }

    /// The id of the entry at `length`, if it was wanted and walked.
    pub fn id_at(&self, length: i64) -> Option<Uuid> {
        self.wanted
            .get(&length)
            .and_then(|h| h.as_ref())
            .map(|(_, id)| *id)
    }
}

/// Decides why a [`Suspect`] broke the chain, from a second pass over the whole log.
#[derive(Debug, Clone)]
pub struct Classifier {
    suspect: Suspect,
    position: usize,
    /// Another entry carries a position between the expected one and the suspect's.
    seq_elsewhere: bool,
    /// Another entry's hash is the one the suspect chains to.
    prev_found: bool,
}

impl Classifier {
    pub fn new(suspect: Suspect) -> Self {
        Self {
            suspect,
            position: 0,
            seq_elsewhere: false,
            prev_found: false,
        }
    }

    /// Takes every entry of the log again, in the same order.
    pub fn push(&mut self, record: &AuditRecord) {
        let position = self.position;
        self.position += 1;
        if position == self.suspect.position {
            return;
        }
        let (e, s) = (self.suspect.index, &self.suspect.record);
        if record.seq == e || (record.seq > e && record.seq < s.seq) {
            self.seq_elsewhere = true;
        }
        if record.hash == s.prev_hash {
            self.prev_found = true;
        }
    }

    pub fn finish(self) -> Broken {
        let Suspect {
            index: e,
            record: r,
            hash_valid,
            linked,
            prev_id,
            ..
        } = self.suspect;
        let moved = self.prev_found || (r.prev_hash == GENESIS && e != 1);
        let at = |index: i64, id: Option<Uuid>, reason: BreakReason, detail: String| Broken {
            index,
            id,
            reason,
            detail,
        };
        if !hash_valid {
            return if !linked && moved {
                at(
                    e,
                    Some(r.id),
                    BreakReason::Reordered,
                    format!(
                        "entry {} at position {e} was written after another entry, not here",
                        r.id
                    ),
                )
            } else {
                at(
                    e,
                    Some(r.id),
                    BreakReason::Edited,
                    format!("entry {} at position {e} no longer matches its hash", r.id),
                )
            };
        }
        if r.seq < e || (r.seq > e && self.seq_elsewhere) || (r.seq == e && self.prev_found) {
            return at(
                e,
                Some(r.id),
                BreakReason::Reordered,
                format!(
                    "entry {} (written at position {}) is found at position {e}",
                    r.id, r.seq
                ),
            );
        }
        if r.seq > e {
            let missing = if r.seq - 1 == e {
                format!("entry {e} is missing")
            } else {
                format!("entries {e} to {} are missing", r.seq - 1)
            };
            return at(
                e,
                Some(r.id),
                BreakReason::Removed,
                format!("{missing}; the next is {}", r.id),
            );
        }
        // In place and self-consistent, but chained to a hash no entry has: the entry
        // before it was replaced and re-hashed.
        match prev_id {
            Some(prev) if e > 1 => at(
                e - 1,
                Some(prev),
                BreakReason::Edited,
                format!(
                    "entry {prev} at position {} was rewritten; entry {} still chains to its old hash",
                    e - 1,
                    r.id
                ),
            ),
            _ => at(
                e,
                Some(r.id),
                BreakReason::Edited,
                format!(
                    "entry {} at position {e} does not chain to the start of the log",
                    r.id
                ),
            ),
        }
    }
}

/// Checks a whole log held in memory, in stored order; the first bad entry, if any.
pub fn verify_chain(records: &[AuditRecord]) -> Result<(), Broken> {
    let mut walker = ChainWalker::new();
    let Some(suspect) = records.iter().find_map(|r| walker.push(r).err()) else {
        return Ok(());
    };
    let mut classifier = Classifier::new(suspect);
    records.iter().for_each(|r| classifier.push(r));
    Err(classifier.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn draft(n: usize) -> AuditDraft {
        AuditDraft {
            id: Uuid::from_u128(n as u128 + 1),
            at: DateTime::from_timestamp_micros(1_800_000_000_000_000 + n as i64 * 1_000).unwrap(),
            actor: Actor::local(),
            tool: ["register_agent", "create_task", "submit_evidence"][n % 3].into(),
            args_digest: hex::encode(Sha256::digest(n.to_string())),
            outcome: "ok".into(),
            agent_ids: vec![Uuid::from_u128(1000 + n as u128)],
            task_ids: if n % 2 == 0 {
                vec![]
            } else {
                vec![Uuid::from_u128(2000 + n as u128)]
            },
        }
    }

    fn log(n: usize) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::with_capacity(n);
        for i in 0..n {
            let prev = out.last().map_or(GENESIS.to_string(), |r| r.hash.clone());
            out.push(AuditRecord::seal(draft(i), i as i64 + 1, &prev));
        }
        out
    }

    fn broken(records: &[AuditRecord]) -> Broken {
        verify_chain(records).expect_err("tampering must be detected")
    }

    #[test]
    fn an_untouched_log_verifies() {
        assert_eq!(verify_chain(&[]), Ok(()));
        assert_eq!(verify_chain(&log(5)), Ok(()));
    }

    #[test]
    fn the_hash_covers_every_field() {
        let base = log(1).remove(0);
        let edits: [fn(&mut AuditRecord); 11] = [
            |r| r.seq = 2,
            |r| r.id = Uuid::nil(),
            |r| r.at += chrono::Duration::microseconds(1),
            |r| r.actor.role = "observer".into(),
            |r| r.actor.key_id = Some("k".into()),
            |r| r.tool = "enforce".into(),
            |r| r.args_digest = "0".repeat(64),
            |r| r.outcome = "refused".into(),
            |r| r.agent_ids.clear(),
            |r| r.task_ids.push(Uuid::nil()),
            |r| r.prev_hash = "f".repeat(64),
        ];
        for edit in edits {
            let mut r = base.clone();
            edit(&mut r);
            assert_ne!(r.expected_hash(), base.hash, "{r:?}");
        }
    }

    #[test]
    fn the_digest_of_arguments_ignores_key_order() {
        let a = serde_json::json!({"name": "a", "capabilities": ["x"]});
        let b: serde_json::Value =
            serde_json::from_str(r#"{"capabilities":["x"],"name":"a"}"#).unwrap();
        assert_eq!(args_digest(&a), args_digest(&b));
        assert_ne!(
            args_digest(&a),
            args_digest(&serde_json::json!({"name": "b"}))
        );
    }

    #[test]
    fn an_edited_entry_is_named() {
        let mut records = log(4);
        records[2].tool = "deregister_agent".into();
        let b = broken(&records);
        assert_eq!(
            (b.index, b.id, b.reason),
            (3, Some(records[2].id), BreakReason::Edited)
        );
    }

    #[test]
    fn an_edited_and_rehashed_entry_is_named_by_its_successor() {
        let mut records = log(4);
        records[1].outcome = "forged".into();
        records[1].hash = records[1].expected_hash();
        let b = broken(&records);
        assert_eq!(
            (b.index, b.id, b.reason),
            (2, Some(records[1].id), BreakReason::Edited)
        );
    }

    #[test]
    fn a_removed_entry_is_located() {
        let mut records = log(5);
        let next = records[2].id;
        records.remove(1);
        let b = broken(&records);
        assert_eq!(
            (b.index, b.id, b.reason),
            (2, Some(next), BreakReason::Removed)
        );
    }

    #[test]
    fn a_swapped_pair_is_reordered() {
        let mut records = log(5);
        records.swap(1, 3);
        let b = broken(&records);
        assert_eq!((b.index, b.reason), (2, BreakReason::Reordered));
    }

    #[test]
    fn positions_swapped_in_place_are_reordered() {
        // What swapping two rows' seq columns in the database looks like once read back in
        // seq order.
        let mut records = log(5);
        records.swap(1, 3);
        records[1].seq = 2;
        records[3].seq = 4;
        let b = broken(&records);
        assert_eq!((b.index, b.reason), (2, BreakReason::Reordered));
    }

    #[test]
    fn the_walker_remembers_heads_for_checkpoints() {
        let records = log(4);
        let mut walker = ChainWalker::new();
        walker.want_head_at(2);
        for r in &records {
            walker.push(r).unwrap();
        }
        assert_eq!(walker.length(), 4);
        assert_eq!(walker.head_hash(), records[3].hash);
        assert_eq!(walker.head_at(2), Some(records[1].hash.as_str()));
        assert_eq!(walker.head_at(0), Some(GENESIS));
        assert_eq!(walker.head_at(3), None, "not asked for");
    }

    #[derive(Debug, Clone)]
    enum Tamper {
        Edit {
            at: usize,
            field: usize,
            rehash: bool,
        },
        Remove {
            at: usize,
        },
        Swap {
            a: usize,
            b: usize,
        },
    }

    fn tamper(len: usize) -> impl Strategy<Value = Tamper> {
        prop_oneof![
            (0..len, 0..8usize, any::<bool>()).prop_map(move |(at, field, rehash)| {
                // A re-hashed last entry is only caught by a checkpoint; re-hashing an edited
                // hash undoes the edit, and a re-hashed link cannot say which side moved.
                Tamper::Edit {
                    at,
                    field,
                    rehash: rehash && at + 1 < len && field < 6,
                }
            }),
            // Removing the last entry is only caught by a checkpoint.
            (0..len - 1).prop_map(|at| Tamper::Remove { at }),
            (0..len, 0..len)
                .prop_filter("two different entries", |(a, b)| a != b)
                .prop_map(|(a, b)| Tamper::Swap {
                    a: a.min(b),
                    b: a.max(b)
                }),
        ]
    }

    fn edit(r: &mut AuditRecord, field: usize) {
        match field {
            0 => r.tool.push('!'),
            1 => r.args_digest = "ab".repeat(32),
            2 => r.actor.label = "mallory".into(),
            3 => r.at += chrono::Duration::seconds(1),
            4 => r.agent_ids.push(Uuid::nil()),
            5 => r.id = Uuid::from_u128(u128::MAX),
            6 => r.hash = "cd".repeat(32),
            _ => r.prev_hash = "ef".repeat(32),
        }
    }

    proptest! {
        #[test]
        fn any_single_tampering_is_found_where_it_happened(
            (len, t) in (2usize..24).prop_flat_map(|len| (Just(len), tamper(len)))
        ) {
            let mut records = log(len);
            let (index, reason) = match t {
                Tamper::Edit { at, field, rehash } => {
                    edit(&mut records[at], field);
                    if rehash {
                        records[at].hash = records[at].expected_hash();
                    }
                    (at as i64 + 1, BreakReason::Edited)
                }
                Tamper::Remove { at } => {
                    records.remove(at);
                    (at as i64 + 1, BreakReason::Removed)
                }
                Tamper::Swap { a, b } => {
                    records.swap(a, b);
                    (a as i64 + 1, BreakReason::Reordered)
                }
            };
            let b = verify_chain(&records).expect_err("detected");
            prop_assert_eq!((b.index, b.reason), (index, reason), "{:?}", b);
        }
    }
}
