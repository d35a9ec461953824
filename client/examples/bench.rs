//! Client-crate loops for the benchmark suite (`scripts/bench`); prints one JSON line.
//!
//! ```text
//! bench put|get URL QUEUE CLIENTS OPS_PER_CLIENT
//! bench latency URL QUEUE SAMPLES            # one blocked getter
//! bench herd URL QUEUE SAMPLES WAITERS         # WAITERS blocked getters on the queue
//! ```

use pq_client::Pq;
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn pool(url: &str, size: u32) -> Pq {
    let manager =
        r2d2_postgres::PostgresConnectionManager::new(url.parse().expect("url"), postgres::NoTls);
    Pq::with_pool(
        r2d2::Pool::builder()
            .max_size(size)
            .build(manager)
            .expect("pool"),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, url, queue) = (args[1].as_str(), args[2].as_str(), args[3].as_str());
    match mode {
        "put" | "get" => {
            let clients: usize = args[4].parse().unwrap();
            let ops: usize = args[5].parse().unwrap();
            let pq = pool(url, clients as u32);
            let start = Arc::new(Barrier::new(clients + 1));
            let workers: Vec<_> = (0..clients)
                .map(|_| {
                    let q = pq.queue(queue);
                    let start = start.clone();
                    let mode = mode.to_string();
                    thread::spawn(move || {
                        start.wait();
                        for i in 0..ops {
                            if mode == "put" {
                                q.put(&json!({"n": i})).unwrap();
                            } else {
                                q.try_get()
                                    .unwrap()
                                    .expect("the queue was filled for the run");
                            }
                        }
                    })
                })
                .collect();
            start.wait();
            let t0 = Instant::now();
            workers.into_iter().for_each(|w| w.join().unwrap());
            let secs = t0.elapsed().as_secs_f64();
            println!("{}", json!({"ops": clients * ops, "secs": secs}));
        }
        "latency" => {
            let samples: usize = args[4].parse().unwrap();
            let pq = pool(url, 2);
            let q = pq.queue(queue);
            let mut latencies = Vec::new();
            for i in 0..samples {
                let getter = {
                    let q = q.clone();
                    thread::spawn(move || {
                        let job = q.get_timeout(Duration::from_secs(10)).unwrap();
                        (job.is_some(), Instant::now())
                    })
                };
                // Let the getter block in the server before the put.
                thread::sleep(Duration::from_millis(20));
                q.put(&json!({"n": i})).unwrap();
                let committed = Instant::now();
                let (got, returned) = getter.join().unwrap();
                assert!(got, "the blocked getter timed out");
                latencies
                    .push(returned.saturating_duration_since(committed).as_secs_f64() * 1000.0);
            }
            latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
            println!(
                "{}",
                json!({"p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0), "samples": samples})
            );
        }
        "herd" => {
            // Wake-up latency with many blocked getters on one queue: each put is taken by
            // whichever waiter wins; the latency is from the put's commit to that return.
            let samples: usize = args[4].parse().unwrap();
            let waiters: usize = args[5].parse().unwrap();
            let pq = pool(url, waiters as u32 + 1);
            let q = pq.queue(queue);
            let (tx, rx) = std::sync::mpsc::channel::<Instant>();
            let ready = Arc::new(Barrier::new(waiters + 1));
            for _ in 0..waiters {
                let (q, tx, ready) = (q.clone(), tx.clone(), ready.clone());
                thread::spawn(move || {
                    ready.wait();
                    loop {
                        if let Ok(Some(_)) = q.get_timeout(Duration::from_secs(60)) {
                            if tx.send(Instant::now()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
            ready.wait();
            thread::sleep(Duration::from_secs(2)); // all of them blocked in the server
            let mut latencies = Vec::new();
            for i in 0..samples {
                q.put(&json!({"n": i})).unwrap();
                let committed = Instant::now();
                let returned = rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("a waiter woke");
                latencies
                    .push(returned.saturating_duration_since(committed).as_secs_f64() * 1000.0);
                thread::sleep(Duration::from_millis(20)); // the winner blocks again
            }
            latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
            println!(
                "{}",
                json!({"p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0), "samples": samples, "waiters": waiters})
            );
            std::process::exit(0); // the waiters are still blocked
        }
        other => panic!("unknown mode {other}"),
    }
}
