//! One mapping from a stored row to a [`Task`], shared by every driver: the
//! columns it reads, in one order, and how each becomes a field. A driver
//! only says how to read one column of its rows ([`TaskRow`]).

use super::model::{JsonText, Task, TaskState};

/// The columns [`task_from_row`] reads, in its order (a macro, so that
/// statements built at compile time can include them). A store of several
/// nodes selects `node` after them, at [`COLUMN_COUNT`].
macro_rules! row_columns {
    () => {
        "id, category, state, detail_state, progress, result, deletable, username, params, init, started, ended, name"
    };
}
pub(crate) use row_columns;

/// The columns a task is read from (`row_columns!`).
pub const COLUMNS: &str = row_columns!();
/// How many columns [`COLUMNS`] names: the position of the next one.
pub const COLUMN_COUNT: usize = 13;

/// A row of a driver, read by position as [`COLUMNS`] orders it.
pub trait TaskRow {
    /// The driver's error.
    type Error;
    /// A 64-bit integer column.
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    /// A 32-bit integer column.
    fn int32(&self, i: usize) -> Result<i32, Self::Error>;
    /// A nullable 64-bit integer column.
    fn maybe_int(&self, i: usize) -> Result<Option<i64>, Self::Error>;
    /// A boolean column.
    fn flag(&self, i: usize) -> Result<bool, Self::Error>;
    /// A text column.
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    /// A text column holding JSON.
    fn json(&self, i: usize) -> Result<JsonText, Self::Error>;
    /// A text column holding a [`TaskState`] as [`TaskState::as_str`] spells it.
    fn state(&self, i: usize) -> Result<TaskState, Self::Error>;
    /// The node that runs the task: `None` for a store of one node.
    fn node(&self) -> Result<Option<String>, Self::Error>;
}

/// The task a row of [`COLUMNS`] holds.
pub fn task_from_row<R: TaskRow>(r: &R) -> Result<Task, R::Error> {
    let state = r.state(2)?;
    Ok(Task {
        id: r.int(0)?,
        category: r.text(1)?,
        state,
        detail_state: r.text(3)?,
        progress: r.int32(4)?,
        // Container Station shows `result` once the task has ended.
        result: if state.is_finished() {
            Some(r.int32(5)?)
        } else {
            None
        },
        deletable: r.flag(6)?,
        user: r.text(7)?,
        params: r.json(8)?,
        init: r.int(9)?,
        start: r.maybe_int(10)?,
        end: r.maybe_int(11)?,
        name: r.text(12)?,
        node: r.node()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_count_counts_the_columns() {
        assert_eq!(COLUMNS.split(", ").count(), COLUMN_COUNT);
    }
}
