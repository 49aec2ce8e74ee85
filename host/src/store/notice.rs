//! What one node tells the others about tasks: the store's notices, with
//! no driver's types. The PostgreSQL driver carries them as the JSON payload
//! of a `NOTIFY`; a store of one node has none.

use serde::{Deserialize, Serialize};

/// Most task ids in one notice: 256 ids of up to 20 characters each, with
/// node names of up to 255 bytes, fit a payload well under 8,000 bytes.
pub const MAX_NOTICE_IDS: usize = 256;

/// What one node tells the others, as the JSON payload of a `NOTIFY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// Waiting tasks for `node` were stored: its node claims.
    Submitted {
        /// The tasks' node.
        node: String,
        /// Task ids, increasing.
        ids: Vec<i64>,
        /// The node that stored it.
        origin: String,
    },
    /// Tasks changed (claimed, progressed, ended, deleted).
    Changed {
        /// Task ids.
        ids: Vec<i64>,
        /// The node that changed them.
        origin: String,
    },
    /// Cancel a running task of `node` (a `DELETE` sent to another node).
    Cancel {
        /// The node running it.
        node: String,
        /// Task id.
        id: i64,
    },
    /// Schedules were created, resumed or deleted: each node's scheduler
    /// reads its next wake-up again.
    Schedules {
        /// The node that changed them.
        origin: String,
    },
    /// Webhook deliveries were recorded: each node's sender claims what is due.
    Deliveries {
        /// The node that recorded them.
        origin: String,
    },
    /// The listener reconnected: notifications may have been missed.
    Resync,
}

impl Notice {
    /// The payload of the `NOTIFY`.
    pub fn payload(&self) -> String {
        serde_json::to_string(self).expect("a notice serialises")
    }

    /// This notice as notices of at most [`MAX_NOTICE_IDS`] ids each, so
    /// that every payload stays under PostgreSQL's 8,000-byte limit however
    /// many tasks one transaction touched.
    pub fn split(self) -> Vec<Notice> {
        match self {
            Notice::Submitted { node, ids, origin } if ids.len() > MAX_NOTICE_IDS => ids
                .chunks(MAX_NOTICE_IDS)
                .map(|c| Notice::Submitted {
                    node: node.clone(),
                    ids: c.to_vec(),
                    origin: origin.clone(),
                })
                .collect(),
            Notice::Changed { ids, origin } if ids.len() > MAX_NOTICE_IDS => ids
                .chunks(MAX_NOTICE_IDS)
                .map(|c| Notice::Changed {
                    ids: c.to_vec(),
                    origin: origin.clone(),
                })
                .collect(),
            other => vec![other],
        }
    }
}
