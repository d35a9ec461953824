//! Integration tests of the async API (feature `async`) against a server with the pq
//! extension, named by `PQ_TEST_DSN`, e.g.
//!
//! ```text
//! PQ_TEST_DSN="host=/work/main/target/devasync port=5498 user=postgres" \
//!     cargo test -p pq-client --features async --test async_api
//! ```
//!
//! Without `PQ_TEST_DSN` every test prints why and passes without running. Each test uses
//! queues of its own, so they run in parallel.

use futures::StreamExt;
use pq_client::asynchronous::{Pq, Tx};
use pq_client::{Put, TaskOptions};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::types::Type;

/// A `Pq` over a fresh pool, with the extension created; `None` (and a message) without
/// `PQ_TEST_DSN`.
async fn pq(test: &str) -> Option<Pq> {
    pq_sized(test, 8).await
}

async fn pq_sized(test: &str, size: usize) -> Option<Pq> {
    let Ok(dsn) = std::env::var("PQ_TEST_DSN") else {
        eprintln!("skipping {test}: set PQ_TEST_DSN to a server with the pq extension");
        return None;
    };
    let manager = deadpool_postgres::Manager::new(dsn.parse().unwrap(), tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .build()
        .unwrap();
    let pq = Pq::new(pool);
    pq.create().await.unwrap();
    Some(pq)
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Apple {
    kind: String,
}

#[tokio::test]
async fn put_get_len_clear() {
    let Some(pq) = pq("put_get_len_clear").await else {
        return;
    };
    let queue = pq.queue("async/basic");
    queue.clear().await.unwrap();
    assert!(queue.is_empty().await.unwrap());
    let a = queue.put(&json!({"kind": "Cox"})).await.unwrap();
    let b = queue.put(&json!({"kind": "Fuji"})).await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 2);

    let job = queue.get().await.unwrap().expect("a job");
    assert_eq!((job.id, job.data.clone()), (a, json!({"kind": "Cox"})));
    assert!(job.to_string().starts_with(&format!("<pq.Job id={a} ")));
    assert_eq!(queue.len().await.unwrap(), 1);

    let ids = queue
        .put_many(&[json!(1), json!(2), json!(3)], Put::default())
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > b);
    // Scheduled later: not ready, not counted.
    queue
        .put_many(&[json!(4)], Put::default().schedule_at("1h"))
        .await
        .unwrap();
    queue
        .put_with(&json!(5), Put::default().schedule_at("1h"))
        .await
        .unwrap();
    assert_eq!(queue.len().await.unwrap(), 4);
    assert_eq!(queue.try_get().await.unwrap().unwrap().id, b);
    // Every job of the queue: 3 ready, 2 scheduled, 2 consumed.
    assert_eq!(queue.clear().await.unwrap(), 7);
    assert_eq!(queue.len().await.unwrap(), 0);
    assert!(queue.try_get().await.unwrap().is_none());

    // Typed payloads.
    let typed = pq.typed_queue::<Apple>("async/typed");
    typed.clear().await.unwrap();
    typed
        .put(&Apple {
            kind: "Gala".into(),
        })
        .await
        .unwrap();
    let apple = typed.try_get().await.unwrap().unwrap().payload().unwrap();
    assert_eq!(
        apple,
        Apple {
            kind: "Gala".into()
        }
    );

    // Server errors keep their SQLSTATE.
    let err = pq.queue("").put(&json!(1)).await.unwrap_err();
    assert!(err.sqlstate().is_some(), "{err}");
}

/// A get waits in the server and wakes when another task puts; meanwhile this
/// single-threaded runtime keeps running other tasks.
#[tokio::test(flavor = "current_thread")]
async fn get_timeout_wakes_and_never_blocks_the_executor() {
    let Some(pq) = pq("get_timeout_wakes_and_never_blocks_the_executor").await else {
        return;
    };
    let queue = pq.queue("async/wake");
    queue.clear().await.unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    // Nothing comes: the whole 2 s wait is in the server, and the ticker ticks throughout.
    let before = ticks.load(Ordering::SeqCst);
    let start = Instant::now();
    let none = queue.get_timeout(Duration::from_secs(2)).await.unwrap();
    let waited = start.elapsed();
    let ticked = ticks.load(Ordering::SeqCst) - before;
    assert!(none.is_none());
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert!(
        ticked >= 30,
        "only {ticked} ticks of 50 ms during a 2 s get"
    );

    // Another task puts after 500 ms: the get wakes then, not at its 10 s timeout.
    let putter = {
        let queue = queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            queue.put(&json!({"kind": "Cox"})).await.unwrap()
        })
    };
    let before = ticks.load(Ordering::SeqCst);
    let start = Instant::now();
    let job = queue.get_timeout(Duration::from_secs(10)).await.unwrap();
    let waited = start.elapsed();
    let ticked = ticks.load(Ordering::SeqCst) - before;
    let id = putter.await.unwrap();
    assert_eq!(job.expect("woken by the put").id, id);
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(ticked >= 5, "only {ticked} ticks while waiting");
    ticker.abort();
}

#[tokio::test]
async fn stream_of_jobs() {
    let Some(pq) = pq("stream_of_jobs").await else {
        return;
    };
    let queue = pq.queue("async/stream");
    queue.clear().await.unwrap();
    let ids = queue
        .put_many(
            &(0..5).map(|i| json!(i)).collect::<Vec<_>>(),
            Put::default(),
        )
        .await
        .unwrap();

    let mut jobs = queue.iter().timeout(Duration::from_millis(200));
    let mut got = vec![];
    while let Some(job) = jobs.next().await {
        match job.unwrap() {
            Some(job) => got.push(job.id),
            None => break, // nothing for 200 ms
        }
    }
    assert_eq!(got, ids);

    // The pending get lives in the stream: racing next() against a timer loses nothing.
    let mut jobs = queue.iter().timeout(Duration::from_secs(5));
    tokio::select! {
        _ = jobs.next() => panic!("nothing was put"),
        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    let id = queue.put(&json!("late")).await.unwrap();
    let job = jobs.next().await.unwrap().unwrap().expect("the late job");
    assert_eq!(job.id, id);

    // Stream combinators work: take two of three.
    queue
        .put_many(&[json!(1), json!(2), json!(3)], Put::default())
        .await
        .unwrap();
    let two: Vec<_> = queue
        .iter()
        .take(2)
        .map(|j| j.unwrap().unwrap().data)
        .collect()
        .await;
    assert_eq!(two, vec![json!(1), json!(2)]);
    assert_eq!(queue.len().await.unwrap(), 1);
}

#[tokio::test]
async fn transactions_commit_or_roll_back() {
    let Some(pq) = pq("transactions_commit_or_roll_back").await else {
        return;
    };
    pq.conn()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE IF NOT EXISTS async_eaten (job bigint, kind text)")
        .await
        .unwrap();
    let eaten = |id: i64| {
        let pq = pq.clone();
        async move {
            pq.conn()
                .await
                .unwrap()
                .query_typed_one(
                    "SELECT count(*) FROM async_eaten WHERE job = $1",
                    &[(&id, Type::INT8)],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let queue = pq.queue("async/tx");
    queue.clear().await.unwrap();
    let id = queue.put(&json!({"kind": "Braeburn"})).await.unwrap();

    // Err: rolled back, the job is back and nothing was written.
    let result = queue
        .transaction(|tx| {
            Box::pin(async move {
                let job = tx.get().await?.expect("the job");
                tx.execute(
                    "INSERT INTO async_eaten VALUES ($1, $2)",
                    &[(&job.id, Type::INT8), (&"Braeburn", Type::TEXT)],
                )
                .await?;
                Err::<(), _>(pq_client::Error::Task {
                    function: "eat".into(),
                    message: "too sour".into(),
                })
            })
        })
        .await;
    assert!(matches!(result, Err(pq_client::Error::Task { .. })));
    assert_eq!(queue.len().await.unwrap(), 1);
    assert_eq!(eaten(id).await, 0);

    // A Tx dropped (as by a cancelled future) rolls back too.
    {
        let mut tx: Tx<Value> = queue.begin().await.unwrap();
        assert_eq!(tx.get().await.unwrap().unwrap().id, id);
        assert!(
            queue.try_get().await.unwrap().is_none(),
            "claimed while the Tx lives"
        );
    }
    assert_eq!(queue.len().await.unwrap(), 1);

    // Explicit rollback.
    let mut tx = queue.begin().await.unwrap();
    assert_eq!(tx.get().await.unwrap().unwrap().id, id);
    tx.rollback().await.unwrap();
    assert_eq!(queue.len().await.unwrap(), 1);

    // Ok: the job is consumed and the result kept, together; a job put in it appears.
    let (taken, put) = queue
        .transaction(|tx| {
            Box::pin(async move {
                let job = tx.get().await?.expect("the job");
                let n = tx
                    .execute(
                        "INSERT INTO async_eaten VALUES ($1, $2)",
                        &[(&job.id, Type::INT8), (&"Braeburn", Type::TEXT)],
                    )
                    .await?;
                assert_eq!(n, 1);
                let put = tx.put(&json!({"kind": "core"})).await?;
                Ok::<_, pq_client::Error>((job.id, put))
            })
        })
        .await
        .unwrap();
    assert_eq!(taken, id);
    assert_eq!(eaten(id).await, 1);
    assert_eq!(queue.try_get().await.unwrap().unwrap().id, put);
    assert_eq!(queue.len().await.unwrap(), 0);

    // begin/commit by hand, and a Tx moves into a spawned task.
    let id = queue.put(&json!({"kind": "Cox"})).await.unwrap();
    let mut tx = queue.begin().await.unwrap();
    let handle = tokio::spawn(async move {
        let job = tx.get_timeout(Duration::from_secs(1)).await?.unwrap();
        tx.execute(
            "INSERT INTO async_eaten VALUES ($1, 'Cox')",
            &[(&job.id, Type::INT8)],
        )
        .await?;
        tx.commit().await
    });
    handle.await.unwrap().unwrap();
    assert_eq!(eaten(id).await, 1);
    assert_eq!(queue.len().await.unwrap(), 0);
}

/// Four tokio tasks, each with its own way of taking jobs, drain 1,000 jobs: every job is
/// taken exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_tasks_drain_a_thousand_jobs_exactly_once() {
    let Some(pq) = pq("four_tasks_drain_a_thousand_jobs_exactly_once").await else {
        return;
    };
    let queue = pq.queue("async/drain");
    queue.clear().await.unwrap();
    let data: Vec<Value> = (0..1000).map(|n| json!({ "n": n })).collect();
    queue.put_many(&data, Put::default()).await.unwrap();

    let wait = Duration::from_millis(500);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut got: Vec<i64> = vec![];
                match w {
                    // Plain gets.
                    0 | 1 => {
                        while let Some(job) = queue.get_timeout(wait).await.unwrap() {
                            got.push(job.data["n"].as_i64().unwrap());
                        }
                    }
                    // The stream.
                    2 => {
                        let mut jobs = queue.iter().timeout(wait);
                        while let Some(Some(job)) = jobs.next().await.map(Result::unwrap) {
                            got.push(job.data["n"].as_i64().unwrap());
                        }
                    }
                    // Transactions.
                    _ => loop {
                        let mut tx = queue.begin().await.unwrap();
                        let Some(job) = tx.get_timeout(wait).await.unwrap() else {
                            break;
                        };
                        got.push(job.data["n"].as_i64().unwrap());
                        tx.commit().await.unwrap();
                    },
                }
                got
            })
        })
        .collect();
    let mut all = vec![];
    let mut per_worker = vec![];
    for w in workers {
        let got = w.await.unwrap();
        per_worker.push(got.len());
        all.extend(got);
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 1000, "taken twice or lost: {per_worker:?}");
    assert_eq!(distinct, (0..1000).collect::<HashSet<i64>>());
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "every worker took jobs: {per_worker:?}"
    );
    assert_eq!(queue.len().await.unwrap(), 0);
}

#[tokio::test]
async fn task_handlers_and_failures() {
    let Some(pq) = pq("task_handlers_and_failures").await else {
        return;
    };
    pq.queue("async_tasks").clear().await.unwrap();
    let eaten = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = pq
        .tasks("async_tasks")
        .timeout(Duration::from_millis(200))
        .defaults(TaskOptions {
            max_retries: 1,
            retry_in: "1h".into(),
            ..TaskOptions::default()
        });
    let log = eaten.clone();
    tasks.register("eat", move |(kind,): (String,)| {
        let log = log.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            log.lock().unwrap().push(kind);
            Ok::<_, String>(())
        }
    });
    tasks.register("rot", |(kind,): (String,)| async move {
        Err::<(), _>(format!("the {kind} is rotten"))
    });
    tasks.register_call("explode", |_call| async move {
        if true {
            panic!("boom");
        }
        Ok::<_, String>(())
    });
    tasks.register_call("kw", |call| async move {
        assert_eq!(call.kwargs["slices"], json!(4));
        Ok::<_, String>(())
    });
    let eat = tasks.call("eat").arg("Cox").enqueue().await.unwrap();
    let late = tasks
        .call("eat")
        .arg("Fuji")
        .schedule_at("1h")
        .enqueue()
        .await
        .unwrap();
    let rot = tasks.call("rot").arg("Bramley").enqueue().await.unwrap();
    let explode = tasks
        .call("explode")
        .max_retries(0)
        .enqueue()
        .await
        .unwrap();
    let kw = tasks.call("kw").kwarg("slices", 4).enqueue().await.unwrap();
    // A handler name with parentheses is the extension's business: refused for external.
    let err = tasks.call("eat(text)").enqueue().await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("22023"), "{err}");

    assert_eq!(tasks.work_burst().await.unwrap(), 4);
    assert_eq!(*eaten.lock().unwrap(), vec!["Cox".to_string()]);

    let conn = pq.conn().await.unwrap();
    let row = |id: i64| {
        let conn = &conn;
        async move {
            conn.query_typed_one(
                "SELECT dequeued_at IS NULL, (data->>'retried')::int, data ? 'failed_at', \
                 coalesce(data->'errors'->-1->>'message', ''), \
                 schedule_at > now() + interval '50 minutes', data \
                 FROM queue WHERE id = $1",
                &[(&id, Type::INT8)],
            )
            .await
            .unwrap()
        }
    };
    let r = row(eat).await;
    assert!(!r.get::<_, bool>(0), "done");
    // The Python pq task shape, written by pq_put_task.
    let data: Value = r.get(5);
    assert_eq!(
        (
            &data["function"],
            &data["args"],
            &data["kwargs"],
            &data["max_retries"],
            &data["retry_in"]
        ),
        (
            &json!("eat"),
            &json!(["Cox"]),
            &json!({}),
            &json!(1),
            &json!("1h")
        )
    );
    let r = row(rot).await;
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
    let r = row(explode).await;
    assert!(r.get::<_, bool>(2), "failed for good");
    assert!(r.get::<_, String>(3).contains("boom"));
    let r = row(late).await;
    assert!(
        r.get::<_, bool>(0) && r.get::<_, bool>(4),
        "per-call schedule_at override"
    );
    assert!(!row(kw).await.get::<_, bool>(0), "kwargs handler done");

    // Another queue's worker, without handlers for these names, claims none of them.
    let other = pq.tasks("async_tasks").timeout(Duration::from_millis(100));
    tasks.call("eat").arg("Gala").enqueue().await.unwrap();
    assert_eq!(other.work_burst().await.unwrap(), 0);
    assert_eq!(tasks.work_burst().await.unwrap(), 1);
    assert_eq!(eaten.lock().unwrap().len(), 2);
}

/// Nothing is ever prepared as a named statement (PgBouncer in transaction pooling mode):
/// on a pool of one connection, after every kind of call, the session has none.
#[tokio::test]
async fn no_named_statements() {
    let Some(pq) = pq_sized("no_named_statements", 1).await else {
        return;
    };
    let queue = pq.queue("async/unnamed");
    queue.clear().await.unwrap();
    queue.put(&json!(1)).await.unwrap();
    queue.put_many(&[json!(2)], Put::default()).await.unwrap();
    queue.len().await.unwrap();
    queue.get().await.unwrap();
    queue.iter().next().await.unwrap().unwrap();
    let mut tx = queue.begin().await.unwrap();
    tx.get().await.unwrap();
    tx.put(&json!(3)).await.unwrap();
    tx.execute("SELECT $1::int", &[(&1i32, Type::INT4)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tasks = pq.tasks("async/unnamed").timeout(Duration::ZERO);
    tasks.register("noop", |(): ()| async { Ok::<_, String>(()) });
    tasks.call("noop").enqueue().await.unwrap();
    assert_eq!(tasks.work_burst().await.unwrap(), 1);
    let named: i64 = pq
        .conn()
        .await
        .unwrap()
        .simple_query("SELECT count(*) FROM pg_prepared_statements")
        .await
        .unwrap()
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .unwrap();
    assert_eq!(named, 0, "named statements were prepared");
}

#[tokio::test]
async fn operating_verbs_pause_limit_cancel_unique_schedule() {
    let Some(pq) = pq("operating_verbs").await else {
        return;
    };
    let queue = pq.queue("async/ops");
    queue.clear().await.unwrap();
    queue.resume().await.unwrap();
    let once = queue
        .put_with(&json!(1), Put::default().key("k"))
        .await
        .unwrap();
    assert_eq!(
        queue
            .put_with(&json!(2), Put::default().key("k"))
            .await
            .unwrap(),
        once
    );
    assert!(queue.pause().await.unwrap());
    assert!(queue.get_timeout(Duration::ZERO).await.unwrap().is_none());
    assert!(queue.resume().await.unwrap());
    assert_eq!(queue.set_limit(Some(3)).await.unwrap(), None);
    assert_eq!(queue.set_limit(None).await.unwrap(), Some(3));
    assert_eq!(pq.status(once).await.unwrap().as_deref(), Some("ready"));
    assert!(pq.cancel(once).await.unwrap());
    assert_eq!(pq.status(once).await.unwrap().as_deref(), Some("cancelled"));
    assert!(queue.get_timeout(Duration::ZERO).await.unwrap().is_none());
    pq.unschedule("async_ops_tick").await.unwrap();
    queue
        .schedule("async_ops_tick", "*/10 * * * *", &json!({}))
        .await
        .unwrap();
    assert!(pq.unschedule("async_ops_tick").await.unwrap());
    pq.run_schedules().await.unwrap(); // whatever is due elsewhere; it must not fail
}
