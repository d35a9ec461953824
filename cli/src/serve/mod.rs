//! `pq serve`: Prometheus metrics at `/metrics` and a server-rendered dashboard at `/`.
//!
//! Reading needs nothing; acting (requeue, cancel, pause, resume) needs the token: open
//! `/login?token=...` once, which sets a `SameSite=Strict`, `HttpOnly` session cookie (a random
//! value of this process, not the token), and the pages then carry a random form nonce. A
//! mutation is accepted with the session cookie and the nonce (which another site cannot read
//! from our pages), or with the token itself in the form (scripts), and, when an `Origin` is
//! sent, only from this server's own origin. Every response forbids framing (no clickjacking)
//! and caching; a request whose `Host` is not this server's address is refused (no DNS
//! rebinding). The server binds to 127.0.0.1 unless `--listen` says otherwise, and its database
//! statements time out after 5 s.

mod pages;
mod prometheus;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::types::Type;

/// One `pq_metrics` row: metric, queue, extra label, value.
pub type Sample = (String, String, Option<String>, f64);

/// Claims per queue, sampled every [`SAMPLE_EVERY`], for the throughput charts.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const HISTORY: usize = 60;

struct App {
    pool: deadpool_postgres::Pool,
    table: String,
    token: String,
    /// The session cookie's value and the forms' nonce: random, never the token.
    session: String,
    nonce: String,
    /// The `Host` values this server answers to; empty: any (it listens on every address).
    hosts: Vec<String>,
    history: Mutex<BTreeMap<String, VecDeque<(Instant, f64)>>>,
}

type Shared = Arc<App>;

/// Serves until interrupted.
pub fn run(
    url: &str,
    table: &str,
    listen: &str,
    token: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let token = token.unwrap_or_else(random_token);
    let mut config: tokio_postgres::Config = url.parse()?;
    config.options("-c statement_timeout=5s");
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let port = addr.port();
        let hosts = if addr.ip().is_unspecified() {
            Vec::new()
        } else {
            let mut h = vec![addr.to_string(), format!("localhost:{port}")];
            if addr.ip().is_loopback() {
                h.extend([format!("127.0.0.1:{port}"), format!("[::1]:{port}")]);
            }
            h
        };
        let app = Arc::new(App {
            pool,
            table: table.to_string(),
            token,
            session: random_token(),
            nonce: random_token(),
            hosts,
            history: Mutex::new(BTreeMap::new()),
        });
        println!("pq serve: http://{addr}/  (metrics: http://{addr}/metrics)");
        println!(
            "pq serve: to act, open http://{addr}/login?token={}",
            app.token
        );
        tokio::spawn(sample(app.clone()));
        let routes = Router::new()
            .route("/metrics", get(metrics))
            .route("/", get(index))
            .route("/queues/{queue}", get(queue_page))
            .route("/queue", get(queue_page_by_name))
            .route("/login", get(login))
            .route("/act", post(act))
            .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
            .with_state(app);
        axum::serve(listener, routes)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// Refuses requests for another `Host` (DNS rebinding), and marks every response as not to be
/// framed (clickjacking), cached, or referred.
async fn guard(
    State(app): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !app.hosts.is_empty() && !app.hosts.iter().any(|h| h == host) {
        return (StatusCode::MISDIRECTED_REQUEST, "pq serve: unknown Host").into_response();
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
        ("cache-control", "no-store"),
        ("referrer-policy", "same-origin"),
        ("x-content-type-options", "nosniff"),
    ] {
        h.insert(name, header::HeaderValue::from_static(value));
    }
    response
}

/// 32 hex digits from the system's random source.
fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An error page: the server's message (with its SQLSTATE), as text.
fn failure(e: Box<dyn std::error::Error + Send + Sync>) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("pq serve: {}", message(&*e)),
    )
        .into_response()
}

/// A database error's SQLSTATE and message, which `tokio_postgres::Error` does not display.
fn message(e: &(dyn std::error::Error + 'static)) -> String {
    match e
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
    {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

async fn samples(app: &App) -> Result<Vec<Sample>, Box<dyn std::error::Error + Send + Sync>> {
    let c = app.pool.get().await?;
    let rows = c
        .query_typed(
            include_str!("../queries/metrics.sql"),
            &[(&app.table, Type::TEXT)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// Every [`SAMPLE_EVERY`]: each queue's claims counter, for the charts.
async fn sample(app: Shared) {
    loop {
        if let Ok(s) = samples(&app).await {
            let now = Instant::now();
            let mut h = app.history.lock().expect("history");
            for (metric, queue, _, value) in s {
                if metric == "pq_claims_total" {
                    let points = h.entry(queue).or_default();
                    points.push_back((now, value));
                    while points.len() > HISTORY {
                        points.pop_front();
                    }
                }
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

async fn metrics(State(app): State<Shared>) -> Response {
    match samples(&app).await {
        Ok(s) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            prometheus::render(&app.table, &s),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

/// Whether the request carries the session cookie: then the pages offer the actions.
fn logged_in(app: &App, headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix("pq_session="))
        .any(|t| same(t, &app.session))
}

/// Compares in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

async fn index(State(app): State<Shared>, headers: HeaderMap) -> Response {
    match samples(&app).await {
        Ok(s) => {
            let history = app.history.lock().expect("history").clone();
            let nonce = logged_in(&app, &headers).then_some(app.nonce.as_str());
            Html(pages::index(&app.table, &s, &history, nonce)).into_response()
        }
        Err(e) => failure(e),
    }
}

/// The jobs of one state of a queue: id, state, enqueued, scheduled, data, error.
pub type JobRow = (i64, String, String, String, String, String);

/// The page of a queue named in the query (`/queue?name=..`): for the names `.` and `..`,
/// which cannot be a path segment (see `pages::queue_url`).
async fn queue_page_by_name(
    app: State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match q.get("name") {
        Some(name) => queue_page(app, Path(name.clone()), Query(q), headers).await,
        None => (
            StatusCode::BAD_REQUEST,
            "pq serve: name the queue: /queue?name=apples",
        )
            .into_response(),
    }
}

async fn queue_page(
    State(app): State<Shared>,
    Path(queue): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    // Failed jobs are done jobs: listing them reads the table's done jobs, so only on request.
    let with_failed = q.contains_key("failed");
    let states: &[&'static str] = if with_failed {
        &["ready", "scheduled", "in_flight", "failed"]
    } else {
        &["ready", "scheduled", "in_flight"]
    };
    let load = async {
        let c = app.pool.get().await?;
        let mut jobs: Vec<(&'static str, Vec<JobRow>)> = Vec::new();
        for &state in states {
            let rows = c
                .query_typed(
                    include_str!("../queries/jobs.sql"),
                    &[
                        (&queue, Type::TEXT),
                        (&state, Type::TEXT),
                        (&app.table, Type::TEXT),
                    ],
                )
                .await?;
            let rows = rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect();
            jobs.push((state, rows));
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(jobs)
    };
    match (load.await, samples(&app).await) {
        (Ok(jobs), Ok(s)) => {
            let nonce = logged_in(&app, &headers).then_some(app.nonce.as_str());
            Html(pages::queue(&queue, &s, &jobs, nonce, with_failed)).into_response()
        }
        (Err(e), _) | (_, Err(e)) => failure(e),
    }
}

async fn login(State(app): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    match q.get("token") {
        Some(t) if same(t, &app.token) => (
            [(
                header::SET_COOKIE,
                format!(
                    "pq_session={}; HttpOnly; SameSite=Strict; Path=/",
                    app.session
                ),
            )],
            Redirect::to("/"),
        )
            .into_response(),
        _ => (StatusCode::FORBIDDEN, "pq serve: wrong token").into_response(),
    }
}

/// What the dashboard's buttons post (`nonce`, with the session cookie), or a script (`token`).
#[derive(serde::Deserialize)]
struct Action {
    #[serde(default)]
    token: String,
    #[serde(default)]
    nonce: String,
    action: String,
    queue: String,
    id: Option<i64>,
}

async fn act(State(app): State<Shared>, headers: HeaderMap, Form(a): Form<Action>) -> Response {
    let by_token = same(&a.token, &app.token);
    let by_session = logged_in(&app, &headers) && same(&a.nonce, &app.nonce);
    if !(by_token || by_session) {
        return (StatusCode::FORBIDDEN, "pq serve: wrong token").into_response();
    }
    if let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        let ours = format!("http://{}", host.to_str().unwrap_or(""));
        if origin.to_str().unwrap_or("") != ours {
            return (
                StatusCode::FORBIDDEN,
                "pq serve: cross-origin request refused",
            )
                .into_response();
        }
    }
    let run = async {
        let c = app.pool.get().await?;
        let t = &app.table;
        match (a.action.as_str(), a.id) {
            ("pause", _) => {
                c.query_typed(
                    pq_client::sql::PAUSE,
                    &[(&a.queue, Type::TEXT), (t, Type::TEXT)],
                )
                .await?
            }
            ("resume", _) => {
                c.query_typed(
                    pq_client::sql::RESUME,
                    &[(&a.queue, Type::TEXT), (t, Type::TEXT)],
                )
                .await?
            }
            ("cancel", Some(id)) => {
                c.query_typed(
                    pq_client::sql::CANCEL,
                    &[(&id, Type::INT8), (t, Type::TEXT)],
                )
                .await?
            }
            ("requeue", Some(id)) => {
                c.query_typed(
                    include_str!("../queries/requeue.sql"),
                    &[(&id, Type::INT8), (t, Type::TEXT)],
                )
                .await?
            }
            (other, _) => return Err(format!("unknown action {other:?}").into()),
        };
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    };
    match run.await {
        Ok(()) => Redirect::to(&pages::queue_url(&a.queue, false)).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("pq serve: {}", message(&*e)),
        )
            .into_response(),
    }
}
