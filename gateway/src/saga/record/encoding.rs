//! How a saga's record is stored: a tag naming the encoding, then the record in postcard.
//!
//! postcard does not describe itself: a field added to the record would make every record
//! already stored unreadable, and a gateway upgraded with sagas in flight (or a fleet upgraded
//! one gateway at a time) must finish them. So each record starts with [`TAG`] and a version
//! byte, and the decoder keeps the layouts it ever wrote. The first encoding had no tag: its
//! records start with the saga id's length (36, a UUID), never with `0xFF`.
//!
//! From version 3 on, what was added after version 2 follows the record as a second postcard
//! value ([`Extras`]), so version 2's layout is read by the same code, with no extras. A message
//! delivered to its steps at once adds one more value after that, `true`: a build that reads
//! version 4 without it ignores the trailing byte and delivers in order.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    Attempt, Failure, Mode, MsgPlan, OperatorAction, SagaRecord, Stage, Status, StepState,
};
use crate::saga::plan::PlannedStep;

/// Marks a tagged record; a version byte follows.
const TAG: [u8; 4] = [0xFF, b'T', b'X', b'R'];
/// The first one plus the key secret and the plugin names.
const VERSION_2: u8 = 2;
/// Version 2, then the operators' actions.
const VERSION_3: u8 = 3;
/// The encoding this build writes: version 2, then [`Extras`].
const VERSION: u8 = 4;

/// What follows version 2's layout.
#[derive(Serialize, Deserialize)]
struct Extras {
    actions: Vec<OperatorAction>,
    msg: Option<MsgPlan>,
}

/// What follows it in version 3 (and in a saga's record still).
#[derive(Serialize, Deserialize)]
struct ExtrasV3 {
    actions: Vec<OperatorAction>,
}

/// The record, tagged. A saga is written as version 3 (byte for byte what the build before
/// messages wrote), so a fleet upgraded one gateway at a time can still take over each other's
/// sagas; only a message needs version 4.
pub(super) fn encode(record: &SagaRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&TAG);
    let Some(msg) = record.msg.as_deref() else {
        out.push(VERSION_3);
        let out = postcard::to_extend(record, out).expect("a saga record always encodes");
        let extras = ExtrasV3 {
            actions: record.actions.clone(),
        };
        return postcard::to_extend(&extras, out).expect("a saga record always encodes");
    };
    out.push(VERSION);
    let out = postcard::to_extend(record, out).expect("a saga record always encodes");
    let extras = Extras {
        actions: record.actions.clone(),
        msg: Some(msg.clone()),
    };
    let out = postcard::to_extend(&extras, out).expect("a saga record always encodes");
    if !msg.parallel {
        return out;
    }
    postcard::to_extend(&true, out).expect("a saga record always encodes")
}

/// A record of any encoding this build knows; `None` for anything else, a newer one included.
pub(super) fn decode(bytes: &[u8]) -> Option<SagaRecord> {
    match bytes.strip_prefix(&TAG) {
        Some([VERSION, rest @ ..]) => {
            let (mut record, rest) = postcard::take_from_bytes::<SagaRecord>(rest).ok()?;
            let (extras, rest) = postcard::take_from_bytes::<Extras>(rest).ok()?;
            // What a later build may add after the flag is not this build's to read.
            let parallel = match rest {
                [] => false,
                _ => postcard::take_from_bytes::<bool>(rest).ok()?.0,
            };
            record.actions = extras.actions;
            record.msg = extras.msg.map(|mut plan| {
                plan.parallel = parallel;
                Arc::new(plan)
            });
            Some(record)
        }
        Some([VERSION_3, rest @ ..]) => {
            let (mut record, rest) = postcard::take_from_bytes::<SagaRecord>(rest).ok()?;
            let extras: ExtrasV3 = postcard::from_bytes(rest).ok()?;
            record.actions = extras.actions;
            Some(record)
        }
        Some([VERSION_2, rest @ ..]) => postcard::from_bytes(rest).ok(),
        Some(_) => None,
        None => postcard::from_bytes::<First>(bytes)
            .ok()
            .map(First::upgrade),
    }
}

/// The first encoding's layout, field for field.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct First {
    id: Arc<str>,
    route: Arc<str>,
    client: Arc<str>,
    request_id: Arc<str>,
    fingerprint: [u8; 32],
    mode: Mode,
    plan: Arc<[PlannedStep]>,
    created_ms: u64,
    updated_ms: u64,
    content_type: Option<String>,
    body: Bytes,
    status: Status,
    stage: Stage,
    steps: Vec<StepState>,
    failure: Option<Failure>,
    failures_in_a_row: u32,
    resolution: Option<String>,
    attempts: Vec<Attempt>,
    attempts_total: u64,
}

impl First {
    /// Its keys stay `<saga id>.<step>.<phase>` (a retry must repeat them), and its hooks are
    /// the route's, by the route's name.
    fn upgrade(self) -> SagaRecord {
        SagaRecord {
            id: self.id,
            route: self.route,
            client: self.client,
            request_id: self.request_id,
            fingerprint: self.fingerprint,
            mode: self.mode,
            plan: self.plan,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            content_type: self.content_type,
            body: self.body,
            status: self.status,
            stage: self.stage,
            steps: self.steps,
            failure: self.failure,
            failures_in_a_row: self.failures_in_a_row,
            resolution: self.resolution,
            attempts: self.attempts,
            attempts_total: self.attempts_total,
            key_secret: None,
            plugins: None,
            actions: Vec::new(),
            msg: None,
        }
    }
}

/// A record as version 3 wrote it: the operators' actions after it, no message plan.
#[cfg(test)]
pub(super) fn third_encoding(record: &SagaRecord) -> Vec<u8> {
    #[derive(Serialize)]
    struct Third<'a> {
        actions: &'a [OperatorAction],
    }
    let mut out = TAG.to_vec();
    out.push(VERSION_3);
    let out = postcard::to_extend(record, out).expect("encodes");
    postcard::to_extend(
        &Third {
            actions: &record.actions,
        },
        out,
    )
    .expect("encodes")
}

/// A record as version 2 wrote it (tests of the upgrade).
#[cfg(test)]
pub(super) fn second_encoding(record: &SagaRecord) -> Vec<u8> {
    let mut out = TAG.to_vec();
    out.push(VERSION_2);
    postcard::to_extend(record, out).expect("encodes")
}

/// A record as the first encoding wrote it (tests of the upgrade).
#[cfg(test)]
pub(super) fn first_encoding(record: &SagaRecord) -> Vec<u8> {
    let record = record.clone();
    let first = First {
        id: record.id,
        route: record.route,
        client: record.client,
        request_id: record.request_id,
        fingerprint: record.fingerprint,
        mode: record.mode,
        plan: record.plan,
        created_ms: record.created_ms,
        updated_ms: record.updated_ms,
        content_type: record.content_type,
        body: record.body,
        status: record.status,
        stage: record.stage,
        steps: record.steps,
        failure: record.failure,
        failures_in_a_row: record.failures_in_a_row,
        resolution: record.resolution,
        attempts: record.attempts,
        attempts_total: record.attempts_total,
    };
    postcard::to_allocvec(&first).expect("encodes")
}
