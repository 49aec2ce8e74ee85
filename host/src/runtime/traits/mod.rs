//! One small backend trait per WIT interface, as Spin's factors have one per
//! interface: [`Images`], [`Containers`], [`Networks`], [`Volumes`],
//! [`Templates`], [`AppFolders`], [`Credentials`]. A backend implements the
//! interfaces it serves and no others; [`Backends`] bundles one of each for
//! the plugin host and the container routes.
//!
//! Each file also names its calls once (`images::TAG` is `"images.tag"`):
//! the capability glue, the simulated runtime and the refusals use those names.
//! What a backend answers for a call it does not serve is [`Backend`]'s, one
//! answer for every interface it implements.

/// Names the calls of one interface once: `calls! { "images": TAG = "tag" }`
/// is `pub const TAG: &str = "images.tag";`, documented with that name.
macro_rules! calls {
    ($interface:literal: $($name:ident = $call:literal),+ $(,)?) => {
        $(
            #[doc = concat!("`", $interface, ".", $call, "`.")]
            pub const $name: &str = concat!($interface, ".", $call);
        )+
    };
}

pub mod app_folders;
pub mod containers;
pub mod credentials;
pub mod images;
pub mod networks;
pub mod templates;
pub mod volumes;

use std::sync::Arc;

pub use app_folders::{AppFile, AppFolders, InstallTemplate};
pub use containers::Containers;
pub use credentials::Credentials;
pub use images::Images;
pub use networks::Networks;
pub use templates::Templates;
pub use volumes::Volumes;

use super::{Error, RuntimeKind};

/// A container as a call names it: the runtime it lives in (what the router
/// routes on) and its id, unique id prefix or name (what the backend reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The runtime the container belongs to.
    pub kind: RuntimeKind,
    /// Its id, unique id prefix (12+ hex characters) or name.
    pub id: String,
}

impl ContainerRef {
    /// The container `id` of runtime `kind`.
    pub fn new(kind: RuntimeKind, id: impl Into<String>) -> ContainerRef {
        ContainerRef {
            kind,
            id: id.into(),
        }
    }
}

/// A network or volume to create (`networks.create`, `volumes.create`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Labelled {
    /// Its name.
    pub name: String,
    /// Its labels, as `(key, value)`.
    pub labels: Vec<(String, String)>,
}

/// The label a listing matches (`networks.list`, `volumes.list`): label
/// `key` with value `value`. The default (an empty key) matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Label {
    /// The label's key; empty: no filter.
    pub key: String,
    /// The value it must have.
    pub value: String,
}

impl Label {
    /// Label `key` with value `value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Label {
        Label {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// What every backend shares, whichever interfaces it serves: its answer
/// to a call it does not serve (each interface's default for such a call).
pub trait Backend: Send + Sync {
    /// The answer of a call this backend does not serve.
    fn unsupported(&self, what: &str) -> Error {
        Error::Unsupported(format!("{what} is not supported by this runtime"))
    }
}

/// What a runtime kind provides: its images and its containers. The router
/// holds one per [`RuntimeKind`].
pub trait Engine: Images + Containers {}

impl<T: Images + Containers + ?Sized> Engine for T {}

/// Every interface a backend can serve. A type serving all of them (the
/// simulated runtime, the policy guard) is bundled by [`Backends::all`].
pub trait AllInterfaces:
    Images + Containers + Networks + Volumes + Templates + AppFolders + Credentials
{
}

impl<T> AllInterfaces for T where
    T: Images + Containers + Networks + Volumes + Templates + AppFolders + Credentials + ?Sized
{
}

/// One backend per interface: what the plugin host and the container
/// routes call.
#[derive(Clone)]
pub struct Backends {
    /// `images`.
    pub images: Arc<dyn Images>,
    /// `containers`.
    pub containers: Arc<dyn Containers>,
    /// `networks`.
    pub networks: Arc<dyn Networks>,
    /// `volumes`.
    pub volumes: Arc<dyn Volumes>,
    /// `repository` (application templates).
    pub templates: Arc<dyn Templates>,
    /// `app-store` (installed applications' folders).
    pub apps: Arc<dyn AppFolders>,
    /// `credentials`.
    pub credentials: Arc<dyn Credentials>,
}

impl Backends {
    /// Backends that refuse every call, saying `reason`.
    pub fn unavailable(reason: impl Into<String>) -> Backends {
        let none = Arc::new(Unavailable {
            reason: reason.into(),
        });
        Backends {
            images: none.clone(),
            containers: none.clone(),
            networks: none.clone(),
            volumes: none.clone(),
            templates: Arc::new(NoAppStore),
            apps: Arc::new(NoAppStore),
            credentials: none,
        }
    }

    /// Every interface served by `backend`.
    pub fn all<T: AllInterfaces + 'static>(backend: Arc<T>) -> Backends {
        Backends {
            images: backend.clone(),
            containers: backend.clone(),
            networks: backend.clone(),
            volumes: backend.clone(),
            templates: backend.clone(),
            apps: backend.clone(),
            credentials: backend,
        }
    }
}

impl<T: AllInterfaces + 'static> From<Arc<T>> for Backends {
    fn from(backend: Arc<T>) -> Backends {
        Backends::all(backend)
    }
}

/// A backend that refuses every call of the interfaces it stands in for,
/// saying why: what a plugin sees where no engine could be set up.
pub struct Unavailable {
    /// Why there is no engine, e.g. "DOCKER_HOST `tcp://x`: only unix:// sockets are supported".
    pub reason: String,
}

impl Backend for Unavailable {
    fn unsupported(&self, what: &str) -> Error {
        Error::Runtime(format!("{what}: no container engine: {}", self.reason))
    }
}

impl Images for Unavailable {}
impl Containers for Unavailable {}
impl Networks for Unavailable {}
impl Volumes for Unavailable {}
impl Credentials for Unavailable {}

/// The application interfaces of a server without an application store.
pub struct NoAppStore;

impl Backend for NoAppStore {
    fn unsupported(&self, _what: &str) -> Error {
        Error::Unsupported("this server has no application store".into())
    }
}

impl Templates for NoAppStore {}
impl AppFolders for NoAppStore {}
