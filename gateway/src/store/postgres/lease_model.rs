//! A model of the fleet's lease and fencing protocol (`store::postgres::lease`, `sagas`,
//! `writer`, `upstream::fence`), checked exhaustively with stateright.
//!
//! Modelled: two gateways in a rolling change of `lease_ms` (2 and 5 ticks, the least for which
//! judging by the taker's lease shows; the margin is a quarter, rounded down), one database, one
//! saga (a call, then the save of its outcome; rows are fenced one by one, so one stands for
//! many), and the backend that receives the call. One clock ticks for the database and every
//! gateway; it is kept relative (ticks left, ticks since), so the check covers runs of any length.
//! - A renewal is three steps: the gateway sends it (`t0`), the database applies it (heartbeat,
//!   declared lease), the reply comes; a lapse seen at the reply, also one during a slow
//!   statement, bumps the generation.
//! - Takeover is one atomic statement, judged in database time against the owner's declared
//!   lease; a restart (same id) bumps the epoch of its own unfinished sagas.
//! - `may_send` hands out tickets, the socket checks them (check and write: one step), saves are
//!   fenced on (owner, epoch).
//! - Faults: slow statements and replies; pauses: nothing makes a gateway take a step, so a pause
//!   (SIGSTOP) is any stretch of a path without its steps, while the clock and the database go
//!   on; one kill of the saga's owner, then a restart (killing a gateway that owns nothing is a
//!   pause that never ends). Epochs are bounded by 3: a saga can go away and come back.
//!
//! Not modelled: clock drift (the margin is there for it; without drift it is not needed), the
//! time a call's bytes take, a slow takeover or `may_send` read (the generation they record would
//! only be older, which is safer), `may_take_over`'s settling delay, the renewal's deadline, and
//! the backend's side: backends do not check epochs; a call repeated after a takeover is made
//! harmless by its `Idempotency-Key`.
//!
//! Checked, in every reachable state, for the saga of either gateway: (1) saves advance the saga
//! in epoch order; (2) a save with a stale epoch is refused; (3) no call is delivered with an
//! epoch older than the saga's in the database; (4) from any state, a fair run without more
//! faults leaves no unfinished saga to a dead gateway for longer than a lease and a tick. Then
//! bugs are planted one by one, and each must yield a counterexample, printed step by step
//! (`checks.rs`).

use std::fmt;

use stateright::{Model, Property};

const GATEWAYS: usize = 2;
const MAX_EPOCH: u8 = 3;

/// A planted bug, to show that the checker finds what each part of the protocol prevents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// The socket writes without asking `ticket_valid`.
    NoSocketFence,
    /// Takeover judges the owner against the taker's lease.
    TakerLease,
    /// The save is fenced on the owner only.
    NoSaveEpoch,
    /// `checked` is keyed by the saga's id only, not (id, epoch): as before this change.
    CheckedById,
    /// A lapse is judged when the renewal is sent, as before this change: one during a slow
    /// statement goes unseen.
    LapseAtSend,
}

/// The renewal in flight, with the validity (ticks from now) its reply will give.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
enum Renewal {
    #[default]
    Idle,
    Sent(u8),
    Applied(u8),
}

#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
struct Gateway {
    alive: bool,
    /// Ticks of local validity left; 0 once lapsed, and so until the next reply, which then bumps
    /// the generation. The generation itself is not kept: only tickets are compared with it, so
    /// a bump marks the gateway's tickets stale instead (the same behaviour, fewer states).
    valid: u8,
    renewal: Renewal,
    /// One bit per epoch of the saga: checked in the current generation.
    checked: u8,
    /// Whether `own_unfinished` ran since the process started.
    recovered: bool,
    /// Only with `Bug::LapseAtSend`: whether the lease had lapsed when the renewal was sent.
    lapsed_at_send: bool,
    /// Its row in `gateways`: ticks since the heartbeat, by the database's clock. (The lease it
    /// declares with each heartbeat is its own, fixed here: `LeaseModel::leases`.)
    age: u8,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Phase {
    Gate,
    /// Holds a ticket; false once the generation it was given in is gone.
    Ticket(bool),
    Sent,
}

#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
struct State {
    gw: [Gateway; GATEWAYS],
    owner: u8,
    epoch: u8,
    finished: bool,
    /// The task (gateway, phase) running the saga at each epoch. Each epoch has one owner; a
    /// gateway may run the saga at two epochs: one it lost, one it took back.
    runs: [Option<(u8, Phase)>; MAX_EPOCH as usize + 1],
    kills: u8,
    /// Ghosts: the highest epoch saved, and what the invariants forbid, recorded when it happens.
    saved_epoch: u8,
    late_call: bool,
    stale_save: bool,
    save_regressed: bool,
}

/// What a task does next. Each outcome is its own action, so that a path reads as a story.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Ticket,
    Check,
    Fenced,
    Deliver,
    Refuse,
    Save,
    SaveRefused,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Tick,
    Kill(u8),
    Restart(u8),
    RenewSend(u8),
    RenewApply(u8),
    RenewReply(u8),
    TakeOver(u8),
    OwnUnfinished(u8),
    /// A step of the task of a gateway (first) at an epoch (second).
    Task(Step, u8, u8),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = |step| match step {
            Step::Ticket => "may_send: a ticket at once (checked in this generation)",
            Step::Check => "may_send: reads the row, still ours: checked",
            Step::Fenced => "may_send: reads the row, not ours: Fenced, dropped",
            Step::Deliver => "the socket writes the call: DELIVERED to the backend",
            Step::Refuse => "the socket's fence refuses the write",
            Step::Save => "save applied",
            Step::SaveRefused => "save refused (0 rows): saga lost",
        };
        match self {
            Action::Tick => write!(f, "the clock ticks"),
            Action::Kill(g) => write!(f, "G{g} is killed"),
            Action::Restart(g) => write!(f, "G{g} restarts with the same id"),
            Action::RenewSend(g) => write!(f, "G{g} sends a renewal (t0 = now)"),
            Action::RenewApply(g) => write!(f, "the db applies G{g}'s renewal (heartbeat = now)"),
            Action::RenewReply(g) => write!(f, "G{g} gets its renewal's reply"),
            Action::TakeOver(g) => write!(f, "G{g} takes over the sagas of dead gateways"),
            Action::OwnUnfinished(g) => write!(f, "G{g} bumps the epochs of its own sagas"),
            Action::Task(s, g, e) => write!(f, "G{g} S@e{e}: {}", step(*s)),
        }
    }
}

struct LeaseModel {
    /// Each gateway's own `lease_ms`, in ticks.
    leases: [u8; GATEWAYS],
    /// The saga's first owner (at epoch 1).
    owner: u8,
    bug: Option<Bug>,
}

fn at(g: u8) -> usize {
    usize::from(g)
}

impl LeaseModel {
    fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    /// The local validity a renewal gives, from its `t0`: the lease less a quarter.
    fn validity(&self, g: usize) -> u8 {
        self.leases[g] - self.leases[g] / 4
    }

    /// A process that knows nothing but its validity: just renewed (in the initial state, its
    /// sagas recovered) or just started (`valid` 0). Its row in the database keeps its `age`.
    fn process(valid: u8, age: u8) -> Gateway {
        let (alive, recovered) = (true, valid > 0);
        Gateway {
            alive,
            valid,
            recovered,
            age,
            ..Gateway::default()
        }
    }

    /// Whether `taker` may take the saga: unfinished, and its owner's lease ran out by the
    /// database's clock.
    fn takeable(&self, s: &State, taker: usize) -> bool {
        let owner = &s.gw[at(s.owner)];
        let lease = match self.bug {
            Some(Bug::TakerLease) => self.leases[taker],
            _ => self.leases[at(s.owner)],
        };
        !s.finished && at(s.owner) != taker && owner.age > lease
    }

    /// Gives the saga to `g` at the next epoch, checked, and starts its task there.
    fn own(s: &mut State, g: u8) {
        (s.owner, s.epoch) = (g, s.epoch + 1);
        s.gw[at(g)].checked |= 1 << s.epoch;
        if let Some(run) = s.runs.get_mut(usize::from(s.epoch)) {
            *run = Some((g, Phase::Gate));
        }
    }

    fn tick(&self, s: &mut State) {
        let longest = self.leases.into_iter().max().unwrap_or(0);
        for (gw, lease) in s.gw.iter_mut().zip(self.leases) {
            gw.valid = gw.valid.saturating_sub(1);
            gw.renewal = match gw.renewal {
                Renewal::Sent(v) => Renewal::Sent(v.saturating_sub(1)),
                Renewal::Applied(v) => Renewal::Applied(v.saturating_sub(1)),
                Renewal::Idle => Renewal::Idle,
            };
            // Past the lease it is judged by, a heartbeat's age no longer matters.
            let judged_by = if self.has(Bug::TakerLease) {
                longest
            } else {
                lease
            };
            gw.age = (gw.age + 1).min(judged_by + 1);
        }
    }

    /// The reply: a lapse since the last one (valid is 0) bumps the generation.
    fn renew_reply(&self, s: &mut State, g: u8, valid: u8) {
        let gw = &mut s.gw[at(g)];
        // `lapsed_at_send` is only ever set with the bug, which looks at nothing else.
        if (gw.valid == 0 && !self.has(Bug::LapseAtSend)) || gw.lapsed_at_send {
            gw.checked = 0;
            for (_, phase) in s.runs.iter_mut().flatten().filter(|(r, _)| *r == g) {
                if *phase == Phase::Ticket(true) {
                    *phase = Phase::Ticket(false);
                }
            }
        }
        (gw.valid, gw.renewal) = (valid, Renewal::Idle);
    }

    fn task_step(&self, s: &State, g: u8, epoch: u8, phase: Phase) -> Step {
        let gw = &s.gw[at(g)];
        let ours = s.owner == g && s.epoch == epoch;
        match phase {
            Phase::Gate => {
                let by_id = self.has(Bug::CheckedById) && gw.checked != 0;
                match (gw.checked & 1 << epoch != 0 || by_id, ours) {
                    (true, _) => Step::Ticket,
                    (false, true) => Step::Check,
                    (false, false) => Step::Fenced,
                }
            }
            Phase::Ticket(current) if self.has(Bug::NoSocketFence) || (gw.valid > 0 && current) => {
                Step::Deliver
            }
            Phase::Ticket(_) => Step::Refuse,
            Phase::Sent if ours || (self.has(Bug::NoSaveEpoch) && s.owner == g) => Step::Save,
            Phase::Sent => Step::SaveRefused,
        }
    }

    fn apply_task(s: &mut State, step: Step, g: u8, epoch: u8) {
        let phase = match step {
            Step::Ticket => Phase::Ticket(true),
            Step::Check => {
                s.gw[at(g)].checked |= 1 << epoch;
                Phase::Gate
            }
            Step::Deliver => {
                s.late_call |= s.epoch > epoch;
                Phase::Sent
            }
            Step::Refuse => Phase::Gate,
            Step::Save | Step::Fenced | Step::SaveRefused => {
                if step == Step::Save {
                    s.stale_save |= epoch < s.epoch;
                    s.save_regressed |= epoch < s.saved_epoch;
                    (s.finished, s.saved_epoch) = (true, s.saved_epoch.max(epoch));
                }
                s.gw[at(g)].checked &= !(1 << epoch);
                s.runs[usize::from(epoch)] = None;
                return;
            }
        };
        s.runs[usize::from(epoch)] = Some((g, phase));
    }

    fn gateway_actions(&self, s: &State, g: u8, out: &mut Vec<Action>) {
        let gw = &s.gw[at(g)];
        let sent = matches!(gw.renewal, Renewal::Sent(_));
        if sent {
            out.push(Action::RenewApply(g));
        }
        if !gw.alive {
            // Not while its last statement may still reach the database.
            if !sent {
                out.push(Action::Restart(g));
            }
            return;
        }
        if s.kills == 0 && s.owner == g && !s.finished {
            out.push(Action::Kill(g));
        }
        match gw.renewal {
            Renewal::Idle => out.push(Action::RenewSend(g)),
            Renewal::Applied(_) => out.push(Action::RenewReply(g)),
            Renewal::Sent(_) => {}
        }
        if !gw.recovered {
            out.push(Action::OwnUnfinished(g));
        }
        if gw.valid > 0 && self.takeable(s, at(g)) {
            out.push(Action::TakeOver(g));
        }
    }

    /// A fair continuation without faults: a dead gateway's statement lands at once, live ones
    /// renew and take over at every tick. Within the longest lease and a tick, the saga must not
    /// be left to a dead gateway while a gateway lives.
    fn fair_takeover(&self, s: &State) -> bool {
        let settled =
            |s: &State| s.finished || s.gw[at(s.owner)].alive || s.gw.iter().all(|gw| !gw.alive);
        let mut s = *s;
        (0..GATEWAYS as u8).for_each(|g| self.apply(&mut s, Action::RenewApply(g)));
        for _ in 0..=self.leases.into_iter().max().unwrap_or(0) + 1 {
            if settled(&s) {
                return true;
            }
            (0..GATEWAYS as u8).for_each(|g| self.fair_turn(&mut s, g));
            self.apply(&mut s, Action::Tick);
        }
        settled(&s)
    }

    fn fair_turn(&self, s: &mut State, g: u8) {
        use Action::{OwnUnfinished as Own, RenewApply as Apply, RenewReply as Reply};
        // The renewal in flight, if any, then a new one.
        let steps = [
            Apply,
            Reply,
            Action::RenewSend,
            Apply,
            Reply,
            Own,
            Action::TakeOver,
        ];
        if s.gw[at(g)].alive {
            steps.into_iter().for_each(|step| self.apply(s, step(g)));
        }
    }

    /// The effect of an action. `actions` says when it is enabled; applied out of turn (by the
    /// fair run), it changes nothing.
    fn apply(&self, s: &mut State, action: Action) {
        match action {
            Action::Tick => self.tick(s),
            Action::Kill(g) => self.kill(s, g),
            Action::Restart(g) => s.gw[at(g)] = Self::process(0, s.gw[at(g)].age),
            Action::RenewSend(g) if s.gw[at(g)].renewal == Renewal::Idle => {
                let gw = &mut s.gw[at(g)];
                gw.renewal = Renewal::Sent(self.validity(at(g)));
                gw.lapsed_at_send = self.has(Bug::LapseAtSend) && gw.valid == 0;
            }
            Action::RenewApply(g) => {
                let gw = &mut s.gw[at(g)];
                if let Renewal::Sent(valid) = gw.renewal {
                    (gw.age, gw.renewal) = (0, Renewal::Applied(valid));
                }
            }
            Action::RenewReply(g) => {
                if let Renewal::Applied(valid) = s.gw[at(g)].renewal {
                    self.renew_reply(s, g, valid);
                }
            }
            Action::TakeOver(g) if s.gw[at(g)].valid > 0 && self.takeable(s, at(g)) => {
                Self::own(s, g);
            }
            Action::OwnUnfinished(g) if !s.gw[at(g)].recovered => {
                s.gw[at(g)].recovered = true;
                if s.owner == g && !s.finished {
                    Self::own(s, g);
                }
            }
            Action::Task(step, g, epoch) => Self::apply_task(s, step, g, epoch),
            Action::RenewSend(_) | Action::TakeOver(_) | Action::OwnUnfinished(_) => {}
        }
    }

    /// The process is gone with all it knew; only a statement it sent may still land.
    fn kill(&self, s: &mut State, g: u8) {
        s.kills += 1;
        for run in &mut s.runs {
            *run = run.filter(|(r, _)| *r != g);
        }
        let (alive, old) = (false, s.gw[at(g)]);
        let renewal = match old.renewal {
            Renewal::Sent(_) => Renewal::Sent(0),
            _ => Renewal::Idle,
        };
        s.gw[at(g)] = Gateway {
            alive,
            renewal,
            ..Self::process(0, old.age)
        };
    }
}

impl Model for LeaseModel {
    type State = State;
    type Action = Action;

    /// Every gateway just renewed; the saga is checked at epoch 1 by its owner.
    fn init_states(&self) -> Vec<State> {
        let mut gw: [Gateway; GATEWAYS] =
            std::array::from_fn(|g| Self::process(self.validity(g), 0));
        gw[at(self.owner)].checked = 1 << 1;
        let mut runs = [None; MAX_EPOCH as usize + 1];
        runs[1] = Some((self.owner, Phase::Gate));
        vec![State {
            gw,
            owner: self.owner,
            epoch: 1,
            runs,
            ..State::default()
        }]
    }

    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        let runs = s.runs.iter().enumerate();
        let runs = runs.filter_map(|(e, run)| Some((e as u8, (*run)?)));
        // Once the saga is finished and no task is left, nothing more can happen that matters.
        if s.finished && runs.clone().next().is_none() {
            return;
        }
        out.push(Action::Tick);
        (0..GATEWAYS as u8).for_each(|g| self.gateway_actions(s, g, out));
        for (epoch, (g, phase)) in runs {
            // While its lease is not valid, `may_send` sleeps.
            if phase != Phase::Gate || s.gw[at(g)].valid > 0 {
                out.push(Action::Task(self.task_step(s, g, epoch, phase), g, epoch));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = *last;
        self.apply(&mut s, action);
        Some(s)
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.epoch <= MAX_EPOCH
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(SAVES_IN_ORDER, |_, s: &State| !s.save_regressed),
            Property::always(STALE_SAVE_REFUSED, |_, s: &State| !s.stale_save),
            Property::always(NO_CALL_AFTER_TAKEOVER, |_, s: &State| !s.late_call),
            Property::always(DEAD_SAGAS_TAKEN_OVER, |m: &Self, s| m.fair_takeover(s)),
            Property::sometimes(TAKEN_OVER_FINISHES, |m: &Self, s: &State| {
                s.finished && s.owner != m.owner
            }),
        ]
    }
}

const SAVES_IN_ORDER: &str = "1. saves advance a saga in epoch order";
const STALE_SAVE_REFUSED: &str = "2. a save with a stale epoch is refused";
const NO_CALL_AFTER_TAKEOVER: &str = "3. no call is delivered after a takeover";
const DEAD_SAGAS_TAKEN_OVER: &str = "4. a dead gateway's saga is taken over (fair run)";
const TAKEN_OVER_FINISHES: &str = "a taken-over saga finishes";

mod checks;
