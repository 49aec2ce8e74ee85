//! The `app-store` interface: installed applications' folders and records.

use async_trait::async_trait;

use crate::runtime::{CallContext, Error, RtResult};

/// `app-store.record`.
pub const RECORD: &str = "app-store.record";
/// `app-store.records`.
pub const RECORDS: &str = "app-store.records";
/// `app-store.folder`.
pub const FOLDER: &str = "app-store.folder";
/// `app-store.install-template`.
pub const INSTALL_TEMPLATE: &str = "app-store.install-template";
/// `app-store.read-file`.
pub const READ_FILE: &str = "app-store.read-file";
/// `app-store.write-file`.
pub const WRITE_FILE: &str = "app-store.write-file";
/// `app-store.remove`.
pub const REMOVE: &str = "app-store.remove";

/// A backend for the `app-store` interface. The lookups (`record`,
/// `records`, `folder`) are allowed in `validate`: they take no [`CallContext`].
#[async_trait]
#[allow(unused_variables)]
pub trait AppFolders: Send + Sync {
    /// The answer of a call this backend does not serve.
    fn unsupported(&self, what: &str) -> Error {
        Error::Other(format!("{what} is not supported by this runtime"))
    }
    /// The record (JSON) of an installed application.
    async fn app_record(&self, name: String) -> RtResult<Option<String>> {
        Err(self.unsupported(RECORD))
    }
    /// Every installed application's `(name, record JSON)`.
    async fn app_records(&self) -> RtResult<Vec<(String, String)>> {
        Err(self.unsupported(RECORDS))
    }
    /// The folder of an application, as the host sees it.
    async fn app_folder(&self, name: String) -> RtResult<String> {
        Err(self.unsupported(FOLDER))
    }
    /// Copy a template's files into an application's folder.
    async fn app_install_template(
        &self,
        cx: &CallContext,
        name: String,
        template: String,
        replace: bool,
    ) -> RtResult<()> {
        Err(self.unsupported(INSTALL_TEMPLATE))
    }
    /// A text file of an application's folder.
    async fn app_read_file(
        &self,
        cx: &CallContext,
        name: String,
        path: String,
    ) -> RtResult<String> {
        Err(self.unsupported(READ_FILE))
    }
    /// Write a text file of an application's folder.
    async fn app_write_file(
        &self,
        cx: &CallContext,
        name: String,
        path: String,
        content: String,
    ) -> RtResult<()> {
        Err(self.unsupported(WRITE_FILE))
    }
    /// Remove an application's folder.
    async fn app_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        Err(self.unsupported(REMOVE))
    }
}
