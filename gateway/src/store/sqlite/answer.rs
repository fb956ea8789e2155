//! How a committed batch's waiters hear back: one wake-up per worker thread, not one per write.
//!
//! The writer is a plain thread, so every task it wakes is woken from outside its runtime, and
//! each such wake costs a system call to rouse that worker (a batch holds about 30 writes). So
//! the writer groups a batch's answers by the worker each write came from and sends each group
//! to one of its waiters; that waiter, on its own worker, hands the others theirs, which is a
//! local wake and costs no system call. A waiter that has gone away (its client hung up) is
//! skipped for the next one, and an [`Answer`] dropped unread still hands the others theirs, so
//! no waiter is ever left without its answer.

use tokio::sync::oneshot;

use super::super::StoreError;
use super::ops::{Done, Op};

/// What one write came to.
pub(super) type Outcome = Result<Done, StoreError>;

/// A queued write and who waits for it.
pub(super) struct Job {
    pub(super) op: Op,
    /// The worker thread the waiter runs on; `None` off the worker pool (the sweeper, start-up),
    /// whose waiters are answered one by one.
    pub(super) worker: Option<usize>,
    pub(super) reply: oneshot::Sender<Answer>,
}

impl Job {
    /// A write from the current thread, and the receiver its answer comes to.
    pub(super) fn new(op: Op) -> (Self, oneshot::Receiver<Answer>) {
        let (reply, answer) = oneshot::channel();
        let job = Self {
            op,
            worker: crate::worker::current(),
            reply,
        };
        (job, answer)
    }
}

/// A waiter's answer, and the answers of the other waiters on its worker, which it hands out.
#[derive(Debug)]
pub(super) struct Answer {
    outcome: Outcome,
    others: Handout,
}

impl Answer {
    fn alone(outcome: Outcome) -> Self {
        Self {
            outcome,
            others: Handout(Vec::new()),
        }
    }

    /// This waiter's outcome; the others get theirs as the rest of `self` drops.
    pub(super) fn take(self) -> Outcome {
        self.outcome
    }
}

/// Other waiters' answers, handed out when dropped: whether the holder read its answer or its
/// receiver dropped the answer unread.
#[derive(Debug)]
struct Handout(Vec<(oneshot::Sender<Answer>, Outcome)>);

impl Drop for Handout {
    fn drop(&mut self) {
        for (reply, outcome) in self.0.drain(..) {
            let _ = reply.send(Answer::alone(outcome));
        }
    }
}

/// Answers every job of a batch, one send per worker that has waiters in it.
pub(super) fn answer_all(jobs: impl IntoIterator<Item = (Job, Outcome)>) {
    let mut groups: Vec<Vec<(oneshot::Sender<Answer>, Outcome)>> = Vec::new();
    for (job, outcome) in jobs {
        let Some(worker) = job.worker else {
            let _ = job.reply.send(Answer::alone(outcome));
            continue;
        };
        if groups.len() <= worker {
            groups.resize_with(worker + 1, Vec::new);
        }
        groups[worker].push((job.reply, outcome));
    }
    for group in groups {
        answer_group(group);
    }
}

/// Sends a worker's answers to the first of its waiters still there.
fn answer_group(mut group: Vec<(oneshot::Sender<Answer>, Outcome)>) {
    while let Some((reply, outcome)) = group.pop() {
        let answer = Answer {
            outcome,
            others: Handout(std::mem::take(&mut group)),
        };
        match reply.send(answer) {
            Ok(()) => return,
            Err(mut gone) => group = std::mem::take(&mut gone.others.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(worker: Option<usize>) -> (Job, oneshot::Receiver<Answer>) {
        let (mut job, answer) = Job::new(Op::Expire {
            limit: 0,
            created_before: String::new(),
        });
        job.worker = worker;
        (job, answer)
    }

    fn outcome(receiver: &mut oneshot::Receiver<Answer>) -> Option<u64> {
        match receiver.try_recv().ok()?.take() {
            Ok(Done::Expired(n)) => Some(n),
            _ => None,
        }
    }

    #[test]
    fn each_worker_gets_one_send_and_every_waiter_its_own_outcome() {
        let mut jobs = Vec::new();
        let mut waiters = Vec::new();
        for (i, worker) in [Some(0), Some(1), Some(0), Some(1), Some(0), None, None]
            .into_iter()
            .enumerate()
        {
            let (job, answer) = job(worker);
            jobs.push((job, Ok(Done::Expired(i as u64))));
            waiters.push(answer);
        }
        answer_all(jobs);
        // Before anyone reads, exactly one waiter per worker has heard, the one that holds its
        // worker's group, and each waiter off the pool has heard on its own.
        let mut holders = Vec::new();
        for (i, waiter) in waiters.iter_mut().enumerate() {
            if let Ok(answer) = waiter.try_recv() {
                holders.push((i, answer));
            }
        }
        assert_eq!(
            holders.len(),
            4,
            "one send per worker, one per waiter off the pool"
        );
        assert!(holders.iter().any(|(i, _)| *i == 5) && holders.iter().any(|(i, _)| *i == 6));
        let held: Vec<usize> = holders.iter().map(|(i, _)| *i).collect();
        for (i, answer) in holders {
            assert!(matches!(answer.take(), Ok(Done::Expired(n)) if n == i as u64));
        }
        for (i, waiter) in waiters.iter_mut().enumerate() {
            if !held.contains(&i) {
                assert_eq!(outcome(waiter), Some(i as u64), "waiter {i}");
            }
        }
    }

    #[test]
    fn a_waiter_that_left_is_skipped_and_one_that_drops_its_answer_still_hands_out_the_others() {
        let (first, mut reader) = job(Some(0));
        let (second, mut dropper) = job(Some(0));
        let (third, gone) = job(Some(0));
        drop(gone);
        // The group is offered from the back: `third` has left, so `second` holds it.
        answer_all([
            (first, Ok(Done::Expired(1))),
            (second, Ok(Done::Expired(2))),
            (third, Ok(Done::Expired(3))),
        ]);
        assert!(reader.try_recv().is_err(), "not yet handed out");
        drop(dropper.try_recv().expect("the holder's answer"));
        assert_eq!(outcome(&mut reader), Some(1));
    }
}
