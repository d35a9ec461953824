//! The client behind PgBouncer in transaction pooling mode (a pool of four server
//! connections), where each statement may land on another server connection: every statement
//! is one unnamed statement sent in one round trip. `scripts/test` starts PgBouncer and sets
//! PQ_POOLER_DSN; without it these tests only say so.

use pq_client::Pq;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn pq() -> Option<Pq> {
    let Ok(dsn) = std::env::var("PQ_POOLER_DSN") else {
        eprintln!("PQ_POOLER_DSN is not set: skipped (scripts/test sets it)");
        return None;
    };
    let manager =
        r2d2_postgres::PostgresConnectionManager::new(dsn.parse().unwrap(), postgres::NoTls);
    // More client connections than PgBouncer has server connections.
    Some(Pq::with_pool(
        r2d2::Pool::builder().max_size(12).build(manager).unwrap(),
    ))
}

/// Eight threads share a pool and drain 2,000 jobs through PgBouncer: each exactly once.
#[test]
fn a_pooled_client_drains_a_queue_from_threads_exactly_once() {
    let Some(pq) = pq() else { return };
    pq.create().unwrap();
    let queue = pq.queue("pooler_drain");
    queue.clear().unwrap();
    let data: Vec<_> = (0..2000).map(|n| json!({ "n": n })).collect();
    let put: HashSet<i64> = queue
        .put_many(&data, pq_client::Put::default())
        .unwrap()
        .into_iter()
        .collect();
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (pq, start) = (pq.clone(), start.clone());
            thread::spawn(move || {
                let queue = pq.queue("pooler_drain");
                start.wait();
                let mut got = Vec::new();
                loop {
                    // Half take jobs in transactions, half with plain gets.
                    let job = if i % 2 == 0 {
                        queue
                            .transaction(|tx| tx.get().map(|j| j.map(|j| j.id)))
                            .unwrap()
                    } else {
                        queue.get_timeout(Duration::ZERO).unwrap().map(|j| j.id)
                    };
                    match job {
                        Some(id) => got.push(id),
                        None => return got,
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().unwrap());
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 2000, "none twice");
    assert_eq!(distinct, put, "none lost");
    assert_eq!(queue.len().unwrap(), 0);
}

/// Blocking gets through PgBouncer wake when jobs are put, each job going to one getter.
#[test]
fn blocking_gets_behind_the_pooler_wake_on_puts() {
    let Some(pq) = pq() else { return };
    pq.create().unwrap();
    pq.queue("pooler_wait").clear().unwrap();
    let getters: Vec<_> = (0..3)
        .map(|_| {
            let pq = pq.clone();
            thread::spawn(move || {
                let t0 = Instant::now();
                let job = pq
                    .queue("pooler_wait")
                    .get_timeout(Duration::from_secs(10))
                    .unwrap();
                (job.map(|j| j.id), t0.elapsed())
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let queue = pq.queue("pooler_wait");
    let mut put = HashSet::new();
    for n in 0..3 {
        put.insert(queue.put(&json!({ "n": n })).unwrap());
    }
    let mut got = HashSet::new();
    for g in getters {
        let (id, waited) = g.join().unwrap();
        assert!(waited < Duration::from_secs(5), "woke after {waited:?}");
        got.insert(id.expect("each getter got a job"));
    }
    assert_eq!(got, put);
}
