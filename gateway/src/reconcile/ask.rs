//! The `status` calls: which step has one (by the running config), sending it through the
//! step's upstream (its timeout, retries and breaker), and reading the answer.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::judge::Held;
use crate::config::{Config, parse_call};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::saga::{SagaRecord, status_request};
use crate::upstream::{self, Upstreams};

/// Where to ask about each step: the `status` path of (route, step), from the config.
#[derive(Debug)]
pub(super) struct Asker {
    paths: HashMap<(String, String), String>,
    upstreams: Upstreams,
}

/// What one status call came to.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Asked {
    /// The step has no status call in the config: not checked.
    NoCall,
    /// The backend answered.
    Held(Held),
    /// It did not answer usably (why).
    Failed(String),
}

impl Asker {
    /// The status calls and upstreams of a validated config.
    pub(super) fn new(config: &Config) -> Result<Self, Error> {
        let mut paths = HashMap::new();
        for route in &config.routes {
            let steps = match (&route.saga, &route.msg) {
                (Some(saga), _) => &saga.steps,
                (None, Some(msg)) => &msg.steps,
                (None, None) => continue,
            };
            for step in steps {
                if let Some(call) = step.status.as_deref().and_then(|s| parse_call(s).ok()) {
                    paths.insert((route.name.clone(), step.name.clone()), call.path);
                }
            }
        }
        let upstreams = upstream::build_all(config, &Arc::new(Metrics::new()), 1)?;
        Ok(Self { paths, upstreams })
    }

    /// Asks step `i`'s backend what it holds. The upstream is the one the saga's plan called.
    pub(super) async fn ask(&self, record: &SagaRecord, i: usize) -> Asked {
        let Some(step) = record.plan.get(i) else {
            return Asked::NoCall;
        };
        let Some(path) = self
            .paths
            .get(&(record.route.to_string(), step.name.clone()))
        else {
            return Asked::NoCall;
        };
        let Some(upstream) = self.upstreams.get(&step.upstream) else {
            return Asked::Failed(format!("upstream `{}` is not in the config", step.upstream));
        };
        let Some(request) = status_request(record, i, path) else {
            return Asked::NoCall;
        };
        match upstream.send(&request).await {
            Ok(response) => match read(response.status.as_u16(), &response.body) {
                Ok(held) => Asked::Held(held),
                Err(why) => Asked::Failed(why),
            },
            Err(error) => Asked::Failed(error.to_string()),
        }
    }
}

/// A status answer: 404 for nothing, or 200 with the SPEC §10 object.
fn read(status: u16, body: &[u8]) -> Result<Held, String> {
    match status {
        404 => return Ok(Held::Nothing),
        200 => {}
        other => return Err(format!("the status call answered {other}")),
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| "the status call answered 200 without a JSON body".to_string())?;
    let flag = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_bool)
            .ok_or_else(|| format!("the status answer has no boolean `{name}`"))
    };
    Ok(Held::Holds {
        applied: flag("applied")?,
        compensated: flag("compensated")?,
        amount: value.get("amount").and_then(Value::as_f64),
        count: value.get("count").and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_status_and_shape() {
        assert_eq!(read(404, b"whatever"), Ok(Held::Nothing));
        assert_eq!(
            read(
                200,
                br#"{"applied": true, "compensated": false, "amount": 10, "count": 1}"#
            ),
            Ok(Held::Holds {
                applied: true,
                compensated: false,
                amount: Some(10.0),
                count: Some(1),
            })
        );
        let bare = read(
            200,
            br#"{"applied": false, "compensated": true, "amount": null}"#,
        );
        assert!(matches!(
            bare,
            Ok(Held::Holds {
                amount: None,
                count: None,
                ..
            })
        ));
        assert!(read(500, b"{}").unwrap_err().contains("500"));
        assert!(read(200, b"SUCCESS").unwrap_err().contains("JSON"));
        assert!(
            read(200, br#"{"applied": "yes"}"#)
                .unwrap_err()
                .contains("applied")
        );
    }
}
