//! Extractors whose rejections are the API's JSON errors instead of axum's
//! plain text.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{path_error, query_error, AppError};

/// The axum extractor `E` (`Path`, `Query`), its rejection answered as an
/// [`AppError`]: a path segment that does not parse is a 400
/// `invalid_path`, a query that does not a 400 `invalid_query`. The same
/// idea as `axum-extra`'s `WithRejection`.
pub struct Api<E>(pub E);

impl<E, S> FromRequestParts<S> for Api<E>
where
    E: FromRequestParts<S>,
    AppError: From<E::Rejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Ok(Api(E::from_request_parts(parts, state).await?))
    }
}

impl From<PathRejection> for AppError {
    fn from(e: PathRejection) -> AppError {
        path_error(e)
    }
}

impl From<QueryRejection> for AppError {
    fn from(e: QueryRejection) -> AppError {
        query_error(e)
    }
}
