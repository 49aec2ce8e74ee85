//! HTTP API: routes, login and sessions, JSON errors. OWNER: api helper.
