//! The audit log at rest: one record per state-changing API call (who,
//! what, when, the outcome), read back by `GET log` and `GET log/export`,
//! emptied by `DELETE log`, pruned by retention.
//!
//! Records hold paths and statuses only, never bodies or query strings:
//! nothing here can carry a secret.

use async_trait::async_trait;

/// A record to append (its id comes from the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// When, microseconds since the epoch.
    pub ts_micros: i64,
    /// `INFO`, `WARN` or `ERROR`.
    pub level: String,
    /// `container`, `image`, `import`, `export`, `backup` or `system`.
    pub category: String,
    /// Who made the call (`-` when nobody is known, e.g. a refused login).
    pub user: String,
    /// What: method, path and outcome.
    pub message: String,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// The record.
    pub entry: NewAuditEntry,
}

/// Which records to read, newest first. Empty lists and `None` mean "all".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only records at or after this time (microseconds since the epoch).
    pub start_micros: Option<i64>,
    /// Only records at or before this time (microseconds since the epoch).
    pub end_micros: Option<i64>,
    /// Only records of this user.
    pub user: Option<String>,
    /// Only records of these levels.
    pub levels: Vec<String>,
    /// Only records of these categories.
    pub categories: Vec<String>,
    /// Only records whose message contains this text (case-insensitive for ASCII).
    pub text: Option<String>,
    /// At most this many (`None`: every one).
    pub limit: Option<u64>,
    /// Skip this many of the newest matching ones first.
    pub offset: u64,
}

/// Durable storage of the audit log, one driver per database.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Append `entries` in order, in one transaction.
    async fn append(&self, entries: &[NewAuditEntry]) -> anyhow::Result<()>;
    /// The records `filter` picks, newest (highest id) first.
    async fn list(&self, filter: &AuditFilter) -> anyhow::Result<Vec<AuditEntry>>;
    /// Delete every record; how many there were.
    async fn clear(&self) -> anyhow::Result<u64>;
    /// Delete the records older than `before_micros`; how many there were.
    async fn prune(&self, before_micros: i64) -> anyhow::Result<u64>;
}

/// `text` with SQL `LIKE`'s wildcards (`%`, `_`) and the escape `\` escaped,
/// wrapped in `%...%`: a substring match of the text as written.
pub fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A value bound to a query that [`where_clause`] built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// An integer.
    Int(i64),
    /// A text.
    Text(String),
}

/// The `WHERE ... ORDER BY id DESC LIMIT .. OFFSET ..` tail of a read of
/// `filter` over the columns `ts`, `level`, `category`, `username`,
/// `message`, with `placeholder(n)` spelling the n-th (from 1) bound value
/// in the driver's syntax, and the values to bind in order.
pub fn query_tail(
    filter: &AuditFilter,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<Bound>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    let bind = |v: Bound, values: &mut Vec<Bound>| {
        values.push(v);
        placeholder(values.len())
    };
    if let Some(s) = filter.start_micros {
        clauses.push(format!("ts >= {}", bind(Bound::Int(s), &mut values)));
    }
    if let Some(e) = filter.end_micros {
        clauses.push(format!("ts <= {}", bind(Bound::Int(e), &mut values)));
    }
    if let Some(u) = &filter.user {
        clauses.push(format!(
            "username = {}",
            bind(Bound::Text(u.clone()), &mut values)
        ));
    }
    for (column, list) in [("level", &filter.levels), ("category", &filter.categories)] {
        if !list.is_empty() {
            let marks: Vec<String> = list
                .iter()
                .map(|v| bind(Bound::Text(v.clone()), &mut values))
                .collect();
            clauses.push(format!("{column} IN ({})", marks.join(", ")));
        }
    }
    if let Some(t) = &filter.text {
        let mark = bind(Bound::Text(like_pattern(&t.to_lowercase())), &mut values);
        clauses.push(format!("lower(message) LIKE {mark} ESCAPE '\\'"));
    }
    let mut sql = String::new();
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    let limit = filter
        .limit
        .map_or(i64::MAX, |l| l.min(i64::MAX as u64) as i64);
    let offset = filter.offset.min(i64::MAX as u64) as i64;
    let l = bind(Bound::Int(limit), &mut values);
    let o = bind(Bound::Int(offset), &mut values);
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {l} OFFSET {o}"));
    (sql, values)
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_match_the_text_as_written() {
        assert_eq!(super::like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    #[test]
    fn the_tail_binds_each_filter_once() {
        let f = super::AuditFilter {
            start_micros: Some(1),
            user: Some("bob".into()),
            levels: vec!["INFO".into(), "WARN".into()],
            text: Some("Del".into()),
            limit: Some(5),
            ..Default::default()
        };
        let (sql, values) = super::query_tail(&f, |n| format!("${n}"));
        assert_eq!(
            sql,
            " WHERE ts >= $1 AND username = $2 AND level IN ($3, $4) AND \
             lower(message) LIKE $5 ESCAPE '\\' ORDER BY id DESC LIMIT $6 OFFSET $7"
        );
        assert_eq!(values.len(), 7);
        assert_eq!(values[4], super::Bound::Text("%del%".into()));
    }
}
