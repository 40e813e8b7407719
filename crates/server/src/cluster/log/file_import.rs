//! `wasm-hypervisor log import`, and the start-up check it answers: a file log
//! with records in a replica's data directory refuses the start unless the
//! database records that this very file (size and root) was imported.

use std::path::Path;
use std::time::SystemTime;

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::super::{Cluster, unix_millis};
use super::{CHANNEL, LOG_LOCK, LogError, decode};
use crate::audit::AuditError;
use crate::audit::file::LOG_FILE;
use crate::audit::file::recovery::{RawRecord, read_records, read_unused};
use crate::keys::ServerKey;
use wasm_hypervisor_protocol::merkle::{Hash, MerkleTree};

/// Refuses a data directory whose file log holds records the database did not
/// record importing.
pub(super) async fn refuse_unimported_file_log(
    cluster: &Cluster,
    data_dir: &Path,
) -> Result<(), LogError> {
    let path = data_dir.join(LOG_FILE);
    if !path.exists() {
        return Ok(());
    }
    let records = read_records(&path)?;
    if records.is_empty() {
        return Ok(());
    }
    let mut tree = MerkleTree::default();
    for record in &records {
        tree.push(record.leaf.hash());
    }
    let size = records.len() as i64;
    let root = tree.root(tree.size()).expect("the current size").to_vec();
    let imported = cluster
        .run(|client| async move {
            client
                .query_opt(
                    "SELECT 1 FROM log_import WHERE size = $1 AND root = $2",
                    &[&size, &root],
                )
                .await
        })
        .await?;
    if imported.is_some() {
        return Ok(());
    }
    Err(LogError::UnimportedFileLog {
        path,
        records: records.len() as u64,
    })
}

/// What `log import` copied.
#[derive(Debug, Clone)]
pub struct Imported {
    pub records: u64,
    pub root: Hash,
}

/// `wasm-hypervisor log import`: copies the file log in `data_dir` (not in use,
/// checked against its persisted checkpoint) into the empty log of the database
/// `cluster` is connected to, in one transaction, checks the copy's root, and
/// records the import (so that a replica on this data directory starts).
pub(crate) async fn import(
    cluster: &Cluster,
    data_dir: &Path,
    key: &ServerKey,
    origin: &str,
) -> Result<Imported, LogError> {
    let (_lock, records) = read_unused(data_dir, origin, key)?;
    if records.is_empty() {
        return Err(LogError::NothingToImport {
            path: data_dir.join(LOG_FILE),
        });
    }
    let tree = signed_tree(data_dir, key, &records)?;
    let root = tree.root(tree.size()).expect("the current size");
    let size = records.len() as i64;
    let mut client = cluster.client().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
        .await?;
    refuse_non_empty(&transaction).await?;
    copy(&transaction, &records).await?;
    // The copy, read back, must hash to the file's root.
    let mut copied = MerkleTree::default();
    for (index, row) in transaction
        .query("SELECT record FROM log_leaves ORDER BY idx", &[])
        .await?
        .iter()
        .enumerate()
    {
        copied.push(decode(index as u64, row.get(0))?.leaf.hash());
    }
    if copied.size() != tree.size()
        || !crate::envelope::digest_eq(&copied.root(copied.size()).expect("its size"), &root)
    {
        return Err(LogError::RootMismatch);
    }
    transaction
        .execute("UPDATE log_head SET size = $1", &[&size])
        .await?;
    transaction
        .execute(
            "INSERT INTO log_import (singleton, size, root, imported_ms) VALUES (true, $1, $2, $3)",
            &[&size, &root.to_vec(), &unix_millis(SystemTime::now())],
        )
        .await?;
    transaction
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &size.to_string()])
        .await?;
    transaction.commit().await?;
    Ok(Imported {
        records: size as u64,
        root,
    })
}

/// The file's records as a tree, each leaf's signature checked under `key`.
fn signed_tree(
    data_dir: &Path,
    key: &ServerKey,
    records: &[RawRecord],
) -> Result<MerkleTree, LogError> {
    let mut tree = MerkleTree::default();
    for (index, (record, _)) in records.iter().enumerate() {
        if key
            .public()
            .verify(&record.leaf.to_bytes(), &record.signature)
            .is_err()
        {
            return Err(LogError::File(AuditError::Corrupt {
                path: data_dir.join(LOG_FILE),
                offset: 0,
                problem: format!(
                    "record {index}: the leaf's signature does not verify under this key"
                ),
            }));
        }
        tree.push(record.leaf.hash());
    }
    Ok(tree)
}

/// Refuses a database whose log has leaves or an earlier import.
async fn refuse_non_empty(transaction: &Transaction<'_>) -> Result<(), LogError> {
    let head: i64 = transaction
        .query_one("SELECT size FROM log_head", &[])
        .await?
        .get(0);
    let imported = transaction
        .query_opt("SELECT size FROM log_import", &[])
        .await?;
    if head != 0 || imported.is_some() {
        return Err(LogError::NotEmpty {
            size: head as u64,
            imported: if imported.is_some() {
                ", from an earlier import"
            } else {
                ""
            },
        });
    }
    Ok(())
}

/// Inserts the file's records, in their file's bytes, at indices from 0.
async fn copy(transaction: &Transaction<'_>, records: &[RawRecord]) -> Result<(), LogError> {
    for (chunk_number, chunk) in records.chunks(1000).enumerate() {
        let first = (chunk_number * 1000) as i64;
        let indices: Vec<i64> = (first..first + chunk.len() as i64).collect();
        let ids: Vec<Uuid> = chunk
            .iter()
            .map(|(record, _)| record.leaf.execution_id)
            .collect();
        let bytes: Vec<&[u8]> = chunk.iter().map(|(_, raw)| raw.as_slice()).collect();
        transaction
            .execute(
                "INSERT INTO log_leaves (idx, execution_id, record) \
                 SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bytea[])",
                &[&indices, &ids, &bytes],
            )
            .await?;
    }
    Ok(())
}
