//! Takes in groups: the sessions executions use while another take is on its
//! way to the database go together in one statement (`DELETE … WHERE id =
//! ANY(…) RETURNING`): one round trip and one committed transaction for the
//! group instead of one each, as the log's appends are grouped.
//!
//! A take never waits for company: the first finds nobody taking and its group
//! (itself) is sent at once; takes that arrive while a group is in flight queue,
//! and all of them go in the next group when it returns. Each id is still deleted
//! by one statement, so of two takes of one id, on this replica or any other,
//! exactly one gets the row: a group that names an id twice answers the first
//! with the row and the second as unknown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;
use uuid::Uuid;

/// Most ids one statement takes; more queued go in the groups after it.
const MAX_GROUP: usize = 256;

/// A taken session's row: its epoch, its wrapped seed and its expiry.
pub(super) type Row = (i64, Vec<u8>, i64);

/// A group's statement failed (the group logs why, once): every take in it
/// is answered that the store is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GroupFailed;

/// What a take hears back: its session's row, if the row was there.
pub(super) type Answer = Result<Option<Row>, GroupFailed>;

/// The takes of one replica.
#[derive(Default)]
pub(super) struct Takes {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// A group is in flight (its task sends the next one when it returns).
    taking: bool,
    waiting: Vec<(Uuid, oneshot::Sender<Answer>)>,
}

impl Takes {
    /// Takes `id` in the next group. `delete` runs one group's statement and
    /// returns the rows it deleted, by id; it is used only if this take finds
    /// no group in flight, by the task that then sends the groups.
    pub(super) async fn take<D, F>(self: &Arc<Self>, id: Uuid, delete: D) -> Answer
    where
        D: Fn(Vec<Uuid>) -> F + Send + 'static,
        F: Future<Output = Result<HashMap<Uuid, Row>, GroupFailed>> + Send + 'static,
    {
        let (sender, answer) = oneshot::channel();
        let lead = {
            let mut queue = self.lock();
            queue.waiting.push((id, sender));
            !std::mem::replace(&mut queue.taking, true)
        };
        if lead {
            // A task of its own: the groups are sent and answered even if the
            // caller of this take goes away.
            tokio::spawn(self.clone().send_groups(delete));
        }
        answer.await.unwrap_or(Err(GroupFailed))
    }

    /// Sends the queued takes, a group at a time, until none is left.
    async fn send_groups<D, F>(self: Arc<Self>, delete: D)
    where
        D: Fn(Vec<Uuid>) -> F,
        F: Future<Output = Result<HashMap<Uuid, Row>, GroupFailed>>,
    {
        // If this task ends any other way than by finding the queue empty (a
        // panic, the runtime shutting down), the next take sends the groups.
        let mut leading = Leading {
            takes: &self,
            armed: true,
        };
        loop {
            let group = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.taking = false;
                    leading.armed = false;
                    return;
                }
                let size = queue.waiting.len().min(MAX_GROUP);
                queue.waiting.drain(..size).collect::<Vec<_>>()
            };
            let ids = group.iter().map(|(id, _)| *id).collect();
            let mut rows = delete(ids).await;
            for (id, sender) in group {
                let answer = match &mut rows {
                    Ok(rows) => Ok(rows.remove(&id)),
                    Err(failed) => Err(*failed),
                };
                // A take whose caller went away: its session is used all the same.
                let _ = sender.send(answer);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Lets the next take send the groups if the task sending them ends early.
struct Leading<'a> {
    takes: &'a Takes,
    armed: bool,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.takes.lock().taking = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::Semaphore;

    use super::*;

    /// A group's statement, boxed.
    type Statement =
        std::pin::Pin<Box<dyn Future<Output = Result<HashMap<Uuid, Row>, GroupFailed>> + Send>>;

    /// A statement that records each group, waits for a permit, then deletes
    /// the ids in `present` (each once).
    fn statement(
        groups: Arc<Mutex<Vec<Vec<Uuid>>>>,
        permits: Arc<Semaphore>,
        present: Vec<Uuid>,
    ) -> impl Fn(Vec<Uuid>) -> Statement + Send + 'static {
        let present = Arc::new(Mutex::new(present));
        move |ids: Vec<Uuid>| {
            groups.lock().unwrap().push(ids.clone());
            let permits = permits.clone();
            let present = present.clone();
            Box::pin(async move {
                permits.acquire().await.unwrap().forget();
                let mut present = present.lock().unwrap();
                let mut rows = HashMap::new();
                for id in ids {
                    if let Some(at) = present.iter().position(|p| *p == id) {
                        present.remove(at);
                        rows.insert(id, (1, vec![id.as_bytes()[0]], 2));
                    }
                }
                Ok(rows)
            })
        }
    }

    async fn queued(takes: &Takes, count: usize) {
        while takes.lock().waiting.len() < count {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn takes_that_arrive_while_a_group_is_in_flight_go_in_the_next_group_each_id_answered_once()
     {
        let takes = Arc::new(Takes::default());
        let groups = Arc::new(Mutex::new(Vec::new()));
        let permits = Arc::new(Semaphore::new(0));
        let [a, b, c] = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        let delete = || statement(groups.clone(), permits.clone(), vec![a, b]);
        let first = tokio::spawn({
            let takes = takes.clone();
            let delete = delete();
            async move { takes.take(a, delete).await }
        });
        // The first group is in flight (its statement waits for a permit).
        while groups.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let later: Vec<_> = [b, c, b]
            .into_iter()
            .map(|id| {
                let takes = takes.clone();
                let delete = delete();
                tokio::spawn(async move { takes.take(id, delete).await })
            })
            .collect();
        queued(&takes, 3).await;
        permits.add_permits(2);
        assert_eq!(
            first.await.unwrap(),
            Ok(Some((1, vec![a.as_bytes()[0]], 2)))
        );
        let mut answers = Vec::new();
        for take in later {
            answers.push(take.await.unwrap());
        }
        assert_eq!(
            answers,
            [Ok(Some((1, vec![b.as_bytes()[0]], 2))), Ok(None), Ok(None)],
            "b once, c unknown, b's second take unknown"
        );
        assert_eq!(*groups.lock().unwrap(), [vec![a], vec![b, c, b]]);
        assert!(
            !takes.lock().taking,
            "nobody is taking once all are answered"
        );
    }

    #[tokio::test]
    async fn a_failed_group_answers_each_take_and_the_next_take_sends_its_own() {
        let takes = Arc::new(Takes::default());
        let failing = |_ids: Vec<Uuid>| async { Err(GroupFailed) };
        assert_eq!(takes.take(Uuid::new_v4(), failing).await, Err(GroupFailed));
        let id = Uuid::new_v4();
        let present = move |ids: Vec<Uuid>| async move {
            Ok(ids.into_iter().map(|id| (id, (7, Vec::new(), 8))).collect())
        };
        assert_eq!(takes.take(id, present).await, Ok(Some((7, Vec::new(), 8))));
    }
}
