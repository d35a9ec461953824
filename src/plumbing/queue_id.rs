//! A queue's name in shared memory: (database, table, queue name), fixed size, for the tables
//! kept there when pq is preloaded (`heads`, `metrics`). Databases made from one template share
//! table OIDs, so the database is part of it.

use pgrx::prelude::*;

/// Longest queue name kept in shared memory; longer ones are not tracked there.
pub const NAME_MAX: usize = 64;

/// (database, table, queue) in a fixed-size slot; all zeros: a free slot.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct QueueId {
    db: u32,
    table: u32,
    len: u8,
    name: [u8; NAME_MAX],
}

impl QueueId {
    /// A free slot's.
    pub const FREE: QueueId = QueueId {
        db: 0,
        table: 0,
        len: 0,
        name: [0; NAME_MAX],
    };

    /// The id of (this database, `table`, `queue`); `None` for a name longer than [`NAME_MAX`].
    ///
    /// ```ignore
    /// let id = QueueId::of(table.oid, "apples").expect("a short name");
    /// ```
    pub fn of(table: pg_sys::Oid, queue: &str) -> Option<QueueId> {
        let bytes = queue.as_bytes();
        if bytes.len() > NAME_MAX {
            return None;
        }
        let mut id = QueueId {
            db: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            table: table.to_u32(),
            len: bytes.len() as u8,
            ..QueueId::FREE
        };
        id.name[..bytes.len()].copy_from_slice(bytes);
        Some(id)
    }

    /// Whether the slot is in use.
    pub fn in_use(&self) -> bool {
        self.table != 0
    }

    /// Whether it is a queue of `table` in this database.
    pub fn in_table(&self, table: pg_sys::Oid) -> bool {
        self.in_use() && self.table == table.to_u32() && self.in_this_database()
    }

    /// Whether it is a queue of this database.
    pub fn in_this_database(&self) -> bool {
        self.db == unsafe { pg_sys::MyDatabaseId }.to_u32()
    }

    /// The queue's name.
    pub fn queue(&self) -> String {
        String::from_utf8_lossy(&self.name[..self.len as usize]).into_owned()
    }
}
