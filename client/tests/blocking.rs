//! The blocking client against a real cluster: every method, blocking wake-up, iteration,
//! transactions, typed queues, tasks, a pool shared by threads, Python pickle queues.
//! `scripts/test` runs them (feature `cluster-tests`) with PQ_TEST_DSN naming a database where
//! `CREATE EXTENSION pq` was run by a superuser (the smoke-test cluster), and PQ_VENV_PYTHON
//! naming a Python with Python pq 1.9.1.

use pq_client::{Job, Pq, Put, TaskOptions};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

fn dsn() -> String {
    std::env::var("PQ_TEST_DSN")
        .expect("PQ_TEST_DSN names the test database (scripts/test sets it)")
}

fn connect() -> postgres::Client {
    postgres::Client::connect(&dsn(), postgres::NoTls).expect("connect to PQ_TEST_DSN")
}

fn pq() -> Pq {
    Pq::new(connect())
}

fn pool(size: u32) -> Pq {
    let manager =
        r2d2_postgres::PostgresConnectionManager::new(dsn().parse().unwrap(), postgres::NoTls);
    Pq::with_pool(r2d2::Pool::builder().max_size(size).build(manager).unwrap())
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Apple {
    kind: String,
}

#[test]
fn put_get_len_clear() {
    let pq = pq();
    pq.create().unwrap();
    let q = pq.queue("c_basic");
    let id = q.put(&json!({"kind": "Cox"})).unwrap();
    assert_eq!(q.len().unwrap(), 1);
    let job = q.get().unwrap().unwrap();
    assert_eq!(
        (job.id, job.data.clone(), job.size),
        (id, json!({"kind": "Cox"}), 15)
    );
    assert!(job.schedule_at.is_none() && job.expected_at.is_none());
    assert!(q.try_get().unwrap().is_none());
    let t0 = Instant::now();
    assert!(q.get().unwrap().is_none(), "get blocks a second, then None");
    assert!(t0.elapsed() >= Duration::from_millis(900));
    q.put(&json!(1)).unwrap();
    assert_eq!(q.clear().unwrap(), 2);
    assert!(q.is_empty().unwrap());
}

#[test]
fn schedule_and_priority_in_every_form() {
    let pq = pq();
    let q = pq.queue("c_when");
    q.put_with(&json!("later"), Put::default().schedule_at("5m"))
        .unwrap();
    q.put_with(
        &json!("later too"),
        Put::default().schedule_at(Duration::from_secs(300)),
    )
    .unwrap();
    q.put_with(
        &json!("much later"),
        Put::default().schedule_at(SystemTime::now() + Duration::from_secs(3600)),
    )
    .unwrap();
    q.put_with(&json!("third"), Put::default()).unwrap();
    q.put_with(&json!("second"), Put::default().expected_at("1h"))
        .unwrap();
    q.put_with(
        &json!("first"),
        Put::default().expected_at(Duration::from_secs(60)),
    )
    .unwrap();
    let order: Vec<Value> = std::iter::from_fn(|| q.try_get().unwrap())
        .map(|j| j.data)
        .collect();
    assert_eq!(order, vec![json!("first"), json!("second"), json!("third")]);
    let ids = q
        .put_many(&[json!(1), json!(2), json!(3)], Put::default())
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(q.try_get().unwrap().unwrap().id, ids[0]);
}

#[test]
fn a_blocked_get_wakes_quickly_on_a_put_from_another_thread() {
    let pq = pool(2);
    let q = pq.queue("c_wake");
    let getter = {
        let q = q.clone();
        thread::spawn(move || {
            let job = q.get_timeout(Duration::from_secs(10)).unwrap();
            (job, Instant::now())
        })
    };
    thread::sleep(Duration::from_millis(300));
    let put_at = Instant::now();
    q.put(&json!("wake up")).unwrap();
    let (job, got_at) = getter.join().unwrap();
    assert_eq!(job.unwrap().data, json!("wake up"));
    let latency = got_at - put_at;
    eprintln!("wake-up latency: {latency:?}");
    assert!(
        latency < Duration::from_secs(2),
        "woken by the put, not by a timeout: {latency:?}"
    );
}

#[test]
fn iteration_yields_none_after_each_timeout() {
    let pq = pq();
    let q = pq.queue("c_iter");
    q.put(&json!(1)).unwrap();
    q.put(&json!(2)).unwrap();
    let items: Vec<Option<Value>> = q
        .iter()
        .timeout(Duration::from_millis(100))
        .take(4)
        .map(|j| j.unwrap().map(|j| j.data))
        .collect();
    assert_eq!(items, vec![Some(json!(1)), Some(json!(2)), None, None]);
}

#[test]
fn transactions_commit_or_return_the_job() {
    let pq = pq();
    let q = pq.queue("c_tx");
    let mut c = connect();
    c.batch_execute("CREATE TABLE IF NOT EXISTS c_tx_results (id bigint)")
        .unwrap();
    let id = q.put(&json!({"kind": "Cox"})).unwrap();

    // Err: rolled back, the job returns.
    let r: Result<(), pq_client::Error> = q.transaction(|tx| {
        let job = tx.get()?.unwrap();
        tx.execute(
            "INSERT INTO c_tx_results VALUES ($1)",
            &[(&job.id, postgres::types::Type::INT8)],
        )?;
        Err(pq_client::Error::Task {
            function: "test".into(),
            message: "nope".into(),
        })
    });
    assert!(r.is_err());
    // Panic: rolled back too, and the Pq stays usable.
    let q2 = q.clone();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = q2.transaction(|tx| -> Result<(), pq_client::Error> {
            tx.get()?.unwrap();
            panic!("worker died");
        });
    }));
    assert!(panicked.is_err());
    // Ok: the job and the result commit together.
    q.transaction(|tx| {
        let job = tx.get()?.expect("the job came back");
        assert_eq!(job.id, id);
        tx.execute(
            "INSERT INTO c_tx_results VALUES ($1)",
            &[(&job.id, postgres::types::Type::INT8)],
        )?;
        Ok::<_, pq_client::Error>(())
    })
    .unwrap();
    let results: i64 = c
        .query_one("SELECT count(*) FROM c_tx_results", &[])
        .unwrap()
        .get(0);
    assert_eq!(results, 1);
    assert!(q.try_get().unwrap().is_none());
}

#[test]
fn typed_queues_and_python_repr() {
    let pq = pq();
    let apples = pq.typed_queue::<Apple>("c_typed");
    apples.put(&Apple { kind: "Cox".into() }).unwrap();
    let job: Job<Apple> = apples.try_get().unwrap().unwrap();
    assert_eq!(job.payload().unwrap(), Apple { kind: "Cox".into() });
    let shown = job.to_string();
    assert!(
        shown.starts_with(&format!("<pq.Job id={} size=15 enqueued_at=\"", job.id)),
        "{shown}"
    );
    assert!(shown.ends_with("Z\" schedule_at=None>"), "{shown}");
    // A payload that is not an Apple is a JSON error, not a panic.
    pq.queue("c_typed").put(&json!([1, 2])).unwrap();
    let bad = apples.try_get().unwrap().unwrap();
    assert!(matches!(bad.payload(), Err(pq_client::Error::Json(_))));
}

#[test]
fn server_errors_keep_their_sqlstate() {
    let pq = pq();
    let e = pq.queue("").put(&json!(1)).unwrap_err();
    assert_eq!(e.sqlstate(), Some("22023"));
    assert!(e.to_string().contains("must not be empty"), "{e}");
    let e = pq
        .queue("c_err")
        .put_with(&json!(1), Put::default().schedule_at("5x"))
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("22007"));
    let e = Pq::new(connect())
        .table("no_such_table")
        .queue("q")
        .put(&json!(1))
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("42P01"));
}

#[test]
fn create_makes_another_queue_table() {
    let pq = Pq::new(connect()).table("c_jobs");
    pq.create().unwrap();
    pq.create().unwrap(); // idempotent
    let q = pq.queue("q");
    let id = q.put(&json!(1)).unwrap();
    assert_eq!(q.try_get().unwrap().unwrap().id, id);
    let in_default: i64 = connect()
        .query_one("SELECT count(*) FROM queue WHERE q_name = 'q'", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_default, 0);
}

#[test]
fn tasks_with_handlers_overrides_and_retries() {
    let pq = pq();
    let eaten = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = pq
        .tasks("c_tasks")
        .timeout(Duration::from_millis(100))
        .defaults(TaskOptions {
            max_retries: 1,
            retry_in: "1h".into(),
            ..TaskOptions::default()
        });
    let log = eaten.clone();
    tasks.register("eat", move |(kind,): (String,)| {
        log.lock().unwrap().push(kind);
        Ok::<_, String>(())
    });
    tasks.register("rot", |(kind,): (String,)| {
        Err::<(), _>(format!("the {kind} is rotten"))
    });
    tasks.register_call("explode", |_call| -> Result<(), String> { panic!("boom") });
    let eat = tasks.call("eat").arg("Cox").enqueue().unwrap();
    let late = tasks
        .call("eat")
        .arg("Fuji")
        .schedule_at("1h")
        .enqueue()
        .unwrap();
    let rot = tasks.call("rot").arg("Bramley").enqueue().unwrap();
    let explode = tasks.call("explode").max_retries(0).enqueue().unwrap();
    // A SQL task in the same queue is left for pq_work.
    let mut c = connect();
    c.batch_execute("CREATE OR REPLACE FUNCTION c_noop() RETURNS void LANGUAGE sql AS 'SELECT'; SELECT pq_register_task('c_noop()')")
        .unwrap();
    let sql_task: i64 = c
        .query_one("SELECT pq_put_task('c_tasks', 'c_noop()')", &[])
        .unwrap()
        .get(0);

    assert_eq!(tasks.work_burst().unwrap(), 3);
    assert_eq!(*eaten.lock().unwrap(), vec!["Cox".to_string()]);
    let mut row = |id: i64| {
        c.query_one(
            "SELECT dequeued_at IS NULL, (data->>'retried')::int, data ? 'failed_at', data->'errors'->-1->>'message', schedule_at > now() + interval '50 minutes' FROM queue WHERE id = $1",
            &[&id],
        )
        .unwrap()
    };
    let r = row(eat);
    assert!(!r.get::<_, bool>(0), "done");
    let r = row(rot);
    assert_eq!(
        (
            r.get::<_, bool>(0),
            r.get::<_, i32>(1),
            r.get::<_, bool>(2),
            r.get::<_, String>(3),
            r.get::<_, bool>(4)
        ),
        (true, 1, false, "the Bramley is rotten".to_string(), true),
        "rescheduled retry_in later with retried + 1"
    );
    let r = row(explode);
    assert!(r.get::<_, bool>(2), "failed for good");
    assert!(r.get::<_, String>(3).contains("boom"));
    let r = row(late);
    assert!(
        r.get::<_, bool>(0) && r.get::<_, bool>(4),
        "per-call schedule_at override"
    );
    let untouched: bool = c
        .query_one(
            "SELECT dequeued_at IS NULL FROM queue WHERE id = $1",
            &[&sql_task],
        )
        .unwrap()
        .get(0);
    assert!(untouched);
    // The shape is the extension's (and Python pq's).
    let shape: Value = c
        .query_one("SELECT data FROM queue WHERE id = $1", &[&late])
        .unwrap()
        .get(0);
    assert_eq!(
        shape,
        json!({"function": "eat", "args": ["Fuji"], "kwargs": {}, "retried": 0, "max_retries": 1, "retry_in": "1h"})
    );
}

#[test]
fn threads_sharing_a_pool_drain_a_queue_exactly_once() {
    let pq = pool(4);
    let q = pq.queue("c_pool");
    let ids: HashSet<i64> = q
        .put_many(
            &(0..2000).map(|i| json!(i)).collect::<Vec<_>>(),
            Put::default(),
        )
        .unwrap()
        .into_iter()
        .collect();
    let taken = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            let taken = taken.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(job) = q.try_get().unwrap() {
                    got.push(job.id);
                    taken.fetch_add(1, Ordering::Relaxed);
                }
                got
            })
        })
        .collect();
    let got: Vec<i64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(got.len(), unique.len(), "a job was taken twice");
    assert_eq!(unique, ids, "a job was lost");
}

/// A Python producer's pickle queue (`pq['c_pickle/pickle']`) read by the Rust client: plain
/// data decodes, a pickled class instance gives a clear error. Python pq 1.9.1 runs from the
/// virtualenv scripts/test creates.
#[test]
fn python_pickle_queues_are_readable_for_plain_data() {
    let python = std::env::var("PQ_VENV_PYTHON").expect("PQ_VENV_PYTHON: a Python with pq 1.9.1");
    let script = r#"
import sys, psycopg2
from pq import PQ
class Apple:
    def __init__(self, kind): self.kind = kind
q = PQ(psycopg2.connect(sys.argv[1]))['c_pickle/pickle']
q.put({'kind': 'Cox', 'sizes': [1, 2.5], 'ripe': True, 'note': None, 'name': 'Pomme d\u2019api'})
q.put(['a', 1])
q.put('just text')
q.put(Apple('Gala'))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, &dsn()])
        .output()
        .unwrap_or_else(|e| {
            panic!("{python}: {e} (run ./scripts/test, which creates the virtualenv)")
        });
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q = pq().queue("c_pickle");
    let dict: Value = q.try_get().unwrap().unwrap().unpickle().unwrap();
    assert_eq!(
        dict,
        json!({"kind": "Cox", "sizes": [1, 2.5], "ripe": true, "note": null, "name": "Pomme d\u{2019}api"})
    );
    #[derive(Deserialize, PartialEq, Debug)]
    struct Pair(String, i64);
    assert_eq!(
        q.try_get().unwrap().unwrap().unpickle::<Pair>().unwrap(),
        Pair("a".into(), 1)
    );
    assert_eq!(
        q.try_get().unwrap().unwrap().unpickle::<String>().unwrap(),
        "just text"
    );
    // An instance of a Python class decodes to its attributes.
    assert_eq!(
        q.try_get().unwrap().unwrap().unpickle::<Value>().unwrap(),
        json!({"kind": "Gala"})
    );
    // What is not a pickle gets a clear error.
    connect().batch_execute(r#"SELECT pq_put('c_pickle', '"not a pickle"'); SELECT pq_put('c_pickle', '{"kind": "Cox"}')"#).unwrap();
    for _ in 0..2 {
        let e = q
            .try_get()
            .unwrap()
            .unwrap()
            .unpickle::<Value>()
            .unwrap_err();
        assert!(matches!(e, pq_client::Error::Pickle(_)), "{e}");
        eprintln!("undecodable: {e}");
    }
}

/// An argument that does not serialize to JSON is an error at enqueue (`Error::Task`), never a
/// silent `null`; and `table()` on a clone gives another table over the same connection.
#[test]
fn unserializable_arguments_and_tables_of_clones() {
    let pq = pool(2);
    let mut bad = std::collections::HashMap::new();
    bad.insert((1, 2), 3); // a map with non-string keys has no JSON form
    let tasks = pq.tasks("c_bad_args");
    let e = tasks.call("eat").arg(&bad).enqueue().unwrap_err();
    assert!(
        matches!(&e, pq_client::Error::Task { function, .. } if function == "eat"),
        "{e}"
    );
    assert_eq!(pq.queue("c_bad_args").len().unwrap(), 0, "nothing was put");
    let other = pq.clone().table("queue");
    assert_eq!(other.table_name(), "queue");
    assert_eq!(
        pq.clone().table("jobs_elsewhere").table_name(),
        "jobs_elsewhere"
    );
}

#[test]
fn operating_verbs_pause_limit_cancel_unique_schedule_backoff() {
    let pq = pool(4);
    let queue = pq.queue("c_ops");
    queue.clear().unwrap();
    queue.resume().unwrap();
    queue.set_limit(None).unwrap();
    // Unique jobs.
    let once = queue.put_with(&json!(1), Put::default().key("k")).unwrap();
    assert_eq!(
        queue.put_with(&json!(2), Put::default().key("k")).unwrap(),
        once
    );
    // Pause: puts work, gets take nothing; resume.
    assert!(queue.pause().unwrap());
    assert!(!queue.pause().unwrap());
    let other = queue.put(&json!(3)).unwrap();
    assert!(queue.get_timeout(Duration::ZERO).unwrap().is_none());
    assert!(queue.resume().unwrap());
    // A limit of one: a second transaction gets nothing while the first holds a job.
    assert_eq!(queue.set_limit(Some(1)).unwrap(), None);
    let mut conn = connect();
    let mut tx = conn.transaction().unwrap();
    let held: i64 = tx
        .query_one("SELECT id FROM pq_get('c_ops')", &[])
        .unwrap()
        .get(0);
    assert!(queue.get_timeout(Duration::ZERO).unwrap().is_none());
    tx.commit().unwrap();
    assert_eq!(queue.set_limit(None).unwrap(), Some(1));
    assert_eq!(pq.status(held).unwrap().as_deref(), Some("done"));
    // Cancel the other one: it never runs.
    let left = if held == once { other } else { once };
    assert!(pq.cancel(left).unwrap());
    assert_eq!(pq.status(left).unwrap().as_deref(), Some("cancelled"));
    assert!(queue.get_timeout(Duration::ZERO).unwrap().is_none());
    assert_eq!(pq.status(i64::MAX).unwrap(), None);
    // Periodic jobs.
    pq.unschedule("c_ops_tick").unwrap();
    let next = queue
        .schedule("c_ops_tick", "0 * * * *", &json!({"tick": 1}))
        .unwrap();
    let until = next.duration_since(SystemTime::now()).unwrap();
    assert!(until <= Duration::from_secs(3600), "{until:?}");
    assert!(pq.unschedule("c_ops_tick").unwrap());
    let e = queue
        .schedule("c_ops_tick", "hourly", &json!({}))
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("22023"), "{e}");
    // Tasks: exponential backoff and keys reach the job.
    let tasks = pq.tasks("c_ops").defaults(TaskOptions {
        max_retries: 3,
        backoff: pq_client::Backoff::Exponential {
            max: Some("5m".into()),
        },
        ..TaskOptions::default()
    });
    let a = tasks
        .call("eat")
        .arg("Cox")
        .key("eat-cox")
        .enqueue()
        .unwrap();
    let b = tasks
        .call("eat")
        .arg("Fuji")
        .key("eat-cox")
        .enqueue()
        .unwrap();
    assert_eq!(a, b);
    let shape: String = connect()
        .query_one(
            "SELECT concat_ws(',', data->>'backoff', data->>'retry_max', key) FROM queue WHERE id = $1",
            &[&a],
        )
        .unwrap()
        .get(0);
    assert_eq!(shape, "exponential,5m,eat-cox");
}
