//! Usage counted per client, and quotas over it (protocol v1.2 §U): executions,
//! fuel, bytes in (the sealed request) and bytes out (the sealed result) of every
//! logged execution, in the current UTC hour, the current UTC day and in total.
//!
//! No HTTP and no SQL here: `execution` records an execution once it is logged,
//! `api` checks a client's quotas before its session is used and shows a client
//! its own figures; in cluster mode `cluster::usage` moves the counts not yet
//! shared into the database and brings back what every replica counted.
//!
//! Architecture invariant: figures are looked up by one [`ClientKey`] at a time
//! and never listed; no label or series carries them. Nobody sees another
//! client's usage.
//!
//! A request is checked before it runs and counted after it is logged, so
//! requests in flight when a quota is crossed complete: a client may end up over
//! its quota by what its executions in flight used (and, in cluster mode, by
//! what the other replicas counted in their last flush interval).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::access::ClientKey;

/// What one client used, in one window or in total. Saturating: a counter that
/// reaches `u64::MAX` stays there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Logged executions.
    pub executions: u64,
    /// The sum of their results' `fuel_consumed`.
    pub fuel: u64,
    /// Bytes of their sealed requests (`ciphertext`, tag included).
    pub bytes_in: u64,
    /// Bytes of their sealed results (`ciphertext`, tag included).
    pub bytes_out: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.executions = self.executions.saturating_add(other.executions);
        self.fuel = self.fuel.saturating_add(other.fuel);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
    }

    fn plus(mut self, other: Counts) -> Counts {
        self.add(other);
        self
    }

    fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// A span of time usage is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The current UTC hour, from a whole hour.
    Hour,
    /// The current UTC day, from midnight UTC.
    Day,
    /// Everything counted: since start, or in cluster mode since the database
    /// began counting.
    Total,
}

impl Window {
    /// Every window, in the order the database rows are stored and read.
    pub const ALL: [Window; 3] = [Window::Hour, Window::Day, Window::Total];

    /// Its length in seconds; `None` for [`Window::Total`].
    fn seconds(self) -> Option<u64> {
        match self {
            Window::Hour => Some(3600),
            Window::Day => Some(86_400),
            Window::Total => None,
        }
    }

    /// The Unix second the window that holds `now` began at (0 for the total).
    /// UTC has no leap seconds in Unix time, so hours and days are aligned.
    pub fn start(self, now: u64) -> u64 {
        self.seconds().map_or(0, |length| now - now % length)
    }

    /// The Unix second the window that holds `now` ends at, if it ends.
    pub fn end(self, now: u64) -> Option<u64> {
        self.seconds().map(|length| self.start(now) + length)
    }

    /// `hour`, `day` or `total`: its name in the database and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Total => "total",
        }
    }

    /// The window named `name` ([`Window::as_str`]).
    pub fn parse(name: &str) -> Option<Window> {
        Window::ALL
            .into_iter()
            .find(|window| window.as_str() == name)
    }
}

/// The most one client may use in one window; 0 for no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub executions: u64,
    pub fuel: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Limits {
    /// Whether `used` has reached a limit: a request then would be over it.
    fn reached(&self, used: &Counts) -> bool {
        let at = |limit: u64, used: u64| limit != 0 && used >= limit;
        at(self.executions, used.executions)
            || at(self.fuel, used.fuel)
            || at(self.bytes_in, used.bytes_in)
            || at(self.bytes_out, used.bytes_out)
    }

    fn is_none(&self) -> bool {
        *self == Limits::default()
    }
}

/// Every client's quotas (`quotas` in the configuration) and how many clients
/// are remembered.
#[derive(Debug, Clone, Copy)]
pub struct UsageSettings {
    pub per_hour: Limits,
    pub per_day: Limits,
    /// Most clients whose figures are kept (`clients.max_tracked`); past it the
    /// one counted least recently is forgotten.
    pub max_tracked: usize,
}

/// Why a request is refused before its session is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client has used its {} quota", window.as_str())]
pub struct QuotaExceeded {
    /// The window whose quota is reached: [`Window::Hour`] or [`Window::Day`].
    pub window: Window,
    /// Time until that window ends, when its count starts again from zero.
    pub retry_after: Duration,
}

/// One client's figures: its current hour and day, and its total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The current hour's Unix start second and counts.
    pub hour: (u64, Counts),
    /// The current day's Unix start second and counts.
    pub day: (u64, Counts),
    pub total: Counts,
}

/// A client's counts, by window and its start.
#[derive(Debug, Clone, Default)]
struct Rows(Vec<(Window, u64, Counts)>);

impl Rows {
    fn add(&mut self, window: Window, start: u64, counts: Counts) {
        match self
            .0
            .iter_mut()
            .find(|(w, s, _)| *w == window && *s == start)
        {
            Some((_, _, row)) => row.add(counts),
            None => self.0.push((window, start, counts)),
        }
    }

    fn get(&self, window: Window, start: u64) -> Counts {
        self.0
            .iter()
            .find(|(w, s, _)| *w == window && *s == start)
            .map_or(Counts::default(), |(_, _, counts)| *counts)
    }

    /// Adds `counts` to each window that holds `now`.
    fn count(&mut self, now: u64, counts: Counts) {
        for window in Window::ALL {
            self.add(window, window.start(now), counts);
        }
    }

    /// Keeps only the windows that hold `now` (and the total).
    fn retain_current(&mut self, now: u64) {
        self.0
            .retain(|(window, start, _)| window.start(now) == *start);
    }
}

/// One row of counts: a client's, in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub client: ClientKey,
    pub window: Window,
    /// The window's Unix start second (0 for the total).
    pub start: u64,
    pub counts: Counts,
}

struct Table {
    /// Embedded: every count. Cluster mode: the last snapshot of the database.
    settled: HashMap<ClientKey, Rows>,
    /// Cluster mode: counted here since the last flush began.
    pending: HashMap<ClientKey, Rows>,
    /// Cluster mode: being written to the database now; still counted here
    /// until the snapshot that includes them replaces `settled`.
    flushing: HashMap<ClientKey, Rows>,
    /// When each client was last counted (Unix seconds), to forget the
    /// stalest first.
    last_counted: HashMap<ClientKey, u64>,
}

struct Shared {
    settings: UsageSettings,
    /// Whether counts go through the database (`cluster::usage`).
    clustered: bool,
    /// A `std` mutex: held for map lookups and additions, never across an
    /// `.await`.
    table: Mutex<Table>,
}

/// Every client's usage and quotas; cheap to clone.
#[derive(Clone)]
pub struct Usage {
    shared: Arc<Shared>,
}

/// The current Unix second.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl Usage {
    /// Usage counted in this process only.
    pub fn new(settings: UsageSettings) -> Usage {
        Usage::build(settings, false)
    }

    /// Usage shared through a database: counts wait in `pending` until
    /// [`Usage::begin_flush`] takes them, and what is settled is what
    /// [`Usage::finish_flush`] brings back.
    pub fn clustered(settings: UsageSettings) -> Usage {
        Usage::build(settings, true)
    }

    fn build(settings: UsageSettings, clustered: bool) -> Usage {
        Usage {
            shared: Arc::new(Shared {
                settings,
                clustered,
                table: Mutex::new(Table {
                    settled: HashMap::new(),
                    pending: HashMap::new(),
                    flushing: HashMap::new(),
                    last_counted: HashMap::new(),
                }),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Counts are added whole under the lock; one left half-updated by a panic
        // is off by one execution at worst, better than refusing every client.
        self.shared
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The quotas in force.
    pub fn settings(&self) -> UsageSettings {
        self.shared.settings
    }

    /// Counts one logged execution of `client` at Unix second `now`.
    pub fn record(&self, client: ClientKey, now: u64, counts: Counts) {
        let max_tracked = self.shared.settings.max_tracked;
        let mut table = self.table();
        let table = &mut *table;
        if !table.last_counted.contains_key(&client) && table.last_counted.len() >= max_tracked {
            // Forgets the client counted least recently: its figures (and, in
            // cluster mode, only this replica's memory of them) start again.
            if let Some(stalest) = table
                .last_counted
                .iter()
                .min_by_key(|(key, seen)| (**seen, **key))
                .map(|(key, _)| *key)
            {
                table.last_counted.remove(&stalest);
                table.settled.remove(&stalest);
            }
        }
        table.last_counted.insert(client, now);
        if self.shared.clustered {
            table.pending.entry(client).or_default().count(now, counts);
        } else {
            let rows = table.settled.entry(client).or_default();
            rows.retain_current(now);
            rows.count(now, counts);
        }
    }

    /// `client`'s figures at Unix second `now`.
    pub fn report(&self, client: ClientKey, now: u64) -> Report {
        let table = self.table();
        let used = |window: Window| {
            let start = window.start(now);
            [&table.settled, &table.flushing, &table.pending]
                .iter()
                .filter_map(|rows| rows.get(&client))
                .fold(Counts::default(), |sum, rows| {
                    sum.plus(rows.get(window, start))
                })
        };
        Report {
            hour: (Window::Hour.start(now), used(Window::Hour)),
            day: (Window::Day.start(now), used(Window::Day)),
            total: used(Window::Total),
        }
    }

    /// Refuses a request of `client` at Unix second `now` if it has used a
    /// quota of the current hour or day; the longer wait wins when both are.
    pub fn check(&self, client: ClientKey, now: u64) -> Result<(), QuotaExceeded> {
        let settings = self.shared.settings;
        if settings.per_hour.is_none() && settings.per_day.is_none() {
            return Ok(());
        }
        let report = self.report(client, now);
        let over = |window: Window, limits: &Limits, used: &Counts| {
            limits.reached(used).then(|| QuotaExceeded {
                window,
                retry_after: Duration::from_secs(window.end(now).unwrap_or(now) - now),
            })
        };
        let refusal = over(Window::Day, &settings.per_day, &report.day.1)
            .or_else(|| over(Window::Hour, &settings.per_hour, &report.hour.1));
        refusal.map_or(Ok(()), Err)
    }

    /// Cluster mode: takes the counts not yet flushed, as rows to add to the
    /// database's. They still count here until [`Usage::finish_flush`].
    pub fn begin_flush(&self) -> Vec<Row> {
        let mut table = self.table();
        let table = &mut *table;
        let pending = std::mem::take(&mut table.pending);
        let mut rows = Vec::new();
        for (client, pending_rows) in pending {
            let flushing = table.flushing.entry(client).or_default();
            for (window, start, counts) in pending_rows.0 {
                if counts.is_zero() {
                    continue;
                }
                flushing.add(window, start, counts);
                rows.push(Row {
                    client,
                    window,
                    start,
                    counts,
                });
            }
        }
        rows
    }

    /// Cluster mode: ends a flush. `Some(snapshot)`: the rows were added to the
    /// database, and `snapshot` is every replica's counts of the current
    /// windows, which replaces what was settled. `None`: the flush failed, and
    /// its rows wait for the next.
    pub fn finish_flush(&self, snapshot: Option<Vec<Row>>) {
        let mut table = self.table();
        let table = &mut *table;
        let flushed = std::mem::take(&mut table.flushing);
        match snapshot {
            Some(rows) => {
                table.settled.clear();
                for row in rows {
                    table
                        .settled
                        .entry(row.client)
                        .or_default()
                        .add(row.window, row.start, row.counts);
                }
            }
            None => {
                for (client, rows) in flushed {
                    let pending = table.pending.entry(client).or_default();
                    for (window, start, counts) in rows.0 {
                        pending.add(window, start, counts);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn client(last: u8) -> ClientKey {
        ClientKey::address(IpAddr::from([192, 0, 2, last]))
    }

    fn one(fuel: u64) -> Counts {
        Counts {
            executions: 1,
            fuel,
            bytes_in: 100,
            bytes_out: 200,
        }
    }

    fn settings(per_hour: Limits, per_day: Limits) -> UsageSettings {
        UsageSettings {
            per_hour,
            per_day,
            max_tracked: 16,
        }
    }

    /// 2024-01-01T10:00:00Z.
    const TEN: u64 = 1_704_103_200;

    #[test]
    fn windows_are_whole_utc_hours_and_days() {
        assert_eq!(Window::Hour.start(TEN + 3599), TEN);
        assert_eq!(Window::Hour.end(TEN), Some(TEN + 3600));
        assert_eq!(Window::Day.start(TEN), TEN - 10 * 3600);
        assert_eq!(Window::Total.start(TEN), 0);
        assert_eq!(Window::Total.end(TEN), None);
        for window in Window::ALL {
            assert_eq!(Window::parse(window.as_str()), Some(window));
        }
    }

    #[test]
    fn counts_add_up_per_window_and_an_hour_starts_again_from_zero() {
        let usage = Usage::new(settings(Limits::default(), Limits::default()));
        usage.record(client(1), TEN + 10, one(5));
        usage.record(client(1), TEN + 20, one(7));
        usage.record(client(2), TEN + 20, one(1000));
        let report = usage.report(client(1), TEN + 30);
        assert_eq!(
            report.hour,
            (
                TEN,
                Counts {
                    executions: 2,
                    fuel: 12,
                    bytes_in: 200,
                    bytes_out: 400
                }
            )
        );
        assert_eq!(report.day.1, report.hour.1);
        assert_eq!(report.total, report.hour.1);
        // The next hour: the hour is new, the day and total go on.
        usage.record(client(1), TEN + 3600, one(1));
        let report = usage.report(client(1), TEN + 3601);
        assert_eq!(report.hour, (TEN + 3600, one(1)));
        assert_eq!(report.day.1.executions, 3);
        assert_eq!(report.total.fuel, 13);
        // The next day: only the total is left.
        let tomorrow = TEN + 86_400;
        let report = usage.report(client(1), tomorrow);
        assert_eq!(report.day.1, Counts::default());
        assert_eq!(report.total.executions, 3);
    }

    #[test]
    fn a_client_over_a_quota_waits_for_its_window_to_end_and_others_do_not() {
        let per_hour = Limits {
            executions: 2,
            ..Limits::default()
        };
        let per_day = Limits {
            fuel: 100,
            ..Limits::default()
        };
        let usage = Usage::new(settings(per_hour, per_day));
        usage.check(client(1), TEN).unwrap();
        usage.record(client(1), TEN, one(1));
        usage.check(client(1), TEN + 1).unwrap();
        usage.record(client(1), TEN + 1, one(1));
        assert_eq!(
            usage.check(client(1), TEN + 600),
            Err(QuotaExceeded {
                window: Window::Hour,
                retry_after: Duration::from_secs(3000)
            })
        );
        usage.check(client(2), TEN + 600).unwrap();
        usage.check(client(1), TEN + 3600).unwrap();
        // Crossed by the execution in flight: the day's fuel.
        usage.record(client(1), TEN + 3600, one(500));
        let refused = usage.check(client(1), TEN + 3600).unwrap_err();
        assert_eq!(refused.window, Window::Day);
        assert_eq!(refused.retry_after, Duration::from_secs(13 * 3600));
    }

    #[test]
    fn no_quota_refuses_nothing() {
        let usage = Usage::new(settings(Limits::default(), Limits::default()));
        for second in 0..1000 {
            usage.record(client(1), TEN + second, one(u64::MAX));
            usage.check(client(1), TEN + second).unwrap();
        }
        assert_eq!(usage.report(client(1), TEN).total.fuel, u64::MAX);
    }

    #[test]
    fn the_table_forgets_the_client_counted_least_recently() {
        let usage = Usage::new(settings(Limits::default(), Limits::default()));
        for last in 0..16 {
            usage.record(client(last), TEN + u64::from(last), one(1));
        }
        usage.record(client(0), TEN + 100, one(1));
        usage.record(client(100), TEN + 101, one(1));
        assert_eq!(usage.report(client(1), TEN + 102).total, Counts::default());
        assert_eq!(usage.report(client(0), TEN + 102).total.executions, 2);
        assert_eq!(usage.report(client(100), TEN + 102).total.executions, 1);
    }

    #[test]
    fn clustered_counts_stay_visible_while_flushing_and_come_back_if_it_fails() {
        let per_hour = Limits {
            executions: 3,
            ..Limits::default()
        };
        let usage = Usage::clustered(settings(per_hour, Limits::default()));
        usage.record(client(1), TEN, one(1));
        usage.record(client(1), TEN, one(1));
        let rows = usage.begin_flush();
        assert_eq!(rows.len(), 3, "hour, day and total");
        assert!(rows.iter().all(|row| row.counts.executions == 2));
        assert_eq!(usage.report(client(1), TEN).hour.1.executions, 2);
        // A failed flush: the rows are pending again.
        usage.finish_flush(None);
        assert_eq!(usage.report(client(1), TEN).hour.1.executions, 2);
        let rows = usage.begin_flush();
        assert_eq!(rows.len(), 3);
        // Another replica counted one more meanwhile: the snapshot has 3.
        let snapshot = rows
            .into_iter()
            .map(|row| Row {
                counts: row.counts.plus(one(1)),
                ..row
            })
            .collect();
        usage.finish_flush(Some(snapshot));
        assert_eq!(usage.report(client(1), TEN).hour.1.executions, 3);
        assert!(usage.check(client(1), TEN).is_err());
        assert!(usage.begin_flush().is_empty());
    }
}
