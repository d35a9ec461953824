//! `pq`: a command-line tool for operators, on top of the client crate.
//!
//! ```text
//! pq --database-url postgres://postgres@localhost/app put apples '{"kind":"Cox"}' --schedule-at 5m
//! pq get apples --timeout 5s
//! pq work default --burst        # perform SQL tasks (the extension's pq_work)
//! pq stats
//! pq pause apples; pq resume apples; pq limit apples 2; pq cancel 42; pq status 42
//! pq schedule nightly '0 3 * * *' reports '{"kind":"daily"}'; pq unschedule nightly
//! pq serve --listen 127.0.0.1:9187   # /metrics for Prometheus, / for the dashboard
//! ```

mod serve;

use clap::{Parser, Subcommand};
use postgres::types::Type;
use pq_client::{Pq, Put};
use std::process::ExitCode;
use std::time::Duration;

/// Operate pq queues: put and get jobs, perform SQL tasks, pause, limit and cancel, schedule
/// periodic jobs, show statistics.
#[derive(Parser)]
#[command(name = "pq", version, about)]
struct Cli {
    /// Connection string, e.g. postgres://user@localhost/db or "host=/tmp user=postgres".
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Queue table.
    #[arg(long, default_value = "queue")]
    table: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enqueue a JSON job; prints its id.
    Put {
        queue: String,
        /// The job's data, as JSON.
        data: String,
        /// Not ready before then: '5m', '1h 30m', or a timestamp.
        #[arg(long)]
        schedule_at: Option<String>,
        /// Priority: earlier first.
        #[arg(long)]
        expected_at: Option<String>,
        /// A unique job: while a job of the queue with this key is pending, prints its id and
        /// puts nothing.
        #[arg(long)]
        key: Option<String>,
    },
    /// Take (and consume) the next ready job; prints it as JSON, or nothing.
    Get {
        queue: String,
        /// How long to wait for a job: '0s', '5s', '1m'.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Perform SQL tasks of a queue with the extension's pq_work, committing after each.
    Work {
        queue: String,
        /// Stop when nothing is ready, instead of waiting for more.
        #[arg(long)]
        burst: bool,
    },
    /// Per-queue counts: ready, scheduled, in flight, done, cancelled; paused, limit.
    Stats,
    /// Pause a queue: it accepts puts, nothing takes its jobs.
    Pause { queue: String },
    /// Resume a paused queue.
    Resume { queue: String },
    /// Set a queue's concurrency limit ("none" removes it); prints the previous one.
    Limit { queue: String, n: String },
    /// Cancel a job: prints true if it was pending (or running, and is now stopped).
    Cancel { id: i64 },
    /// A job's status: ready, scheduled, in_flight, done, failed, cancelled.
    Status { id: i64 },
    /// Put a JSON job in a queue at every tick of a 5-field cron schedule (UTC); prints the
    /// next run.
    Schedule {
        name: String,
        cron: String,
        queue: String,
        #[arg(default_value = "{}")]
        data: String,
    },
    /// Remove a periodic job.
    Unschedule { name: String },
    /// Serve Prometheus metrics at /metrics and a dashboard at / (see the README).
    Serve {
        /// Address to listen on; the default binds to this machine only.
        #[arg(long, default_value = "127.0.0.1:9187")]
        listen: String,
        /// The token that actions (requeue, cancel, pause, resume) need; printed when random.
        #[arg(long, env = "PQ_TOKEN")]
        token: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pq: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    if let Command::Serve { listen, token } = &cli.command {
        return serve::run(&cli.database_url, &cli.table, listen, token.clone());
    }
    let client = postgres::Client::connect(&cli.database_url, postgres::NoTls)?;
    let pq = Pq::new(client).table(&cli.table);
    match cli.command {
        Command::Put {
            queue,
            data,
            schedule_at,
            expected_at,
            key,
        } => {
            let data: serde_json::Value = serde_json::from_str(&data)?;
            let opts = Put {
                schedule_at: schedule_at.map(Into::into),
                expected_at: expected_at.map(Into::into),
                key,
            };
            println!("{}", pq.queue(&queue).put_with(&data, opts)?);
        }
        Command::Get { queue, timeout } => {
            if let Some(job) = pq.queue(&queue).get_timeout(timeout)? {
                println!(
                    "{}",
                    serde_json::json!({"id": job.id, "data": job.data, "size": job.size})
                );
            }
        }
        Command::Work { queue, burst } => {
            // Burst: until nothing is ready. Otherwise forever: each CALL waits in the server
            // up to a minute for a next job and returns when none came.
            let mut c = pq.conn()?;
            let table = pq.table_name();
            loop {
                c.query_typed(
                    pq_client::sql::WORK_LOOP,
                    &[
                        (&queue, Type::TEXT),
                        (&burst, Type::BOOL),
                        (&table, Type::TEXT),
                    ],
                )?;
                if burst {
                    break;
                }
            }
        }
        Command::Stats => {
            let mut c = pq.conn()?;
            println!(
                "{:<24} {:>8} {:>10} {:>10} {:>10} {:>10} {:>7} {:>6} {:>16}",
                "queue",
                "ready",
                "scheduled",
                "in_flight",
                "done",
                "cancelled",
                "paused",
                "limit",
                "oldest_ready_age"
            );
            for r in c.query_typed(pq_client::sql::STATS, &[(&pq.table_name(), Type::TEXT)])? {
                let (q, a, b, f, d, age): (String, i64, i64, i64, i64, String) =
                    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
                let (x, p, l): (i64, bool, Option<i32>) = (r.get(6), r.get(7), r.get(8));
                let l = l.map_or("-".to_string(), |l| l.to_string());
                println!("{q:<24} {a:>8} {b:>10} {f:>10} {d:>10} {x:>10} {p:>7} {l:>6} {age:>16}");
            }
        }
        Command::Pause { queue } => println!("{}", pq.queue(&queue).pause()?),
        Command::Resume { queue } => println!("{}", pq.queue(&queue).resume()?),
        Command::Limit { queue, n } => {
            let n = match n.as_str() {
                "none" | "null" => None,
                n => Some(n.parse::<i32>().map_err(|e| {
                    format!("limit {n:?} is not a number ({e}): pass e.g. 2, or none")
                })?),
            };
            let old = pq.queue(&queue).set_limit(n)?;
            println!("{}", old.map_or("none".to_string(), |o| o.to_string()));
        }
        Command::Cancel { id } => println!("{}", pq.cancel(id)?),
        Command::Status { id } => {
            println!("{}", pq.status(id)?.unwrap_or_else(|| "unknown".into()))
        }
        Command::Schedule {
            name,
            cron,
            queue,
            data,
        } => {
            let data: serde_json::Value = serde_json::from_str(&data)?;
            let next = pq.queue(&queue).schedule(&name, &cron, &data)?;
            let next = humantime::format_rfc3339_seconds(next);
            println!("{next}");
        }
        Command::Unschedule { name } => println!("{}", pq.unschedule(&name)?),
        Command::Serve { .. } => unreachable!("served above"),
    }
    Ok(())
}
