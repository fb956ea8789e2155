//! Transactional messages in the fault suites: a message route whose back-check is the orders
//! service beside bank 0, delivering a credit to bank 1 and one to bank 2, in order on `/msg`
//! and at once on `/fanout` (`parallel = true`). Each planned message
//! is committed or rolled back at the orders service, and then submitted or aborted, or left to
//! the back-check (its service "crashed"). Afterwards: every committed message delivered to
//! every step, once; no rolled-back one delivered anywhere; and the money they added counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Bank, client};

/// Messages per run.
pub const MESSAGES: usize = 12;
/// The steps a message is delivered to, and the bank of each.
const STEPS: [(&str, usize); 2] = [("ledger", 1), ("notify", 2)];

/// One message and what its service does.
#[derive(Debug, Clone)]
pub struct PlannedMessage {
    pub id: String,
    pub amount: i64,
    /// The service's local transaction commits.
    pub commit: bool,
    /// The service tells the gateway (submit or abort), or crashes before it does.
    pub tell: bool,
    /// Sent on the route that delivers to every step at once.
    pub parallel: bool,
}

impl PlannedMessage {
    fn path(&self) -> &'static str {
        if self.parallel { "/fanout" } else { "/msg" }
    }
}

/// The message routes: `/msg` delivers in order, `/fanout` at once.
pub fn route() -> String {
    let mut config = String::new();
    for (name, parallel) in [("msg", false), ("fanout", true)] {
        config.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\n[routes.msg]\n\
             check = \"POST /orders/check\"\ncheck_upstream = \"bank0\"\n\
             prepare_timeout_ms = 500\nparallel = {parallel}\n",
        ));
        for (step, bank) in STEPS {
            config.push_str(&format!(
                "[[routes.msg.steps]]\nname = \"{step}\"\nupstream = \"bank{bank}\"\n\
                 action = \"POST /credit\"\nstatus = \"GET /credit/status\"\n"
            ));
        }
        config.push('\n');
    }
    config
}

pub fn plan(rng: &mut fastrand::Rng, seed: u64) -> Vec<PlannedMessage> {
    (0..MESSAGES)
        .map(|n| PlannedMessage {
            id: format!("seed{seed}-msg{n}"),
            amount: rng.i64(1..100),
            commit: rng.bool(),
            tell: rng.u8(..4) != 0,
            parallel: rng.bool(),
        })
        .collect()
}

fn body(m: &PlannedMessage) -> Value {
    let legs: serde_json::Map<String, Value> = STEPS
        .iter()
        .map(|(step, bank)| {
            let leg = json!({"account": format!("b{bank}a0"), "amount": m.amount});
            (step.to_string(), leg)
        })
        .collect();
    json!({ "legs": legs })
}

/// POSTs until an answer in `finals` comes (or `tries` run out); the last status.
async fn post_until(url: &str, id: &str, body: &Value, finals: &[u16], tries: u32) -> Option<u16> {
    for _ in 0..tries {
        let sent = client()
            .post(url)
            .header("x-request-id", id)
            .json(body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            if finals.contains(&status) {
                return Some(status);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// What the service does for one message: prepare, its local transaction, then submit or abort
/// (unless it "crashes"). Returns whether the order committed, once that is known.
pub async fn drive(gateway: String, orders: String, m: PlannedMessage, tries: u32) -> Option<bool> {
    let path = m.path();
    post_until(&format!("{gateway}{path}"), &m.id, &body(&m), &[201], tries).await?;
    let committed = if m.commit {
        let url = format!("{orders}/orders/{}/commit", m.id);
        post_until(&url, &m.id, &json!({}), &[200, 409], tries).await? == 200
    } else {
        false
    };
    if m.tell {
        let call = if committed { "submit" } else { "abort" };
        let url = format!("{gateway}{path}/{}/{call}", m.id);
        post_until(&url, &m.id, &json!({}), &[200, 409], tries).await?;
    }
    Some(committed)
}

/// Drives every message to a known outcome once the faults stopped: message id -> committed.
pub async fn settle(
    gateway: &str,
    orders: &Bank,
    planned: &[PlannedMessage],
    replay: &str,
) -> HashMap<String, bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut outcomes = HashMap::new();
    for m in planned {
        let outcome = drive(gateway.to_string(), orders.base(), m.clone(), 400).await;
        assert!(
            Instant::now() < deadline,
            "messages never settled ({replay})"
        );
        let committed = outcome.unwrap_or_else(|| panic!("{} never settled ({replay})", m.id));
        outcomes.insert(m.id.clone(), committed);
    }
    outcomes
}

/// The invariants, once every message finished; returns the money the messages added.
pub async fn check(
    banks: &[Bank],
    gateway: &crate::support::Gateway,
    outcomes: &HashMap<String, bool>,
    planned: &[PlannedMessage],
    seed: u64,
    replay: &str,
) -> i64 {
    let mut barriers = Vec::new();
    for (_, bank) in STEPS {
        barriers.push(banks[bank].barriers().await);
    }
    let mut added = 0;
    for m in planned {
        let found = gateway
            .admin_json(&format!("/admin/sagas?q={}", m.id))
            .await;
        let msg = &found["sagas"][0];
        let msg_id = msg["saga_id"].as_str().unwrap_or_default();
        let committed = outcomes[&m.id];
        let want = if committed { "delivered" } else { "aborted" };
        assert_eq!(msg["msg_state"], want, "seed {seed}: {} ({replay})", m.id);
        for ((step, _), held) in STEPS.iter().zip(&barriers) {
            let state = held
                .get(&format!("{msg_id}/{step}"))
                .and_then(|b| b["state"].as_str());
            if committed {
                assert_eq!(
                    state,
                    Some("applied"),
                    "seed {seed}: {} at {step} ({replay})",
                    m.id
                );
                added += m.amount;
            } else {
                assert_eq!(
                    state, None,
                    "seed {seed}: rolled back {} delivered to {step} ({replay})",
                    m.id
                );
            }
        }
    }
    added
}
