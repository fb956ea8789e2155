//! The bank's books, and the two rules every saga backend must keep (SPEC §4):
//!
//! 1. **Idempotency.** Each `Idempotency-Key` is applied at most once; a repeat gets the first
//!    answer back, byte for byte.
//! 2. **The barrier.** Calls of one saga step share a barrier record, keyed by `X-Saga-ID` and
//!    `X-Saga-Step`. A compensation (or cancel) that arrives before its action succeeds as a no-op
//!    and closes the barrier; the late action is then refused with 409. So a hanging action can
//!    never land after its undo.
//!
//! Money is counted in whole minor units. The bank's total, `Σ (balance + held)`, only changes
//! through `set_balance`: every saga and TCC call moves money, never creates it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Spendable money.
    pub balance: i64,
    /// Money taken by a TCC debit try, waiting for confirm or cancel.
    pub held: i64,
    /// Money promised by a TCC credit try, not yet spendable.
    pub incoming: i64,
}

/// Which way money moves for this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Money leaves the account.
    Debit,
    /// Money enters the account.
    Credit,
}

/// The call's phase, as in the gateway's `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Saga forward call.
    Action,
    /// Saga undo.
    Compensate,
    /// TCC reserve.
    Try,
    /// TCC commit.
    Confirm,
    /// TCC release.
    Cancel,
}

/// What the barrier knows about one saga step at this bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Barrier {
    /// The saga action moved `delta` on `account`.
    Applied {
        /// Account.
        account: String,
        /// Signed amount.
        delta: i64,
        /// The client's X-Request-ID, for audits.
        request_id: Option<String>,
    },
    /// The action was undone.
    Compensated {
        /// Account.
        account: String,
        /// The undone amount.
        delta: i64,
        /// The client's X-Request-ID.
        request_id: Option<String>,
    },
    /// The compensation came first; the action is barred.
    NullCompensated,
    /// A TCC try reserved `amount`.
    Tried {
        /// Account.
        account: String,
        /// Amount.
        amount: i64,
        /// Debit or credit.
        direction: Direction,
        /// The client's X-Request-ID.
        request_id: Option<String>,
    },
    /// The TCC reservation was committed.
    Confirmed {
        /// Account.
        account: String,
        /// Signed amount that moved.
        delta: i64,
        /// The client's X-Request-ID.
        request_id: Option<String>,
    },
    /// The TCC reservation was released.
    Cancelled,
    /// The cancel came first; the try is barred.
    NullCancelled,
}

/// One parsed business call.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `Idempotency-Key`.
    pub key: String,
    /// `X-Saga-ID/X-Saga-Step`, when the call belongs to a saga.
    pub barrier: Option<String>,
    /// `X-Request-ID`.
    pub request_id: Option<String>,
    /// Debit or credit.
    pub direction: Direction,
    /// Phase.
    pub phase: Phase,
    /// Account (for actions and tries).
    pub account: String,
    /// Amount (for actions and tries).
    pub amount: i64,
}

/// An answer as the bank sent it; repeats of a key get exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Self { status: 200, body }
    }

    fn refuse(status: u16, error: &str, detail: String) -> Self {
        Self {
            status,
            body: json!({ "error": error, "detail": detail }),
        }
    }
}

/// A state change, as written to the journal: the new values of everything the call touched.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Change {
    /// A stored answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<(String, Answer)>,
    /// A barrier record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barrier: Option<(String, Barrier)>,
    /// An account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<(String, Account)>,
}

/// Keys the maps are sized for at the start; past this they grow as needed.
const PRESIZED_KEYS_MAX: usize = 1 << 18;

/// The books.
#[derive(Debug, Default)]
pub struct Ledger {
    accounts: BTreeMap<String, Account>,
    answers: HashMap<String, Answer>,
    answer_order: VecDeque<String>,
    barriers: HashMap<String, Barrier>,
    barrier_order: VecDeque<String>,
    answers_max: usize,
}

impl Ledger {
    /// Empty books that remember at most `answers_max` idempotency keys and as many barrier
    /// records (oldest forgotten first).
    pub fn new(answers_max: usize) -> Self {
        // Sized up front, and with room to spare: growing a map of 100,000 keys rehashes it all
        // under the ledger's lock, a pause every caller of the bank waits out. Once full, each
        // new key evicts the oldest, and the removed keys leave tombstones: a map with little
        // room over its keys soon has to grow all the same, while one sized for twice its keys
        // only tidies itself in place, and rarely.
        let presized = answers_max.clamp(1, PRESIZED_KEYS_MAX);
        Self {
            answers: HashMap::with_capacity(2 * presized),
            answer_order: VecDeque::with_capacity(presized),
            barriers: HashMap::with_capacity(2 * presized),
            barrier_order: VecDeque::with_capacity(presized),
            answers_max: answers_max.max(1),
            ..Self::default()
        }
    }

    /// Sets an account's balance (creating it); returns the change to journal.
    pub fn set_balance(&mut self, id: &str, balance: i64) -> Change {
        let account = self.accounts.entry(id.to_string()).or_default();
        account.balance = balance;
        Change {
            account: Some((id.to_string(), *account)),
            ..Change::default()
        }
    }

    /// One account.
    pub fn account(&self, id: &str) -> Option<Account> {
        self.accounts.get(id).copied()
    }

    /// All accounts.
    pub fn accounts(&self) -> &BTreeMap<String, Account> {
        &self.accounts
    }

    /// `Σ (balance + held)`: constant under every saga and TCC call.
    pub fn total(&self) -> i64 {
        self.accounts.values().map(|a| a.balance + a.held).sum()
    }

    /// Every barrier record, for audits.
    pub fn barriers(&self) -> impl Iterator<Item = (&String, &Barrier)> {
        self.barriers.iter()
    }

    /// What the bank holds for a saga's step, by its barrier key (`saga/step`), as the `status`
    /// call answers it (SPEC §10): whether its effect was applied, whether it was compensated
    /// (or a TCC reservation released), and the amount; `held` marks a TCC try neither confirmed
    /// nor cancelled. `None` for a step the bank never saw, or has forgotten.
    pub fn status(&self, barrier: &str) -> Option<Value> {
        let (applied, compensated, amount, held) = match self.barriers.get(barrier)? {
            Barrier::Applied { delta, .. } | Barrier::Confirmed { delta, .. } => {
                (true, false, Some(delta.abs()), false)
            }
            Barrier::Compensated { delta, .. } => (true, true, Some(delta.abs()), false),
            Barrier::Tried { amount, .. } => (false, false, Some(*amount), true),
            Barrier::NullCompensated | Barrier::Cancelled | Barrier::NullCancelled => {
                (false, true, None, false)
            }
        };
        Some(serde_json::json!({
            "applied": applied,
            "compensated": compensated,
            "amount": amount,
            "held": held,
        }))
    }

    /// The stored answer for a key, if the key was seen.
    pub fn replay(&self, key: &str) -> Option<&Answer> {
        self.answers.get(key)
    }

    /// Applies a journal line (recovery).
    pub fn restore(&mut self, change: Change) {
        if let Some((key, answer)) = change.answer {
            self.remember(key, answer);
        }
        if let Some((key, barrier)) = change.barrier {
            self.keep_barrier(key, barrier);
        }
        if let Some((id, account)) = change.account {
            self.accounts.insert(id, account);
        }
    }

    /// Applies a business call once. A repeated key returns the stored answer and no change.
    pub fn apply(&mut self, op: &Operation) -> (Answer, Change) {
        if let Some(answer) = self.answers.get(&op.key) {
            return (answer.clone(), Change::default());
        }
        let mut change = Change::default();
        let answer = match op.phase {
            Phase::Action => self.action(op, &mut change),
            Phase::Compensate => self.compensate(op, &mut change),
            Phase::Try => self.tcc_try(op, &mut change),
            Phase::Confirm => self.tcc_confirm(op, &mut change),
            Phase::Cancel => self.tcc_cancel(op, &mut change),
        };
        self.remember(op.key.clone(), answer.clone());
        change.answer = Some((op.key.clone(), answer.clone()));
        (answer, change)
    }

    fn remember(&mut self, key: String, answer: Answer) {
        if self.answers.insert(key.clone(), answer).is_none() {
            self.answer_order.push_back(key);
        }
        while self.answer_order.len() > self.answers_max {
            if let Some(oldest) = self.answer_order.pop_front() {
                self.answers.remove(&oldest);
            }
        }
    }

    fn set_barrier(&mut self, op: &Operation, barrier: Barrier, change: &mut Change) {
        if let Some(key) = &op.barrier {
            self.keep_barrier(key.clone(), barrier.clone());
            change.barrier = Some((key.clone(), barrier));
        }
    }

    fn keep_barrier(&mut self, key: String, barrier: Barrier) {
        if self.barriers.insert(key.clone(), barrier).is_none() {
            self.barrier_order.push_back(key);
        }
        while self.barrier_order.len() > self.answers_max {
            if let Some(oldest) = self.barrier_order.pop_front() {
                self.barriers.remove(&oldest);
            }
        }
    }

    fn barrier(&self, op: &Operation) -> Option<&Barrier> {
        op.barrier.as_ref().and_then(|key| self.barriers.get(key))
    }

    /// Moves money on an account and records the account's new value.
    fn mv(&mut self, id: &str, change: &mut Change, f: impl FnOnce(&mut Account)) {
        if let Some(account) = self.accounts.get_mut(id) {
            f(account);
            change.account = Some((id.to_string(), *account));
        }
    }

    /// Checks that the account exists and, for a debit, can pay.
    fn can_pay(&self, op: &Operation) -> Result<(), Answer> {
        let Some(account) = self.accounts.get(&op.account) else {
            let detail = format!("no account `{}`", op.account);
            return Err(Answer::refuse(404, "unknown_account", detail));
        };
        if op.direction == Direction::Debit && account.balance < op.amount {
            let detail = format!(
                "`{}` has {} and cannot pay {}",
                op.account, account.balance, op.amount
            );
            return Err(Answer::refuse(422, "insufficient_funds", detail));
        }
        Ok(())
    }

    fn action(&mut self, op: &Operation, change: &mut Change) -> Answer {
        match self.barrier(op) {
            Some(Barrier::NullCompensated | Barrier::Compensated { .. }) => {
                return Answer::refuse(
                    409,
                    "barrier",
                    "this step was already compensated; the late action is refused".into(),
                );
            }
            Some(Barrier::Applied { delta, .. }) => {
                return Answer::ok(
                    json!({ "account": op.account, "applied": delta, "repeat": true }),
                );
            }
            _ => {}
        }
        if let Err(refusal) = self.can_pay(op) {
            return refusal;
        }
        let delta = signed(op.direction, op.amount);
        self.mv(&op.account, change, |a| a.balance += delta);
        let barrier = Barrier::Applied {
            account: op.account.clone(),
            delta,
            request_id: op.request_id.clone(),
        };
        self.set_barrier(op, barrier, change);
        let balance = self.accounts[&op.account].balance;
        Answer::ok(json!({ "account": op.account, "applied": delta, "balance": balance }))
    }

    fn compensate(&mut self, op: &Operation, change: &mut Change) -> Answer {
        match self.barrier(op).cloned() {
            Some(Barrier::Applied {
                account,
                delta,
                request_id,
            }) => {
                self.mv(&account, change, |a| a.balance -= delta);
                let barrier = Barrier::Compensated {
                    account: account.clone(),
                    delta,
                    request_id,
                };
                self.set_barrier(op, barrier, change);
                Answer::ok(json!({ "account": account, "compensated": -delta }))
            }
            Some(Barrier::Compensated { account, delta, .. }) => {
                Answer::ok(json!({ "account": account, "compensated": -delta }))
            }
            Some(_) | None => {
                self.set_barrier(op, Barrier::NullCompensated, change);
                Answer::ok(json!({ "compensated": 0, "null_compensation": true }))
            }
        }
    }

    fn tcc_try(&mut self, op: &Operation, change: &mut Change) -> Answer {
        match self.barrier(op) {
            Some(Barrier::Cancelled | Barrier::NullCancelled) => {
                return Answer::refuse(
                    409,
                    "barrier",
                    "this step was already cancelled; the late try is refused".into(),
                );
            }
            Some(Barrier::Tried { .. } | Barrier::Confirmed { .. }) => {
                return Answer::ok(
                    json!({ "account": op.account, "held": op.amount, "repeat": true }),
                );
            }
            _ => {}
        }
        if let Err(refusal) = self.can_pay(op) {
            return refusal;
        }
        let amount = op.amount;
        match op.direction {
            Direction::Debit => self.mv(&op.account, change, |a| {
                a.balance -= amount;
                a.held += amount;
            }),
            Direction::Credit => self.mv(&op.account, change, |a| a.incoming += amount),
        }
        let barrier = Barrier::Tried {
            account: op.account.clone(),
            amount,
            direction: op.direction,
            request_id: op.request_id.clone(),
        };
        self.set_barrier(op, barrier, change);
        Answer::ok(json!({ "account": op.account, "reserved": amount }))
    }

    fn tcc_confirm(&mut self, op: &Operation, change: &mut Change) -> Answer {
        match self.barrier(op).cloned() {
            Some(Barrier::Tried {
                account,
                amount,
                direction,
                request_id,
            }) => {
                match direction {
                    Direction::Debit => self.mv(&account, change, |a| a.held -= amount),
                    Direction::Credit => self.mv(&account, change, |a| {
                        a.incoming -= amount;
                        a.balance += amount;
                    }),
                }
                let delta = signed(direction, amount);
                let barrier = Barrier::Confirmed {
                    account: account.clone(),
                    delta,
                    request_id,
                };
                self.set_barrier(op, barrier, change);
                Answer::ok(json!({ "account": account, "confirmed": delta }))
            }
            Some(Barrier::Confirmed { account, delta, .. }) => {
                Answer::ok(json!({ "account": account, "confirmed": delta }))
            }
            _ => Answer::refuse(
                409,
                "nothing_to_confirm",
                "no reservation for this step".into(),
            ),
        }
    }

    fn tcc_cancel(&mut self, op: &Operation, change: &mut Change) -> Answer {
        match self.barrier(op).cloned() {
            Some(Barrier::Tried {
                account,
                amount,
                direction,
                ..
            }) => {
                match direction {
                    Direction::Debit => self.mv(&account, change, |a| {
                        a.held -= amount;
                        a.balance += amount;
                    }),
                    Direction::Credit => self.mv(&account, change, |a| a.incoming -= amount),
                }
                self.set_barrier(op, Barrier::Cancelled, change);
                Answer::ok(json!({ "account": account, "cancelled": amount }))
            }
            Some(Barrier::Confirmed { .. }) => Answer::refuse(
                409,
                "already_confirmed",
                "a confirmed reservation cannot be cancelled".into(),
            ),
            Some(Barrier::Cancelled) => Answer::ok(json!({ "cancelled": true })),
            Some(_) | None => {
                self.set_barrier(op, Barrier::NullCancelled, change);
                Answer::ok(json!({ "cancelled": 0, "null_cancel": true }))
            }
        }
    }
}

fn signed(direction: Direction, amount: i64) -> i64 {
    match direction {
        Direction::Debit => -amount,
        Direction::Credit => amount,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: &str, direction: Direction, phase: Phase, amount: i64) -> Operation {
        Operation {
            key: key.into(),
            barrier: Some("saga-1/step".into()),
            request_id: Some("req-1".into()),
            direction,
            phase,
            account: "alice".into(),
            amount,
        }
    }

    fn ledger() -> Ledger {
        let mut ledger = Ledger::new(100);
        ledger.set_balance("alice", 100);
        ledger
    }

    #[test]
    fn repeated_key_is_applied_once_and_answers_the_same() {
        let mut ledger = ledger();
        let debit = op("k1", Direction::Debit, Phase::Action, 30);
        let (first, _) = ledger.apply(&debit);
        let (again, change) = ledger.apply(&debit);
        assert_eq!(first, again);
        assert!(change.answer.is_none());
        assert_eq!(ledger.account("alice").unwrap().balance, 70);
    }

    #[test]
    fn compensation_before_action_is_a_no_op_and_bars_the_action() {
        let mut ledger = ledger();
        let (answer, _) = ledger.apply(&op("c", Direction::Debit, Phase::Compensate, 30));
        assert_eq!(answer.status, 200);
        let (late, _) = ledger.apply(&op("a", Direction::Debit, Phase::Action, 30));
        assert_eq!(late.status, 409);
        assert_eq!(ledger.account("alice").unwrap().balance, 100);
    }

    #[test]
    fn compensation_restores_the_balance() {
        let mut ledger = ledger();
        ledger.apply(&op("a", Direction::Debit, Phase::Action, 30));
        ledger.apply(&op("c", Direction::Debit, Phase::Compensate, 30));
        assert_eq!(ledger.account("alice").unwrap().balance, 100);
    }

    #[test]
    fn insufficient_funds_is_a_business_rejection() {
        let mut ledger = ledger();
        let (answer, _) = ledger.apply(&op("a", Direction::Debit, Phase::Action, 500));
        assert_eq!(answer.status, 422);
    }

    #[test]
    fn tcc_try_holds_and_confirm_or_cancel_settles() {
        let mut ledger = ledger();
        ledger.apply(&op("t", Direction::Debit, Phase::Try, 40));
        assert_eq!(
            ledger.account("alice").unwrap(),
            Account {
                balance: 60,
                held: 40,
                incoming: 0
            }
        );
        assert_eq!(ledger.total(), 100);
        ledger.apply(&op("x", Direction::Debit, Phase::Cancel, 40));
        assert_eq!(ledger.account("alice").unwrap().balance, 100);
        let (late, _) = ledger.apply(&op("t2", Direction::Debit, Phase::Try, 40));
        assert_eq!(late.status, 409, "a try after its cancel is barred");
    }

    #[test]
    fn status_says_what_each_step_holds() {
        let mut ledger = ledger();
        let status = |ledger: &Ledger| ledger.status("saga-1/step");
        assert_eq!(status(&ledger), None, "never seen");
        ledger.apply(&op("a", Direction::Debit, Phase::Action, 30));
        let held = status(&ledger).unwrap();
        assert_eq!(
            (held["applied"].as_bool(), held["compensated"].as_bool()),
            (Some(true), Some(false))
        );
        assert_eq!(held["amount"], 30);
        ledger.apply(&op("c", Direction::Debit, Phase::Compensate, 30));
        let undone = status(&ledger).unwrap();
        assert_eq!(undone["compensated"], true);
        let mut tcc = self::ledger();
        tcc.apply(&op("t", Direction::Debit, Phase::Try, 40));
        let tried = status(&tcc).unwrap();
        assert_eq!(
            (tried["applied"].as_bool(), tried["held"].as_bool()),
            (Some(false), Some(true))
        );
        tcc.apply(&op("f", Direction::Debit, Phase::Confirm, 40));
        let confirmed = status(&tcc).unwrap();
        assert_eq!(
            (confirmed["applied"].as_bool(), confirmed["amount"].as_i64()),
            (Some(true), Some(40))
        );
    }

    #[test]
    fn journal_changes_rebuild_the_same_books() {
        let mut ledger = ledger();
        let mut changes = vec![ledger.set_balance("alice", 100)];
        changes.push(
            ledger
                .apply(&op("a", Direction::Debit, Phase::Action, 30))
                .1,
        );
        let mut rebuilt = Ledger::new(100);
        for change in changes {
            rebuilt.restore(change);
        }
        assert_eq!(rebuilt.account("alice"), ledger.account("alice"));
        assert_eq!(rebuilt.replay("a"), ledger.replay("a"));
    }
}
