//! The `app-store` interface: installed applications' folders and records.

use async_trait::async_trait;

use super::Backend;
use crate::runtime::{CallContext, RtResult};

calls! {
    "app-store":
    RECORD = "record", RECORDS = "records", FOLDER = "folder",
    INSTALL_TEMPLATE = "install-template", READ_FILE = "read-file", WRITE_FILE = "write-file",
    REMOVE = "remove",
}

/// A file of an application's folder: the application and the path in its
/// folder (`app-store.read-file`, `app-store.write-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFile {
    /// The application's name.
    pub app: String,
    /// The file's path, relative to the application's folder.
    pub path: String,
}

impl AppFile {
    /// File `path` of application `app`.
    pub fn new(app: impl Into<String>, path: impl Into<String>) -> AppFile {
        AppFile {
            app: app.into(),
            path: path.into(),
        }
    }
}

/// What `app-store.install-template` installs: template `template`'s files
/// into application `app`'s folder, which must be new unless `replace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallTemplate {
    /// The application's name.
    pub app: String,
    /// The template's name.
    pub template: String,
    /// Overwrite the files of an existing application (else its folder must be new).
    pub replace: bool,
}

/// A backend for the `app-store` interface. The lookups (`record`,
/// `records`, `folder`) are allowed in `validate`: they take no [`CallContext`].
#[async_trait]
#[allow(unused_variables)]
pub trait AppFolders: Backend {
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
    async fn app_install_template(&self, cx: &CallContext, req: InstallTemplate) -> RtResult<()> {
        Err(self.unsupported(INSTALL_TEMPLATE))
    }
    /// A text file of an application's folder.
    async fn app_read_file(&self, cx: &CallContext, file: AppFile) -> RtResult<String> {
        Err(self.unsupported(READ_FILE))
    }
    /// Write `text` to a file of an application's folder.
    async fn app_write_file(&self, cx: &CallContext, file: AppFile, text: String) -> RtResult<()> {
        Err(self.unsupported(WRITE_FILE))
    }
    /// Remove an application's folder.
    async fn app_remove(&self, cx: &CallContext, name: String) -> RtResult<()> {
        Err(self.unsupported(REMOVE))
    }
}
