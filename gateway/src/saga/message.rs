//! A prepared transactional message (SPEC §9): it waits for its service's submit or abort, and
//! after `prepare_timeout_ms` asks the back-check, deciding by status code only. Once submitted,
//! `delivery.rs` takes it to its steps.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};

use super::ctx::{Ctx, Lost, block, gate, persist, wait};
use super::handle::Handle;
use super::record::{MsgPlan, SagaRecord, Stage};
use crate::step::Phase;
use crate::store::now_unix_ms;
use crate::upstream::{OutboundRequest, backoff_delay};

/// How long a message without its back-check (a record written by hand) waits before it
/// looks again for its service's submit or abort.
const NO_CHECK_WAIT: Duration = Duration::from_secs(60);

/// A prepared message's turn: waits for the timeout (an action wakes it earlier), then asks
/// the back-check once. Returns whether the record changed and needs persisting.
pub(super) async fn prepared(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
) -> Result<bool, Lost> {
    let Some(plan) = record.msg.clone() else {
        wait(handle, NO_CHECK_WAIT).await;
        return Ok(false);
    };
    let due_ms = record.created_ms.saturating_add(plan.prepare_timeout_ms);
    let now_ms = now_unix_ms();
    if now_ms < due_ms {
        wait(handle, Duration::from_millis(due_ms - now_ms)).await;
        return Ok(false);
    }
    let Some(upstream) = ctx.live.upstream(&plan.check_upstream) else {
        let error = format!(
            "upstream `{}` of the back-check is not in the running config",
            plan.check_upstream
        );
        block(ctx, record, handle, 0, Phase::Action, error).await?;
        return Ok(false);
    };
    let fence = gate(ctx, &record.id, handle).await?;
    let result = upstream
        .attempt(&check_request(record, &plan), fence.as_ref())
        .await;
    let status = result.as_ref().ok().map(|r| r.status.as_u16());
    let route = std::sync::Arc::new(record.route.to_string());
    // The answer's status alone decides: a 200 whose body says "error" is still committed, and a
    // 500 whose body says "SUCCESS" is still retried.
    let answer = match status {
        Some(200) => {
            let _ = record.submit();
            "committed"
        }
        Some(409) => {
            let why = "the back-check answered 409: the service rolled back".to_string();
            let _ = record.roll_back(why);
            "rolled_back"
        }
        Some(425) => "running",
        _ => {
            let what = result.map_or_else(|e| e.to_string(), |r| r.status.to_string());
            tracing::warn!(message = %record.id, %what, "the back-check gave no decision; asking again");
            "other"
        }
    };
    ctx.metrics.message_check(&route, answer);
    if record.stage == Stage::Prepared {
        record.msg_retry();
        persist(ctx, record, handle).await?;
        let config = upstream.config();
        let delay = backoff_delay(
            record.failures_in_a_row,
            config.backoff_base_ms,
            config.backoff_max_ms,
        );
        wait(handle, delay).await;
        return Ok(false);
    }
    Ok(true)
}

/// The back-check: the message's X-Request-ID and body, and its id as `X-Saga-ID`.
fn check_request(record: &SagaRecord, plan: &MsgPlan) -> OutboundRequest {
    let mut headers = HeaderMap::with_capacity(4);
    let value = |text: &str| HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""));
    headers.insert(crate::request_id::HEADER, value(&record.request_id));
    headers.insert("x-saga-id", value(&record.id));
    if let Some(content_type) = record.content_type.as_deref() {
        headers.insert(http::header::CONTENT_TYPE, value(content_type));
    }
    OutboundRequest {
        method: Method::from_bytes(plan.check.method.as_bytes()).unwrap_or(Method::POST),
        path_and_query: plan.check.path.clone(),
        headers,
        body: record.body.clone(),
    }
}
