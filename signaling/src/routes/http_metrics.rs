//! Counts of HTTP requests by method, route and status for `/metrics`. The route is the
//! router's template written with `:name` parameters (`/v1/sessions/:id`; braces inside label
//! values trip up simple Prometheus text parsers), never the request's path, so ids and invite
//! tokens stay out of the series and their number stays bounded; requests that match no route
//! count as `unmatched`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// (method, route, status) -> requests answered.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    counts: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl HttpMetrics {
    fn count(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts
                .entry((method.to_owned(), route.to_owned(), status))
                .or_insert(0) += 1;
        }
    }

    /// Appends `earshot_http_requests_total` in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        let name = "earshot_http_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP requests answered, by method, route template and status.\n# TYPE {name} counter"
        );
        let Ok(counts) = self.counts.lock() else {
            return;
        };
        for ((method, route, status), n) in counts.iter() {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "{name}{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
    }
}

/// The middleware: counts every answered request (WebSocket upgrades count as their 101).
pub async fn count_requests(
    axum::extract::State(metrics): axum::extract::State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || "unmatched".to_owned(),
        |p| p.as_str().replace('{', ":").replace('}', ""),
    );
    let response = next.run(request).await;
    metrics.count(&method, &route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_by_method_route_and_status() {
        let m = HttpMetrics::default();
        m.count("GET", "/v1/sessions/:id", 200);
        m.count("GET", "/v1/sessions/:id", 200);
        m.count("GET", "unmatched", 404);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "earshot_http_requests_total{method=\"GET\",route=\"/v1/sessions/:id\",status=\"200\"} 2"
        ));
        assert!(out.contains(
            "earshot_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1"
        ));
    }
}
