//! What the console's pages show, read from the engine: the sagas (counts per status, filters,
//! search and the last hour's chart), what needs attention, and one saga's page, its bodies as
//! the route's `mask` plugin shows them; and the actions its forms post.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::forms::{action_of, form_of};
use super::pages::{self, ListPage};
use super::session::Session;
use super::{Console, masked, page, redirect};
use crate::admin::listing::Listing;
use crate::error::{Error, ErrorKind};
use crate::saga::{self, Acted, ActionKind, SagaRecord, Status};
use crate::store::{SagaFilter, now_unix_ms};

/// Sagas a listing shows.
const LIST_LIMIT: usize = 100;
/// Each status is counted up to this many: counting a million finished sagas on every page view
/// would take the page's whole time budget.
const COUNT_CAP: u64 = 10_000;
/// An unfinished saga older than this needs attention.
const ATTENTION_AFTER_MS: u64 = 60_000;

impl Console<'_> {
    /// The sagas, newest first, filtered and searched as `query` says.
    pub(super) async fn list(
        &self,
        session: &Session,
        query: &str,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let Listing { filter, q } = Listing::parse(query, LIST_LIMIT)?;
        let engine = self.gateway.engine();
        let sagas = match &q {
            Some(text) => engine.search(text, filter.clone()).await?,
            None => engine.list(filter.clone()).await?,
        };
        let counts = engine.counts(COUNT_CAP).await?;
        let routes: Vec<String> = (self.gateway.config().routes.iter())
            .map(|route| route.name.clone())
            .collect();
        let hour = self.gateway.metrics().last_hour().view(now_unix_ms());
        let views = admin_views(&sagas);
        let listing = ListPage {
            title: if q.is_some() { "Search" } else { "Sagas" },
            sagas: &views,
            filter: Some(&filter),
            q: q.as_deref().unwrap_or(""),
            counts: &counts,
            count_cap: COUNT_CAP,
            routes: &routes,
            hour: &hour,
        };
        Ok(page(
            StatusCode::OK,
            pages::list(&session.viewer(), &listing),
        ))
    }

    /// Stuck sagas, and unfinished ones older than a minute.
    pub(super) async fn attention(
        &self,
        session: &Session,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let engine = self.gateway.engine();
        let old = now_unix_ms().saturating_sub(ATTENTION_AFTER_MS);
        let of = |status: Status| SagaFilter {
            status: Some(status.as_str()),
            limit: LIST_LIMIT,
            ..SagaFilter::default()
        };
        let mut sagas = engine.list(of(Status::Stuck)).await?;
        for status in [Status::Pending, Status::Compensating] {
            let older = SagaFilter {
                before_ms: Some(old),
                ..of(status)
            };
            sagas.extend(engine.list(older).await?);
        }
        sagas.sort_by(|a, b| b.id.cmp(&a.id));
        let views = admin_views(&sagas);
        let listing = ListPage {
            title: "Needs attention",
            sagas: &views,
            filter: None,
            q: "",
            counts: &[],
            count_cap: COUNT_CAP,
            routes: &[],
            hour: &[],
        };
        Ok(page(
            StatusCode::OK,
            pages::list(&session.viewer(), &listing),
        ))
    }

    /// `/ui/sagas/{id}`: the saga's page; `/ui/sagas/{id}/{action}`: an action's form.
    pub(super) async fn saga_call(
        &self,
        session: &Session,
        method: Method,
        rest: &str,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Error> {
        match (method, rest.split_once('/')) {
            (Method::GET, None) => {
                let notice = request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("done="))
                    .map(|action| format!("Your {action} was taken."));
                self.saga_page(session, rest, notice.as_deref()).await
            }
            (Method::POST, Some((id, action))) => {
                let kind = match action {
                    "retry" => ActionKind::Retry,
                    "resolve" => ActionKind::Resolve,
                    "abort" => ActionKind::Abort,
                    _ => return Err(Error::new(ErrorKind::NotFound, "no such action")),
                };
                let id = id.to_string();
                let form = form_of(session, request).await?;
                session
                    .operator
                    .may_operate(&format!("{} a saga", kind.as_str()))?;
                let action = action_of(kind, session, &form)?;
                match self.gateway.engine().act(&id, action).await? {
                    Acted::Taken(_) | Acted::Asked(_) => {
                        Ok(redirect(&format!("/ui/sagas/{id}?done={}", kind.as_str())))
                    }
                }
            }
            _ => Err(Error::new(
                ErrorKind::MethodNotAllowed,
                "the console changes nothing by GET, and shows nothing by POST",
            )),
        }
    }

    async fn saga_page(
        &self,
        session: &Session,
        id: &str,
        notice: Option<&str>,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let record = self
            .gateway
            .engine()
            .find(id)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no saga `{id}`")))?;
        let view = saga::admin_view(&record);
        let (bodies, masked) = masked::bodies(self.gateway, &record).await;
        let markup = pages::saga(&session.viewer(), &view, &bodies, masked, notice);
        Ok(page(StatusCode::OK, markup))
    }
}

fn admin_views(sagas: &[SagaRecord]) -> Vec<serde_json::Value> {
    sagas.iter().map(saga::admin_view).collect()
}
