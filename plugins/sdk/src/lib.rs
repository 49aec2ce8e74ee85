//! The guest side of the Stevedore plugin world, for plugin authors.
//!
//! A category is a type implementing [`Category`] plus one line,
//! `stevedore_sdk::category!(MyCategory);`. Params arrive as your own
//! `serde::Deserialize` type; type errors come back to the user as a 400
//! naming the field (`tag: invalid type: integer, expected a string`).
//! Deriving `schemars::JsonSchema` beside it gives the host the params'
//! JSON Schema (`describe()`), from which the server's OpenAPI document and
//! the dashboard's form are made; `///` comments become its descriptions.
//!
//! ```
//! use stevedore_sdk::{Category, Error, task};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Params {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! struct Hello;
//! impl Category for Hello {
//!     const NAME: &'static str = "hello";
//!     const SUMMARY: &'static str = "Say hello";
//!     type Params = Params;
//!     fn validate(p: &Params) -> Result<(), Error> {
//!         stevedore_sdk::check::name("name", &p.name)
//!     }
//!     fn run(p: Params) -> Result<Option<String>, Error> {
//!         task::progress(100, &format!("hello, {}", p.name));
//!         Ok(None)
//!     }
//! }
//! stevedore_sdk::category!(Hello);
//! ```

pub mod check;
pub mod health;
mod schema;

pub use schema::{schema_json, AnyParams};
/// The JSON Schema derive and types, re-exported for hand-written schemas.
pub use schemars;
/// Names the host spells too: labels (`contract::labels::OWNER`), files of
/// an application's folder, and the capability interfaces.
pub use stevedore_contract as contract;

/// Bindings generated from `wit/` (the `category` world).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "category",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "stevedore_sdk::bindings",
        generate_all,
    });
}

pub use bindings::exports::stevedore::plugin::executor::Description;
pub use bindings::stevedore::plugin::containers;
pub use bindings::stevedore::plugin::credentials;
pub use bindings::stevedore::plugin::images;
pub use bindings::stevedore::plugin::types::{Credential, Error, Level, RuntimeKind};
pub use bindings::stevedore::plugin::{app_store, networks, repository, volumes};

/// A task category. Implement it and export it with [`category!`].
pub trait Category {
    /// Category name, as in `POST background/{name}`.
    const NAME: &'static str;
    /// One line saying what the category does.
    const SUMMARY: &'static str;
    /// Whether a running task may be deleted (it is cancelled first).
    const DELETABLE: bool = false;
    /// Interfaces the plugin uses besides `task` (`images`, `containers`,
    /// `credentials`, and for applications `networks`, `volumes`,
    /// `repository`, `app-store`; [`contract::capabilities::ALL`]). The
    /// host grants a plugin at most what it declares here: importing an
    /// interface not listed is refused at load.
    const CAPABILITIES: &'static [&'static str] = &[];
    /// Params fields whose values are secret (`password` always is).
    const SECRET_FIELDS: &'static [&'static str] = &[];
    /// The params, decoded from the submitted JSON; their JSON Schema is
    /// what `describe()` reports.
    type Params: serde::de::DeserializeOwned + schemars::JsonSchema;
    /// The params' JSON Schema as `describe()` reports it: by default the
    /// schema of [`Category::Params`]. Override it when `Params` is looser
    /// than what the category accepts (a raw JSON object checked by hand).
    fn params_schema() -> String {
        schema_json::<Self::Params>()
    }
    /// Check decoded params; runs at submit time and must not touch the runtime.
    fn validate(params: &Self::Params) -> Result<(), Error>;
    /// Run the task.
    fn run(params: Self::Params) -> Result<Option<String>, Error>;
}

/// Decode params JSON into `T`, naming the offending field on failure.
pub fn decode<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends " at line L column C"; the field name says more.
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        if path == "." || path.is_empty() {
            Error::InvalidParams(format!("params: {msg}"))
        } else {
            Error::InvalidParams(format!("{path}: {msg}"))
        }
    })
}

/// For tests: the message of an `invalid-params` error; panics, naming
/// `input`, on success or any other error.
pub fn expect_invalid<T: std::fmt::Debug>(
    input: impl std::fmt::Display,
    result: Result<T, Error>,
) -> String {
    match result {
        Err(Error::InvalidParams(m)) => m,
        other => panic!("expected invalid-params for {input}, got {other:?}"),
    }
}

impl Error {
    /// Bad input in `field`: `field: message`.
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Error {
        Error::InvalidParams(format!("{field}: {message}"))
    }
}

/// The current task: params, progress, log, cancellation.
pub mod task {
    pub use crate::bindings::stevedore::plugin::task::{cancelled, id, log, params, sleep, user};
    use crate::Level;

    /// From `validate`: mark the params value at `pointer` (a JSON Pointer,
    /// e.g. `/binding/admin_password`) secret, so the host shows it as
    /// `"******"` and keeps it only sealed. Fields named in
    /// [`crate::Category::SECRET_FIELDS`] need no mark.
    pub fn mark_secret(pointer: &str) {
        crate::bindings::stevedore::plugin::task::mark_secret(pointer)
    }

    /// The JSON Pointer of `key` in the object at `parent` (a pointer
    /// itself, `""` for the params): `~` and `/` escaped as RFC 6901 says.
    pub fn pointer(parent: &str, key: &str) -> String {
        format!("{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
    }

    /// Report progress (`percent` -1 for unknown, else 0..=100) with a detail line.
    pub fn progress(percent: i8, detail: &str) {
        crate::bindings::stevedore::plugin::task::progress(percent, detail)
    }

    /// Log at info level.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }

    /// Return `Err(Error::Cancelled)` when the task was cancelled.
    pub fn check_cancelled() -> Result<(), crate::Error> {
        if cancelled() {
            Err(crate::Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[doc(hidden)]
pub fn __describe<C: Category>() -> Description {
    let mut capabilities = vec![contract::capabilities::TASK.to_string()];
    capabilities.extend(C::CAPABILITIES.iter().map(|c| c.to_string()));
    Description {
        name: C::NAME.to_string(),
        deletable: C::DELETABLE,
        capabilities,
        summary: C::SUMMARY.to_string(),
        secret_fields: C::SECRET_FIELDS.iter().map(|c| c.to_string()).collect(),
        params_schema: Some(C::params_schema()),
    }
}

#[doc(hidden)]
pub fn __validate<C: Category>(json: &str) -> Result<(), Error> {
    C::validate(&decode::<C::Params>(json)?)
}

#[doc(hidden)]
pub fn __run<C: Category>() -> Result<Option<String>, Error> {
    let params = decode::<C::Params>(&task::params())?;
    C::validate(&params)?;
    C::run(params)
}

/// Export a [`Category`] implementation as the component's `executor`.
#[macro_export]
macro_rules! category {
    ($category:ty) => {
        #[doc(hidden)]
        pub struct __StevedoreExecutor;
        impl $crate::bindings::exports::stevedore::plugin::executor::Guest for __StevedoreExecutor {
            fn describe() -> $crate::Description {
                $crate::__describe::<$category>()
            }
            fn validate(params: String) -> Result<(), $crate::Error> {
                $crate::__validate::<$category>(&params)
            }
            fn run() -> Result<Option<String>, $crate::Error> {
                $crate::__run::<$category>()
            }
        }
        // Only a wasm build exports the world's functions; a native build (for
        // the plugin's unit tests) links as an ordinary library.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(__StevedoreExecutor with_types_in $crate::bindings);
    };
}
