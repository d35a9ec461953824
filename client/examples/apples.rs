//! Python pq's apple examples, chapter by chapter, with the Rust client.
//!
//! ```text
//! DATABASE_URL="host=/tmp user=postgres" cargo run -p pq-client --example apples
//! ```

use pq_client::{Pq, Put};
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "host=localhost user=postgres".into());
    // Getting started: one class, a connection, create().
    let pq = Pq::new(postgres::Client::connect(&url, postgres::NoTls)?);
    pq.create()?;

    // Queues and methods.
    let queue = pq.queue("apples");
    queue.clear()?;
    queue.put(&json!({"kind": "Cox"}))?;
    queue.put(&json!({"kind": "Arthur Turner"}))?;
    queue.put(&json!({"kind": "Golden Delicious"}))?;
    let job = queue.get()?.expect("three apples are ready");
    eat(job.data["kind"].as_str().unwrap_or_default());
    println!("{job}");
    for job in queue.iter() {
        let Some(job) = job? else { break }; // None: nothing for a second
        eat(job.data["kind"].as_str().unwrap_or_default());
    }

    // Scheduling.
    queue.put_with(&json!({"kind": "Cox"}), Put::default().schedule_at("5m"))?;
    queue.put_with(
        &json!({"kind": "Jazz"}),
        Put::default().schedule_at(Duration::from_secs(1)),
    )?;
    let job = queue
        .get_timeout(Duration::from_secs(3))?
        .expect("due in a second");
    println!("after waiting: {}", job.data["kind"]);

    // Priority.
    queue.put_with(
        &json!({"kind": "Braeburn"}),
        Put::default().expected_at("2h"),
    )?;
    queue.put_with(&json!({"kind": "Fuji"}), Put::default().expected_at("5m"))?;
    queue.put_with(
        &json!({"kind": "Cox"}),
        Put::default().schedule_at("1h").expected_at("2h"),
    )?;
    println!(
        "expected first: {}",
        queue.try_get()?.expect("Fuji").data["kind"]
    );

    // Transactions: take a job, work it, write a result; an Err returns the job.
    let _ = queue.transaction(|tx| {
        let job = tx.get()?.expect("Braeburn");
        println!("took {} in a transaction that fails", job.data["kind"]);
        Err::<(), _>(pq_client::Error::Task {
            function: "eat".into(),
            message: "too sour".into(),
        })
    });
    println!(
        "back in the queue: {}",
        queue.try_get()?.expect("Braeburn again").data["kind"]
    );

    // Typed payloads instead of pickles.
    let typed = pq.typed_queue::<Apple>("apples/typed");
    typed.put(&Apple {
        kind: "Gala".into(),
    })?;
    let apple: Apple = typed.try_get()?.expect("one apple").payload()?;
    println!("typed: {apple:?}");

    // Tasks.
    let mut tasks = pq.tasks("default").timeout(Duration::from_millis(200));
    tasks.register("eat", |(kind,): (String,)| {
        eat(&kind);
        Ok::<_, String>(())
    });
    tasks.call("eat").arg("Cox").enqueue()?;
    tasks
        .call("eat")
        .arg("Fuji")
        .expected_at("2m")
        .schedule_at("0s")
        .enqueue()?;
    println!("performed {} tasks", tasks.work_burst()?);
    Ok(())
}
