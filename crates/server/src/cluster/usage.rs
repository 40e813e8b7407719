//! Each client's usage shared through PostgreSQL (protocol v1.2 §U): the
//! `usage_counts` table, one row per client and window.
//!
//! Nothing here is on an execution's path: an execution adds to this replica's
//! [`Usage`] in memory, and one task per replica, every [`FLUSH_INTERVAL`], adds
//! what was counted since to the table (one statement for every row) and reads
//! back the rows of the current windows, every replica's, which become what
//! this replica checks quotas against, plus what it counted since. A replica
//! therefore sees another's executions within about two intervals, and a client
//! spreading requests over N replicas may pass a quota by up to what it can run
//! on the other N-1 in that time. A failed flush is retried with the next; a
//! replica that stops loses at most its last interval's counts.

use std::time::Duration;

use super::{Cluster, DbError};
use crate::access::ClientKey;
use crate::usage::{Counts, Row, Usage, Window, unix_now};

/// How often each replica adds its counts to the table and reads everyone's.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How often hour and day rows whose window ended more than a day ago are
/// deleted (by every replica: deleting twice is harmless).
const PRUNE_EVERY: u32 = 60;

/// Adds the rows, in one statement, each count saturating at `bigint`'s maximum.
/// The rows come sorted by key, so that two replicas lock shared rows in the
/// same order and cannot deadlock.
const ADD: &str = "INSERT INTO usage_counts AS u \
    (client, usage_window, window_start, executions, fuel, bytes_in, bytes_out) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], \
                         $5::bigint[], $6::bigint[], $7::bigint[]) \
    ON CONFLICT (client, usage_window, window_start) DO UPDATE SET \
    executions = LEAST(u.executions::numeric + EXCLUDED.executions, 9223372036854775807)::bigint, \
    fuel = LEAST(u.fuel::numeric + EXCLUDED.fuel, 9223372036854775807)::bigint, \
    bytes_in = LEAST(u.bytes_in::numeric + EXCLUDED.bytes_in, 9223372036854775807)::bigint, \
    bytes_out = LEAST(u.bytes_out::numeric + EXCLUDED.bytes_out, 9223372036854775807)::bigint";

/// The rows of the current hour and day, then totals, at most `$3` of them
/// (`clients.max_tracked` times three): what quotas are checked against first.
const SNAPSHOT: &str = "SELECT client, usage_window, window_start, \
    executions, fuel, bytes_in, bytes_out FROM usage_counts \
    WHERE (usage_window = 'hour' AND window_start = $1) \
       OR (usage_window = 'day' AND window_start = $2) \
       OR usage_window = 'total' \
    ORDER BY usage_window = 'total' LIMIT $3";

const PRUNE: &str = "DELETE FROM usage_counts WHERE usage_window <> 'total' AND window_start < $1";

/// Starts the task that shares `usage` (made with [`Usage::clustered`]) through
/// `cluster` until it is aborted.
pub(crate) fn spawn_flusher(cluster: Cluster, usage: Usage) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks: u32 = 0;
        loop {
            tokio::time::sleep(FLUSH_INTERVAL).await;
            let rows = usage.begin_flush();
            let max_rows =
                i64::try_from(usage.settings().max_tracked.saturating_mul(3)).unwrap_or(i64::MAX);
            match flush(&cluster, rows, unix_now(), max_rows).await {
                Ok(snapshot) => usage.finish_flush(Some(snapshot)),
                Err(error) => {
                    tracing::debug!(%error, "sharing usage counts failed; retrying");
                    usage.finish_flush(None);
                }
            }
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(PRUNE_EVERY) {
                let before = i64::try_from(Window::Day.start(unix_now()).saturating_sub(86_400))
                    .unwrap_or(i64::MAX);
                let pruned = cluster
                    .run(|client| async move { client.execute(PRUNE, &[&before]).await })
                    .await;
                if let Err(error) = pruned {
                    tracing::debug!(%error, "pruning old usage rows failed");
                }
            }
        }
    })
}

/// Adds `rows` to the table, then reads the current windows' rows at Unix
/// second `now`.
async fn flush(
    cluster: &Cluster,
    mut rows: Vec<Row>,
    now: u64,
    max_rows: i64,
) -> Result<Vec<Row>, DbError> {
    rows.sort_by_key(|row| (client_text(row.client), row.window.as_str(), row.start));
    let mut columns = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for row in &rows {
        columns.0.push(client_text(row.client));
        columns.1.push(row.window.as_str());
        columns.2.push(bigint(row.start));
        columns.3.push(bigint(row.counts.executions));
        columns.4.push(bigint(row.counts.fuel));
        columns.5.push(bigint(row.counts.bytes_in));
        columns.6.push(bigint(row.counts.bytes_out));
    }
    let hour = bigint(Window::Hour.start(now));
    let day = bigint(Window::Day.start(now));
    let found = cluster
        .run(|client| async move {
            if !columns.0.is_empty() {
                client
                    .execute(
                        ADD,
                        &[
                            &columns.0, &columns.1, &columns.2, &columns.3, &columns.4, &columns.5,
                            &columns.6,
                        ],
                    )
                    .await?;
            }
            client.query(SNAPSHOT, &[&hour, &day, &max_rows]).await
        })
        .await?;
    Ok(found.iter().filter_map(snapshot_row).collect())
}

/// One row of the `SNAPSHOT` query, or none if it names no client or window
/// this version knows.
fn snapshot_row(row: &tokio_postgres::Row) -> Option<Row> {
    let count = |index: usize| u64::try_from(row.get::<_, i64>(index)).unwrap_or(0);
    Some(Row {
        client: parse_client(row.get(0))?,
        window: Window::parse(row.get(1))?,
        start: u64::try_from(row.get::<_, i64>(2)).ok()?,
        counts: Counts {
            executions: count(3),
            fuel: count(4),
            bytes_in: count(5),
            bytes_out: count(6),
        },
    })
}

/// A count as a `bigint`, saturating.
fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `token:<hex digest>` or `address:<address>`: the `client` column.
fn client_text(client: ClientKey) -> String {
    match client {
        ClientKey::Token(digest) => format!("token:{}", hex::encode(digest)),
        ClientKey::Address(address) => format!("address:{address}"),
    }
}

/// The client a `client` column names; `None` for anything else.
fn parse_client(text: &str) -> Option<ClientKey> {
    if let Some(digest) = text.strip_prefix("token:") {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digest, &mut bytes).ok()?;
        Some(ClientKey::Token(bytes))
    } else {
        let address: std::net::IpAddr = text.strip_prefix("address:")?.parse().ok()?;
        Some(ClientKey::address(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_column_names_its_client_and_nothing_else() {
        for client in [
            ClientKey::Token([0xab; 32]),
            ClientKey::address("192.0.2.1".parse().unwrap()),
            ClientKey::address("2001:db8:1:2::".parse().unwrap()),
        ] {
            assert_eq!(parse_client(&client_text(client)), Some(client));
        }
        assert_eq!(
            client_text(ClientKey::Token([1; 32])),
            format!("token:{}", "01".repeat(32))
        );
        for bad in [
            "",
            "token:zz",
            "address:nowhere",
            "other:1.2.3.4",
            "token:00",
        ] {
            assert_eq!(parse_client(bad), None, "{bad}");
        }
    }
}
