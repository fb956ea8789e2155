//! The state machine's transitions, one test each, and the stored encoding.

use super::*;
use crate::saga::plan::PlannedCall;

fn call(path: &str) -> PlannedCall {
    PlannedCall {
        method: "POST".into(),
        path: path.into(),
    }
}

fn saga(mode: Mode, steps: usize) -> SagaRecord {
    let plan: Vec<PlannedStep> = (0..steps)
        .map(|i| PlannedStep {
            name: format!("s{i}"),
            upstream: "bank".into(),
            forward: call("/do"),
            undo: call("/undo"),
            confirm: (mode == Mode::Tcc).then(|| call("/confirm")),
        })
        .collect();
    SagaRecord::new(NewSaga {
        id: "s".into(),
        route: "r".into(),
        client: "".into(),
        request_id: "q".into(),
        fingerprint: [0; 32],
        mode,
        plan: plan.into(),
        content_type: None,
        body: Bytes::new(),
        plugins: Arc::from(vec!["compensation".to_string()]),
        msg: None,
    })
}

fn ok() -> Answer {
    Answer {
        status: 200,
        body: b"{}".to_vec(),
    }
}

fn failed(cause: Cause, reached: bool) -> Failed {
    Failed {
        cause,
        answer: None,
        error: "no".into(),
        reached,
    }
}

#[test]
fn saga_completes_step_by_step() {
    let mut record = saga(Mode::Saga, 2);
    record.forward_done(0, Some(ok()));
    assert_eq!(record.stage, Stage::Forward(1));
    assert!(record.steps[1].touched);
    record.forward_done(1, Some(ok()));
    assert_eq!(record.status, Status::Completed);
}

#[test]
fn rejection_compensates_only_the_steps_before_it() {
    let mut record = saga(Mode::Saga, 3);
    record.forward_done(0, Some(ok()));
    record.forward_done(1, Some(ok()));
    record.forward_failed(2, failed(Cause::Rejected, false));
    assert_eq!(record.stage, Stage::Undo(1));
    record.undo_done(1, false);
    assert_eq!(record.stage, Stage::Undo(0));
    record.undo_done(0, false);
    assert_eq!(record.status, Status::Compensated);
}

#[test]
fn a_step_in_doubt_is_compensated_too() {
    let mut record = saga(Mode::Saga, 2);
    record.forward_done(0, Some(ok()));
    record.forward_failed(1, failed(Cause::Unavailable, true));
    assert_eq!(record.stage, Stage::Undo(1));
}

#[test]
fn a_step_that_never_reached_its_backend_is_not_compensated() {
    let mut record = saga(Mode::Saga, 2);
    record.forward_done(0, Some(ok()));
    record.forward_failed(1, failed(Cause::Unavailable, false));
    assert_eq!(
        record.stage,
        Stage::Undo(0),
        "straight to the first step's undo"
    );
    assert!(!record.steps[1].touched);
}

#[test]
fn a_plugin_failure_on_a_resumed_step_keeps_it_compensable() {
    let mut record = saga(Mode::Saga, 2);
    record.forward_done(0, Some(ok()));
    record.forward_failed(1, failed(Cause::Plugin, true));
    assert_eq!(record.stage, Stage::Undo(1));
}

#[test]
fn a_rejection_after_an_attempt_in_doubt_keeps_the_step_compensable() {
    // The first attempt timed out after sending; the retry met 409 "in progress".
    let mut record = saga(Mode::Saga, 2);
    record.forward_done(0, Some(ok()));
    record.forward_failed(1, failed(Cause::Rejected, true));
    assert_eq!(record.stage, Stage::Undo(1), "the step itself is undone");
    assert!(record.steps[1].touched);
}

#[test]
fn rejection_at_the_first_step_needs_no_undo() {
    let mut record = saga(Mode::Saga, 2);
    record.forward_failed(0, failed(Cause::Rejected, false));
    assert_eq!(record.status, Status::Compensated);
}

#[test]
fn tcc_confirms_after_every_try_and_cancels_everything_tried() {
    let mut done = saga(Mode::Tcc, 2);
    done.forward_done(0, Some(ok()));
    done.forward_done(1, Some(ok()));
    assert_eq!(done.stage, Stage::Confirm(0));
    done.confirm_done(0);
    done.confirm_done(1);
    assert_eq!(done.status, Status::Completed);
    let mut cancelled = saga(Mode::Tcc, 3);
    cancelled.forward_done(0, Some(ok()));
    cancelled.forward_failed(1, failed(Cause::Rejected, true));
    assert_eq!(
        cancelled.stage,
        Stage::Undo(1),
        "the rejected try is cancelled too"
    );
}

#[test]
fn twenty_failures_make_it_stuck_and_success_unsticks() {
    let mut record = saga(Mode::Saga, 1);
    record.forward_failed(0, failed(Cause::Unavailable, true));
    let stuck: Vec<bool> = (0..STUCK_AFTER_FAILURES)
        .map(|_| record.retry_failed())
        .collect();
    assert_eq!(stuck.iter().filter(|s| **s).count(), 1);
    assert_eq!(record.status, Status::Stuck);
    record.undo_done(0, false);
    assert_eq!(record.status, Status::Compensated);
}

#[test]
fn a_missing_upstream_blocks_the_saga_until_it_can_go_on() {
    let mut record = saga(Mode::Saga, 2);
    record.blocked(
        record.current_step(),
        "upstream `bank` is not in the config".into(),
    );
    assert_eq!(record.status, Status::Stuck);
    assert_eq!(record.failure.as_ref().unwrap().cause, Cause::Missing);
    record.forward_done(0, Some(ok()));
    assert_eq!(record.status, Status::Pending);
    assert!(
        record.failure.is_none(),
        "the block is forgotten once it moves"
    );
}

#[test]
fn a_finished_saga_never_moves_again() {
    let mut record = saga(Mode::Saga, 1);
    record.forward_done(0, Some(ok()));
    let before = record.clone();
    let moved = std::panic::catch_unwind(move || {
        let mut record = record;
        record.forward_failed(0, failed(Cause::Rejected, true));
        record
    });
    // Debug builds assert (the closure panics); release builds refuse and change nothing.
    if let Ok(after) = moved {
        assert_eq!(after.status, before.status);
    }
}

#[test]
fn only_stuck_or_compensating_sagas_can_be_resolved() {
    let mut running = saga(Mode::Saga, 1);
    assert!(!running.resolve("{}".into()));
    running.forward_failed(0, failed(Cause::Unavailable, true));
    assert!(running.resolve("{\"by\":\"ops\"}".into()));
    assert_eq!(running.status, Status::Compensated);
}

#[test]
fn records_round_trip_through_the_store_encoding() {
    let mut record = saga(Mode::Tcc, 2);
    record.body = Bytes::from_static(b"{\"amount\":1}");
    record.attempt(Attempt {
        step: 0,
        phase: Phase::Try,
        at_ms: 1,
        status: Some(200),
        latency_ms: 3,
        error: None,
    });
    assert_eq!(SagaRecord::decode(&record.encode()), Some(record));
}

#[test]
fn engine_keys_are_stable_distinct_and_not_made_of_the_saga_id() {
    let record = saga(Mode::Saga, 2);
    let key = record.idempotency_key(0, Phase::Action);
    assert!(key.starts_with(ENGINE_KEY_PREFIX), "{key}");
    assert!(!key.contains(&*record.id), "{key}");
    let decoded = SagaRecord::decode(&record.encode()).unwrap();
    assert_eq!(
        decoded.idempotency_key(0, Phase::Action),
        key,
        "stable across a restart"
    );
    let others = [
        record.idempotency_key(0, Phase::Compensate),
        record.idempotency_key(1, Phase::Action),
        saga(Mode::Saga, 2).idempotency_key(0, Phase::Action),
    ];
    assert!(others.iter().all(|other| *other != key), "{others:?}");
}

#[test]
fn records_of_the_first_encoding_still_decode_with_their_old_keys() {
    let mut record = saga(Mode::Saga, 2);
    record.forward_done(0, Some(ok()));
    let first = encoding::first_encoding(&record);
    let decoded = SagaRecord::decode(&first).expect("the first encoding decodes");
    assert_eq!(decoded.stage, record.stage);
    assert_eq!(decoded.plugins, None);
    assert_eq!(
        decoded.idempotency_key(1, Phase::Action),
        format!("{}.s1.action", record.id),
        "a saga in flight keeps sending the keys it sent before"
    );
}

#[test]
fn a_record_of_a_newer_encoding_is_refused_not_misread() {
    let mut bytes = saga(Mode::Saga, 1).encode();
    bytes[4] += 1;
    assert_eq!(SagaRecord::decode(&bytes), None);
}

#[test]
fn keys_of_the_engine_form_are_recognised_in_either_encoding() {
    let record = saga(Mode::Saga, 1);
    for key in [
        record.idempotency_key(0, Phase::Action),
        "TXGATE-anything".to_string(),
        format!("{}.credit.action", uuid::Uuid::now_v7()),
        format!("{}.debit.compensate", uuid::Uuid::now_v7()),
    ] {
        assert!(is_engine_key(key.as_bytes()), "{key}");
    }
    for key in ["order-42", "s1.debit.action", "a.b.c", "", "\u{ff}"] {
        assert!(!is_engine_key(key.as_bytes()), "{key}");
    }
}

fn action(kind: ActionKind) -> OperatorAction {
    OperatorAction::new(kind, Arc::from("alice"), "ticket 42".into())
}

#[test]
fn an_abort_compensates_every_step_that_may_hold_an_effect() {
    let mut record = saga(Mode::Saga, 3);
    record.forward_done(0, Some(ok()));
    record.take_action(action(ActionKind::Abort), true);
    assert_eq!(record.status, Status::Compensating);
    assert_eq!(
        record.stage,
        Stage::Undo(1),
        "the step in flight is undone first"
    );
    assert_eq!(record.failure.as_ref().unwrap().cause, Cause::Aborted);
    assert_eq!(record.actions[0].outcome, Some(ActionOutcome::Applied));
    assert_eq!(&*record.actions[0].operator, "alice");
}

#[test]
fn an_abort_before_the_step_was_sent_leaves_that_step_alone() {
    let mut record = saga(Mode::Saga, 3);
    record.forward_done(0, Some(ok()));
    record.take_action(action(ActionKind::Abort), false);
    assert_eq!(
        record.stage,
        Stage::Undo(0),
        "step 1 never reached its backend"
    );
    assert!(!record.steps[1].touched);
}

#[test]
fn an_abort_of_a_saga_past_going_forward_is_refused_and_recorded() {
    let mut tcc = saga(Mode::Tcc, 1);
    tcc.forward_done(0, Some(ok()));
    assert_eq!(tcc.stage, Stage::Confirm(0));
    tcc.take_action(action(ActionKind::Abort), true);
    assert_eq!(
        tcc.stage,
        Stage::Confirm(0),
        "a decided TCC is never cancelled"
    );
    let Some(ActionOutcome::Refused(why)) = &tcc.actions[0].outcome else {
        panic!("{:?}", tcc.actions);
    };
    assert!(why.contains("confirming step `s0`"), "{why}");
    let mut done = saga(Mode::Saga, 1);
    done.forward_done(0, Some(ok()));
    done.take_action(action(ActionKind::Abort), true);
    assert_eq!(done.status, Status::Completed);
    done.take_action(action(ActionKind::Retry), true);
    assert!(matches!(
        done.actions[1].outcome,
        Some(ActionOutcome::Refused(_))
    ));
}

#[test]
fn a_resolve_action_carries_its_note_and_the_timeline_keeps_the_newest() {
    let mut record = saga(Mode::Saga, 1);
    record.forward_failed(0, failed(Cause::Unavailable, true));
    for _ in 0..actions::ACTIONS_KEPT_MAX + 5 {
        record.take_action(action(ActionKind::Retry), true);
    }
    let mut resolve = action(ActionKind::Resolve);
    resolve.note = Some("{\"by\":\"ops\"}".into());
    let id = resolve.id.clone();
    record.take_action(resolve, true);
    assert_eq!(record.status, Status::Compensated);
    assert_eq!(record.resolution.as_deref(), Some("{\"by\":\"ops\"}"));
    assert_eq!(record.actions.len(), actions::ACTIONS_KEPT_MAX);
    assert!(record.has_action(&id));
}

#[test]
fn records_of_the_second_encoding_decode_with_no_actions_and_new_ones_keep_them() {
    let mut record = saga(Mode::Saga, 2);
    record.forward_done(0, Some(ok()));
    let decoded = SagaRecord::decode(&encoding::second_encoding(&record)).expect("decodes");
    assert_eq!(decoded, record);
    record.take_action(action(ActionKind::Abort), true);
    let decoded = SagaRecord::decode(&record.encode()).expect("decodes");
    assert_eq!(decoded.actions, record.actions);
    assert_eq!(decoded, record);
}

#[test]
fn a_long_reason_is_cut_at_a_character_boundary() {
    let long = "é".repeat(actions::REASON_BYTES_MAX);
    let action = OperatorAction::new(ActionKind::Abort, Arc::from("a"), long);
    assert!(action.reason.len() <= actions::REASON_BYTES_MAX);
    assert!(action.reason.chars().all(|c| c == 'é'));
}

#[test]
fn a_completed_saga_expects_every_step_applied() {
    use crate::saga::expect::Expected;
    let mut record = saga(Mode::Saga, 2);
    record.forward_done(0, Some(ok()));
    assert_eq!(record.expected(0), None, "unfinished: its steps still move");
    record.forward_done(1, Some(ok()));
    assert_eq!(record.expected(0), Some(Expected::Applied));
    assert_eq!(record.expected(1), Some(Expected::Applied));
    assert_eq!(record.expected(2), None);
}

#[test]
fn a_compensated_saga_expects_nothing_of_its_undone_and_untouched_steps() {
    use crate::saga::expect::Expected;
    let mut record = saga(Mode::Saga, 3);
    record.forward_done(0, Some(ok()));
    record.forward_failed(1, failed(Cause::Rejected, false));
    record.undo_sending(0);
    record.undo_done(0, false);
    assert_eq!(record.status, Status::Compensated);
    for i in 0..3 {
        assert_eq!(record.expected(i), Some(Expected::Absent), "step {i}");
    }
}

#[test]
fn a_skipped_undo_or_a_hand_resolution_leaves_the_step_unknown() {
    use crate::saga::expect::Expected;
    let mut record = saga(Mode::Tcc, 2);
    record.forward_done(0, Some(ok()));
    record.forward_failed(1, failed(Cause::Rejected, false));
    record.undo_sending(1);
    record.undo_done(1, false);
    record.undo_done(0, true);
    assert_eq!(record.expected(0), Some(Expected::Unknown));
    assert_eq!(record.expected(1), Some(Expected::Absent));
    assert_eq!(record.effect_phase(), Phase::Try);

    let mut resolved = saga(Mode::Saga, 2);
    resolved.forward_done(0, Some(ok()));
    resolved.forward_failed(1, failed(Cause::Unavailable, true));
    assert!(resolved.resolve("{}".into()));
    assert_eq!(resolved.expected(0), Some(Expected::Unknown));
    assert_eq!(resolved.expected(1), Some(Expected::Unknown));
}

fn message(steps: usize) -> SagaRecord {
    let mut record = saga(Mode::Saga, steps);
    record.mode = Mode::Msg;
    record.stage = Stage::Prepared;
    record.steps[0].touched = false;
    record.msg = Some(Arc::new(MsgPlan {
        check: call("/check"),
        check_upstream: "orders".into(),
        prepare_timeout_ms: 10,
        parallel: false,
    }));
    record
}

fn parallel_message(steps: usize) -> SagaRecord {
    let mut record = message(steps);
    let mut plan = (**record.msg.as_ref().unwrap()).clone();
    plan.parallel = true;
    record.msg = Some(Arc::new(plan));
    record
}

#[test]
fn a_message_sent_to_every_step_at_once_is_delivered_when_the_last_takes_it() {
    let mut record = parallel_message(3);
    record.submit().unwrap();
    assert!(
        record.steps.iter().all(|s| s.touched),
        "every step is sent at once"
    );
    record.delivered(2, Some(ok()));
    assert_eq!(
        record.stage,
        Stage::Forward(0),
        "the first still to take it"
    );
    record.delivery_refused(0, None, "no".into());
    record.delivered(1, Some(ok()));
    assert_eq!(record.stage, Stage::Forward(0));
    assert_eq!(
        record.msg_state(),
        "stuck",
        "step 0's refusal still holds it for an operator"
    );
    record.delivered(0, Some(ok()));
    assert_eq!(record.msg_state(), "delivered");
    assert!(record.failure.is_none());
    assert_eq!(record.status, Status::Completed);
}

#[test]
fn a_step_blocked_in_a_message_sent_at_once_holds_it_only_until_the_config_has_it() {
    let mut record = parallel_message(3);
    record.submit().unwrap();
    record.blocked(2, "upstream `c` is not in the running config".into());
    assert_eq!(
        record.failure.as_ref().unwrap().step,
        2,
        "the step that blocked"
    );
    record.delivered(0, Some(ok()));
    assert_eq!(
        record.msg_state(),
        "stuck",
        "another step's block still holds it"
    );
    record.unblocked(1);
    assert_eq!(
        record.msg_state(),
        "stuck",
        "only the step that blocked clears it"
    );
    record.unblocked(2);
    assert_eq!(record.msg_state(), "submitted");
    record.delivered(2, Some(ok()));
    record.delivered(1, Some(ok()));
    assert_eq!(record.msg_state(), "delivered");
}

#[test]
fn a_message_delivered_at_once_says_so_after_its_plan_and_older_readers_skip_it() {
    let record = parallel_message(2);
    let bytes = record.encode();
    let decoded = SagaRecord::decode(&bytes).unwrap();
    assert!(decoded.delivers_in_parallel());
    assert_eq!(decoded, record);
    let mut plan = (**record.msg.as_ref().unwrap()).clone();
    plan.parallel = false;
    let mut in_order = record.clone();
    in_order.msg = Some(Arc::new(plan));
    let in_order = in_order.encode();
    assert_eq!(
        &bytes[..in_order.len()],
        &in_order[..],
        "the same bytes as in order, then the flag"
    );
    assert_eq!(bytes.len(), in_order.len() + 1);
    let mut later = bytes.clone();
    later.extend_from_slice(&[7, 7, 7]);
    assert!(
        SagaRecord::decode(&later).unwrap().delivers_in_parallel(),
        "what a later build adds after the flag is skipped"
    );
    assert!(
        !SagaRecord::decode(&in_order)
            .unwrap()
            .delivers_in_parallel()
    );
}

#[test]
fn a_message_is_submitted_or_rolled_back_once_and_never_both() {
    let mut submitted = message(2);
    assert_eq!(submitted.msg_state(), "prepared");
    assert!(
        !submitted.steps[0].touched,
        "nothing is sent while prepared"
    );
    submitted.submit().unwrap();
    assert_eq!(submitted.stage, Stage::Forward(0));
    assert!(submitted.steps[0].touched);
    submitted.submit().unwrap();
    assert_eq!(
        submitted.stage,
        Stage::Forward(0),
        "a repeat changes nothing"
    );
    assert!(submitted.roll_back("late".into()).is_err());
    submitted.delivered(0, Some(ok()));
    submitted.delivered(1, Some(ok()));
    assert_eq!(submitted.msg_state(), "delivered");

    let mut rolled_back = message(2);
    rolled_back.roll_back("rolled back".into()).unwrap();
    rolled_back.roll_back("again".into()).unwrap();
    assert_eq!(rolled_back.msg_state(), "aborted");
    assert!(rolled_back.submit().is_err());
    assert_eq!(rolled_back.status, Status::Compensated);
}

#[test]
fn a_refused_delivery_is_stuck_and_a_later_success_clears_it() {
    let mut record = message(1);
    record.submit().unwrap();
    record.delivery_refused(
        0,
        Some(Answer {
            status: 404,
            body: b"{}".to_vec(),
        }),
        "no".into(),
    );
    assert_eq!(record.msg_state(), "stuck");
    assert!(record.failure.is_some());
    record.delivered(0, Some(ok()));
    assert_eq!(record.msg_state(), "delivered");
    assert!(record.failure.is_none());
}

#[test]
fn a_message_keeps_its_back_check_and_version_3_records_still_read() {
    let record = message(2);
    let decoded = SagaRecord::decode(&record.encode()).unwrap();
    assert_eq!(decoded, record);
    let mut older = saga(Mode::Saga, 2);
    older.take_action(
        OperatorAction::new(ActionKind::Retry, "ops".into(), "why".into()),
        false,
    );
    assert_eq!(
        older.encode(),
        encoding::third_encoding(&older),
        "a saga is written as the build before messages wrote it"
    );
    let decoded = SagaRecord::decode(&encoding::third_encoding(&older)).unwrap();
    assert_eq!(decoded, older);
    assert_eq!(decoded.actions.len(), 1);
}

#[test]
fn a_prepared_message_is_never_resolved_and_a_resolved_one_keeps_what_it_delivered() {
    use crate::saga::expect::Expected;
    let mut prepared = message(2);
    prepared.status = Status::Stuck;
    let mut resolve = OperatorAction::new(ActionKind::Resolve, "ops".into(), "why".into());
    resolve.note = Some("{}".into());
    prepared.take_action(resolve.clone(), false);
    assert_eq!(prepared.stage, Stage::Prepared, "a resolve would drop it");
    assert!(matches!(
        prepared.actions[0].outcome,
        Some(ActionOutcome::Refused(_))
    ));

    let mut delivering = message(2);
    delivering.submit().unwrap();
    delivering.delivered(0, Some(ok()));
    delivering.delivery_refused(1, None, "no".into());
    delivering.take_action(resolve, false);
    assert_eq!(delivering.msg_state(), "resolved");
    assert_eq!(delivering.expected(0), Some(Expected::Applied));
    assert_eq!(delivering.expected(1), Some(Expected::Unknown));
}
