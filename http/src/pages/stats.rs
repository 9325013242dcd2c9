//! `GET /v1/admin/stats` (operator): the counters the `/ops` page charts, as JSON, read from this
//! node's metrics registry, so the page needs neither `/metrics` (which may be on a separate
//! listener) nor a Prometheus parser. Totals are counters since the process started; the page
//! turns them into rates.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use liveshop_engine::auth::{Action, permit};
use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::extract::Caller;
use crate::state::AppState;

/// This node's connections, deliveries, claim decisions, actor restarts and live actors.
#[utoipa::path(
    get,
    path = "/v1/admin/stats",
    tag = "operator",
    responses(
        (status = 200, description = "This node's counters", body = crate::openapi::Stats),
        (status = 403, description = "`forbidden`: operator role required"),
    ),
    security(("bearer" = [])),
)]
pub async fn stats(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    permit(&caller, Action::Operate)?;
    let text = state.metrics.render();
    let totals = Totals::parse(&text);
    Ok(Json(json!({
        "node": state.node_id,
        "connections": state.live.len(),
        "events_delivered": totals.sum("liveshop_events_delivered_total"),
        "claims": totals.sum("liveshop_claims_total"),
        "claims_by_result": totals.by_label("liveshop_claims_total", "result"),
        "restarts": totals.sum("liveshop_actor_restarts_total"),
        "restarts_by_kind": totals.by_label("liveshop_actor_restarts_total", "kind"),
        "actors_by_kind": totals.by_label("liveshop_actors", "kind"),
    })))
}

/// The samples of a Prometheus text exposition: name, labels text, value.
struct Totals<'a> {
    samples: Vec<(&'a str, &'a str, f64)>,
}

impl<'a> Totals<'a> {
    fn parse(text: &'a str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let value = value.trim().parse::<f64>().ok()?;
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                Some((name.trim(), labels, value))
            })
            .collect();
        Self { samples }
    }

    /// The sum of every sample of `name`, as a whole number.
    fn sum(&self, name: &str) -> u64 {
        let total: f64 = self
            .samples
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, _, v)| *v)
            .sum();
        total.max(0.0).round() as u64
    }

    /// The samples of `name` summed by the value of `label`.
    fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (_, labels, value) in self.samples.iter().filter(|(n, _, _)| *n == name) {
            let key = label_value(labels, label).unwrap_or_default().to_owned();
            *out.entry(key).or_insert(0) += value.max(0.0).round() as u64;
        }
        out
    }
}

/// The value of `label` in a label list like `kind="stream",result="ok"`.
fn label_value<'a>(labels: &'a str, label: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == label).then_some(v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# HELP liveshop_claims_total claims\n\
        # TYPE liveshop_claims_total counter\n\
        liveshop_claims_total{result=\"reserved\"} 7\n\
        liveshop_claims_total{result=\"sold_out\"} 3\n\
        liveshop_events_delivered_total 1200\n\
        liveshop_actors{kind=\"stream\"} 2\n\
        liveshop_actors{kind=\"session\"} 5\n";

    #[test]
    fn counters_are_summed_over_their_labels() {
        let totals = Totals::parse(SAMPLE);
        assert_eq!(totals.sum("liveshop_claims_total"), 10);
        assert_eq!(totals.sum("liveshop_events_delivered_total"), 1200);
        assert_eq!(totals.sum("liveshop_actor_restarts_total"), 0);
    }

    #[test]
    fn samples_are_grouped_by_a_label() {
        let totals = Totals::parse(SAMPLE);
        let kinds = totals.by_label("liveshop_actors", "kind");
        assert_eq!(kinds.get("stream"), Some(&2));
        assert_eq!(kinds.get("session"), Some(&5));
        let results = totals.by_label("liveshop_claims_total", "result");
        assert_eq!(results.get("sold_out"), Some(&3));
    }
}
