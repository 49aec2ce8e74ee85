//! The `repository` interface: the catalog's application templates.
//! Configuration lookups, allowed in `validate`: they take no [`crate::runtime::CallContext`].

use async_trait::async_trait;

use super::Backend;
use crate::runtime::{RtResult, Template};

calls! { "repository": LIST = "list", GET = "get", READ_FILE = "read-file" }

/// A backend for the `repository` interface.
#[async_trait]
#[allow(unused_variables)]
pub trait Templates: Backend {
    /// The repository's application templates.
    async fn template_list(&self) -> RtResult<Vec<Template>> {
        Err(self.unsupported(LIST))
    }
    /// One application template by name.
    async fn template_get(&self, name: String) -> RtResult<Template> {
        Err(self.unsupported(GET))
    }
    /// A text file of a template.
    async fn template_read(&self, name: String, path: String) -> RtResult<String> {
        Err(self.unsupported(READ_FILE))
    }
}
