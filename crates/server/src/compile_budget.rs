//! Each client's budget of compilation time: a token bucket of seconds that holds
//! an hour's worth (`clients.compile_seconds_per_hour`) and refills continuously,
//! charged with the duration of every compilation the client causes.
//!
//! Compilation is CPU that fuel does not meter; the compile slots keep it off most
//! cores, and this budget keeps one client from holding those slots all the time.
//! A client that has spent its budget can still run cached modules. The check comes
//! before a compilation and the charge after it (its cost is only known then), so a
//! balance may go below zero by one compilation; the client then waits it out.
//!
//! Pure but for the mutex: the clock is passed in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::access::ClientKey;

/// Clients remembered at once. A client is remembered only while its bucket is not
/// full, that is for at most an hour after its last compilation; past this many,
/// the clients whose buckets have refilled are forgotten first, and if none has, a
/// new client is refused until one does.
pub(crate) const MAX_CLIENTS: usize = 100_000;

/// Why a compilation may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BudgetError {
    /// The client's budget is spent; it refills enough within `retry_after`.
    #[error("this client's compilation budget (clients.compile_seconds_per_hour) is spent")]
    Spent { retry_after: Duration },
}

/// The buckets of every client that compiled within the last hour.
pub(crate) struct CompileBudgets {
    /// Seconds per hour; 0 turns budgets off.
    per_hour: f64,
    buckets: Mutex<HashMap<ClientKey, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Seconds left; negative after a compilation that cost more than was left.
    seconds: f64,
    updated: Instant,
}

impl CompileBudgets {
    pub(crate) fn new(seconds_per_hour: u64) -> CompileBudgets {
        CompileBudgets {
            per_hour: seconds_per_hour as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may start a compilation now.
    pub(crate) fn check(&self, client: ClientKey, now: Instant) -> Result<(), BudgetError> {
        if self.per_hour == 0.0 {
            return Ok(());
        }
        let mut buckets = self.lock();
        let Some(bucket) = buckets.get_mut(&client) else {
            return Ok(());
        };
        self.refill(bucket, now);
        if bucket.seconds > 0.0 {
            return Ok(());
        }
        // Seconds until the balance is positive again, at the refill rate.
        let wait = (-bucket.seconds + 1.0) * 3600.0 / self.per_hour;
        Err(BudgetError::Spent {
            retry_after: Duration::from_secs_f64(wait.min(3600.0)),
        })
    }

    /// Charges `client` for a compilation that took `spent`.
    pub(crate) fn charge(&self, client: ClientKey, spent: Duration, now: Instant) {
        if self.per_hour == 0.0 {
            return;
        }
        let mut buckets = self.lock();
        if !buckets.contains_key(&client) && buckets.len() >= MAX_CLIENTS {
            buckets.retain(|_, bucket| {
                let mut refilled = *bucket;
                self.refill(&mut refilled, now);
                refilled.seconds < self.per_hour
            });
        }
        if !buckets.contains_key(&client) && buckets.len() >= MAX_CLIENTS {
            // Every remembered client is still paying off compilations: this one
            // goes uncharged rather than evicting someone's debt.
            return;
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            seconds: self.per_hour,
            updated: now,
        });
        self.refill(bucket, now);
        bucket.seconds -= spent.as_secs_f64();
    }

    /// Clients remembered now.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.seconds = (bucket.seconds + elapsed * self.per_hour / 3600.0).min(self.per_hour);
        bucket.updated = now;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, Bucket>> {
        // Each critical section is a map operation and arithmetic.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn client(last: u8) -> ClientKey {
        ClientKey::address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    #[test]
    fn a_client_that_spent_its_hour_waits_and_others_do_not() {
        let budgets = CompileBudgets::new(60);
        let start = Instant::now();
        budgets.check(client(1), start).unwrap();
        budgets.charge(client(1), Duration::from_secs(61), start);
        let Err(BudgetError::Spent { retry_after }) = budgets.check(client(1), start) else {
            panic!("a spent budget must refuse");
        };
        // One second below zero, plus one to be positive, at one second a minute.
        assert_eq!(retry_after, Duration::from_secs(120));
        budgets.check(client(2), start).unwrap();
        // Two minutes later the balance is positive again.
        budgets
            .check(client(1), start + Duration::from_secs(121))
            .unwrap();
    }

    #[test]
    fn a_bucket_never_holds_more_than_an_hours_worth() {
        let budgets = CompileBudgets::new(60);
        let start = Instant::now();
        budgets.charge(client(1), Duration::from_secs(1), start);
        let day_later = start + Duration::from_secs(86_400);
        budgets.charge(client(1), Duration::from_secs(60), day_later);
        assert!(budgets.check(client(1), day_later).is_err());
    }

    #[test]
    fn a_budget_of_zero_limits_nothing() {
        let budgets = CompileBudgets::new(0);
        let start = Instant::now();
        budgets.charge(client(1), Duration::from_secs(1_000_000), start);
        budgets.check(client(1), start).unwrap();
        assert_eq!(budgets.tracked(), 0);
    }
}
