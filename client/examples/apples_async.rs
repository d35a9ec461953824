//! Python pq's apple examples, chapter by chapter, with the async client (feature `async`):
//! `examples/apples.rs` over tokio-postgres and a deadpool pool.
//!
//! ```text
//! DATABASE_URL="host=/tmp user=postgres" cargo run -p pq-client --features async --example apples_async
//! ```

use futures::StreamExt;
use pq_client::asynchronous::Pq;
use pq_client::Put;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

#[derive(Serialize, Deserialize, Debug)]
struct Apple {
    kind: String,
}

fn eat(kind: &str) {
    println!("umm, {kind} apples taste good.");
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "host=localhost user=postgres".into());
    // Getting started: one class, a pool, create().
    let manager = deadpool_postgres::Manager::new(url.parse()?, tokio_postgres::NoTls);
    let pq = Pq::new(deadpool_postgres::Pool::builder(manager).build()?);
    pq.create().await?;

    // Queues and methods.
    let queue = pq.queue("apples");
    queue.clear().await?;
    queue.put(&json!({"kind": "Cox"})).await?;
    queue.put(&json!({"kind": "Arthur Turner"})).await?;
    queue.put(&json!({"kind": "Golden Delicious"})).await?;
    let job = queue.get().await?.expect("three apples are ready");
    eat(job.data["kind"].as_str().unwrap_or_default());
    println!("{job}");
    let mut jobs = queue.iter();
    while let Some(job) = jobs.next().await {
        let Some(job) = job? else { break }; // None: nothing for a second
        eat(job.data["kind"].as_str().unwrap_or_default());
    }

    // Many at once.
    let ids = queue
        .put_many(
            &[json!({"kind": "Elstar"}), json!({"kind": "Topaz"})],
            Put::default(),
        )
        .await?;
    println!("put {ids:?}; {} ready", queue.len().await?);
    queue.clear().await?;

    // Scheduling.
    queue
        .put_with(&json!({"kind": "Cox"}), Put::default().schedule_at("5m"))
        .await?;
    queue
        .put_with(
            &json!({"kind": "Jazz"}),
            Put::default().schedule_at(Duration::from_secs(1)),
        )
        .await?;
    let job = queue
        .get_timeout(Duration::from_secs(3))
        .await?
        .expect("due in a second");
    println!("after waiting: {}", job.data["kind"]);

    // Priority.
    queue
        .put_with(
            &json!({"kind": "Braeburn"}),
            Put::default().expected_at("2h"),
        )
        .await?;
    queue
        .put_with(&json!({"kind": "Fuji"}), Put::default().expected_at("5m"))
        .await?;
    queue
        .put_with(
            &json!({"kind": "Cox"}),
            Put::default().schedule_at("1h").expected_at("2h"),
        )
        .await?;
    println!(
        "expected first: {}",
        queue.try_get().await?.expect("Fuji").data["kind"]
    );

    // Transactions: take a job, work it, write a result; an Err returns the job.
    let _ = queue
        .transaction(|tx| {
            Box::pin(async move {
                let job = tx.get().await?.expect("Braeburn");
                println!("took {} in a transaction that fails", job.data["kind"]);
                Err::<(), _>(pq_client::Error::Task {
                    function: "eat".into(),
                    message: "too sour".into(),
                })
            })
        })
        .await;
    println!(
        "back in the queue: {}",
        queue.try_get().await?.expect("Braeburn again").data["kind"]
    );

    // Typed payloads instead of pickles.
    let typed = pq.typed_queue::<Apple>("apples/typed");
    typed
        .put(&Apple {
            kind: "Gala".into(),
        })
        .await?;
    let apple: Apple = typed.try_get().await?.expect("one apple").payload()?;
    println!("typed: {apple:?}");

    // Tasks.
    let mut tasks = pq.tasks("default").timeout(Duration::from_millis(200));
    tasks.register("eat", |(kind,): (String,)| async move {
        eat(&kind);
        Ok::<_, String>(())
    });
    tasks.call("eat").arg("Cox").enqueue().await?;
    tasks
        .call("eat")
        .arg("Fuji")
        .expected_at("2m")
        .schedule_at("0s")
        .enqueue()
        .await?;
    println!("performed {} tasks", tasks.work_burst().await?);
    Ok(())
}
