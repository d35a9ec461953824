//! Jobs: what `get` returns, as Python pq's `Job`.

use crate::Result;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;
use std::time::SystemTime;

/// A job taken from a queue. `T` is the queue's payload type (`serde_json::Value` for an
/// untyped queue); [`Job::payload`] decodes `data` as it.
///
/// Its `Display` is Python pq's repr:
/// `<pq.Job id=77709 size=1 enqueued_at="2014-02-21T16:22:06Z" schedule_at=None>`.
#[derive(Clone, Debug)]
pub struct Job<T = Value> {
    pub id: i64,
    pub data: Value,
    /// Length of the JSON text.
    pub size: i32,
    pub enqueued_at: SystemTime,
    pub schedule_at: Option<SystemTime>,
    pub expected_at: Option<SystemTime>,
    pub(crate) payload: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Job<T> {
    /// The data as the queue's payload type.
    ///
    /// ```no_run
    /// # #[derive(serde::Deserialize, serde::Serialize)] struct Apple { kind: String }
    /// # let pq: pq_client::Pq = todo!();
    /// let apples = pq.typed_queue::<Apple>("apples");
    /// if let Some(job) = apples.try_get()? {
    ///     let apple: Apple = job.payload()?;
    /// }
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn payload(&self) -> Result<T> {
        self.data_as()
    }
}

impl<T> Job<T> {
    /// The data decoded as any type.
    ///
    /// ```no_run
    /// # let job: pq_client::Job = todo!();
    /// let kind: std::collections::HashMap<String, String> = job.data_as()?;
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn data_as<U: DeserializeOwned>(&self) -> Result<U> {
        Ok(U::deserialize(&self.data)?)
    }

    /// The data of a Python pq pickle queue (`pq['jobs/pickle']`, stored in queue `jobs`): a
    /// JSON string holding a protocol-0 pickle, decoded into `U` for plain data (dicts, lists,
    /// strings, numbers, booleans, None). Pickled class instances and other Python objects
    /// cannot be decoded and give [`Error::Pickle`](crate::Error::Pickle).
    ///
    /// ```no_run
    /// # let pq: pq_client::Pq = todo!();
    /// // Python: pq['jobs/pickle'].put({'kind': 'Cox'})
    /// if let Some(job) = pq.queue("jobs").try_get()? {
    ///     let apple: std::collections::HashMap<String, String> = job.unpickle()?;
    /// }
    /// # Ok::<(), pq_client::Error>(())
    /// ```
    pub fn unpickle<U: DeserializeOwned>(&self) -> Result<U> {
        let text = self.data.as_str().ok_or_else(|| {
            crate::Error::Pickle(format!(
                "job {} is not a pickle: its data is {}, not a JSON string",
                self.id, self.data
            ))
        })?;
        // Python decoded the pickle's bytes as latin-1: each char is one byte.
        let bytes: Vec<u8> = text
            .chars()
            .map(|c| {
                u8::try_from(u32::from(c)).map_err(|_| {
                    crate::Error::Pickle(format!("job {}: {c:?} is not latin-1", self.id))
                })
            })
            .collect::<Result<_>>()?;
        serde_pickle::from_slice(&bytes, serde_pickle::DeOptions::new())
            .map_err(|e| crate::Error::Pickle(format!("job {}: {e}", self.id)))
    }

    pub(crate) fn from_row(row: &postgres::Row) -> Self {
        Job {
            id: row.get("id"),
            data: row.get("data"),
            size: row.get("size"),
            enqueued_at: row.get("enqueued_at"),
            schedule_at: row.get("schedule_at"),
            expected_at: row.get("expected_at"),
            payload: PhantomData,
        }
    }
}

impl<T> fmt::Display for Job<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |t: SystemTime| format!("\"{}\"", humantime::format_rfc3339_seconds(t));
        write!(
            f,
            "<pq.Job id={} size={} enqueued_at={} schedule_at={}>",
            self.id,
            self.size,
            time(self.enqueued_at),
            self.schedule_at.map_or("None".to_string(), time)
        )
    }
}
