//! The verdict on one step: what the gateway's record says it left at the backend, against what
//! the backend's `status` call says it holds (SPEC §10). Pure, so every rule is unit-tested.

use serde::Serialize;

use crate::saga::{Expected, Mode};

/// What a backend holds for a step, by its `status` answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Held {
    /// 404: it never saw the step's key (or has forgotten it).
    Nothing,
    /// 200 `{"applied", "compensated", "amount", "count"}`.
    Holds {
        /// The effect was applied (a TCC try: confirmed).
        applied: bool,
        /// It was compensated (or the reservation released).
        compensated: bool,
        /// The amount it booked, when it says.
        amount: Option<f64>,
        /// How many times it applied the effect, when it says.
        count: Option<u64>,
    },
}

/// A kind of disagreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The gateway applied the step; the backend lacks the effect.
    MissingEffect,
    /// The backend holds an effect of a step the gateway compensated or never ran.
    UnexpectedEffect,
    /// A TCC try neither confirmed nor cancelled at the backend.
    TccUnresolved,
    /// A delivered message that its consumer does not hold.
    MessageNotDelivered,
    /// The backend booked another amount than the request's.
    AmountDiffers,
    /// The backend applied the step more than once.
    AppliedTwice,
    /// The status call failed: this step was not checked.
    Unchecked,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Self; 7] = [
        Self::MissingEffect,
        Self::UnexpectedEffect,
        Self::TccUnresolved,
        Self::MessageNotDelivered,
        Self::AmountDiffers,
        Self::AppliedTwice,
        Self::Unchecked,
    ];

    /// The name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingEffect => "missing_effect",
            Self::UnexpectedEffect => "unexpected_effect",
            Self::TccUnresolved => "tcc_unresolved",
            Self::MessageNotDelivered => "message_not_delivered",
            Self::AmountDiffers => "amount_differs",
            Self::AppliedTwice => "applied_twice",
            Self::Unchecked => "unchecked",
        }
    }

    /// What an operator should do about it. Reconcile never moves money itself.
    pub fn action(self) -> &'static str {
        match self {
            Self::MissingEffect => {
                "apply the step at the backend by hand, or reverse the saga's other steps"
            }
            Self::UnexpectedEffect => "reverse the effect at the backend by hand",
            Self::TccUnresolved => {
                "confirm (saga completed) or cancel (saga compensated) the reservation at the backend"
            }
            Self::MessageNotDelivered => {
                "hand the message to the consumer by hand (its step's action, with the same key)"
            }
            Self::AmountDiffers => "correct the booked amount at the backend to the request's",
            Self::AppliedTwice => "reverse the extra applications at the backend",
            Self::Unchecked => "run reconcile again once the backend answers its status call",
        }
    }
}

/// One disagreement on a step, in words.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Disagreement {
    /// Its kind.
    pub category: Category,
    /// What the gateway's record says.
    pub expected: String,
    /// What the backend holds.
    pub actual: String,
}

/// Every disagreement between `expected` (with the request's amount, when it has one) and what
/// the backend holds.
pub(super) fn judge(
    mode: Mode,
    expected: Expected,
    amount: Option<f64>,
    held: Held,
) -> Vec<Disagreement> {
    let mut found = Vec::new();
    let mut add = |category, expected: &str| {
        found.push(Disagreement {
            category,
            expected: expected.to_string(),
            actual: describe(mode, held),
        });
    };
    let missing = if mode == Mode::Msg {
        Category::MessageNotDelivered
    } else {
        Category::MissingEffect
    };
    let Held::Holds {
        applied,
        compensated,
        amount: booked,
        count,
    } = held
    else {
        if expected == Expected::Applied {
            add(missing, "applied");
        }
        return found;
    };
    let effect = applied && !compensated;
    if mode == Mode::Tcc && !applied && !compensated {
        add(Category::TccUnresolved, outcome(expected));
    } else if expected == Expected::Applied && !effect {
        add(missing, "applied");
    } else if expected == Expected::Absent && effect {
        add(Category::UnexpectedEffect, "nothing, or compensated");
    }
    if effect
        && expected == Expected::Applied
        && let (Some(asked), Some(booked)) = (amount, booked)
        && asked != booked
    {
        found.push(Disagreement {
            category: Category::AmountDiffers,
            expected: format!("amount {asked}"),
            actual: format!("amount {booked}"),
        });
    }
    if let Some(times) = count.filter(|&n| n > 1) {
        found.push(Disagreement {
            category: Category::AppliedTwice,
            expected: "applied at most once".into(),
            actual: format!("applied {times} times"),
        });
    }
    found
}

fn outcome(expected: Expected) -> &'static str {
    match expected {
        Expected::Applied => "confirmed",
        Expected::Absent => "cancelled",
        Expected::Unknown => "confirmed or cancelled",
    }
}

/// What the backend holds, in words.
fn describe(mode: Mode, held: Held) -> String {
    match held {
        Held::Nothing => "nothing (404)".into(),
        Held::Holds {
            applied: true,
            compensated: true,
            ..
        } => "applied, then compensated".into(),
        Held::Holds { applied: true, .. } => "applied".into(),
        Held::Holds {
            compensated: true, ..
        } => "compensated".into(),
        Held::Holds { .. } if mode == Mode::Tcc => {
            "reserved, neither confirmed nor cancelled".into()
        }
        Held::Holds { .. } => "a record of the step, without its effect".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(applied: bool, compensated: bool) -> Held {
        Held::Holds {
            applied,
            compensated,
            amount: Some(10.0),
            count: None,
        }
    }

    fn categories(mode: Mode, expected: Expected, held: Held) -> Vec<Category> {
        judge(mode, expected, Some(10.0), held)
            .into_iter()
            .map(|d| d.category)
            .collect()
    }

    #[test]
    fn books_that_agree_say_nothing() {
        use Expected::*;
        for (mode, expected, held) in [
            (Mode::Saga, Applied, holds(true, false)),
            (Mode::Saga, Absent, Held::Nothing),
            (Mode::Saga, Absent, holds(true, true)),
            (Mode::Saga, Absent, holds(false, true)),
            (Mode::Tcc, Applied, holds(true, false)),
            (Mode::Tcc, Absent, holds(false, true)),
            (Mode::Saga, Unknown, holds(true, false)),
            (Mode::Saga, Unknown, Held::Nothing),
        ] {
            assert!(
                categories(mode, expected, held).is_empty(),
                "{mode:?} {expected:?} {held:?}"
            );
        }
    }

    #[test]
    fn an_applied_step_the_backend_lacks_is_missing() {
        for held in [Held::Nothing, holds(false, true), holds(true, true)] {
            assert_eq!(
                categories(Mode::Saga, Expected::Applied, held),
                [Category::MissingEffect],
                "{held:?}"
            );
        }
    }

    #[test]
    fn a_message_its_consumer_lacks_was_not_delivered() {
        assert_eq!(
            categories(Mode::Msg, Expected::Applied, Held::Nothing),
            [Category::MessageNotDelivered]
        );
        assert!(categories(Mode::Msg, Expected::Absent, Held::Nothing).is_empty());
    }

    #[test]
    fn an_effect_of_a_compensated_step_is_unexpected() {
        let found = judge(Mode::Saga, Expected::Absent, Some(10.0), holds(true, false));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].category, Category::UnexpectedEffect);
        assert_eq!(found[0].actual, "applied");
    }

    #[test]
    fn a_reservation_left_open_is_an_unresolved_try_whatever_the_outcome() {
        for expected in [Expected::Applied, Expected::Absent, Expected::Unknown] {
            assert_eq!(
                categories(Mode::Tcc, expected, holds(false, false)),
                [Category::TccUnresolved]
            );
        }
    }

    #[test]
    fn another_amount_and_a_second_application_are_reported_beside_the_effect() {
        let booked = Held::Holds {
            applied: true,
            compensated: false,
            amount: Some(7.0),
            count: Some(2),
        };
        let found = judge(Mode::Saga, Expected::Applied, Some(10.0), booked);
        let kinds: Vec<Category> = found.iter().map(|d| d.category).collect();
        assert_eq!(kinds, [Category::AmountDiffers, Category::AppliedTwice]);
        assert_eq!(found[0].expected, "amount 10");
        assert_eq!(found[0].actual, "amount 7");
        // Without the request's amount, or the backend's, amounts are not compared.
        assert!(judge(Mode::Saga, Expected::Applied, None, holds(true, false)).is_empty());
    }
}
