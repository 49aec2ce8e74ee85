//! WIT versions of the `category` world: which one a component was built
//! against, and how a component of the older one runs on this host.
//!
//! 0.2.0 changed only the `executor` export (`description` gained
//! `params-schema`); 0.3.0 only added functions to imported interfaces. So
//! what an older component imports is a subset of the current interfaces:
//! its imports are renamed to the current version before it is compiled
//! (wasmtime still type-checks every import against the host's definitions,
//! so a real difference would fail to load, not misbehave), and its export
//! is bound with the bindings of its own version, whose `describe` answer
//! becomes a current [`Description`] (a 0.1.0 one without a params schema).

use anyhow::Context as _;
use wasm_encoder::reencode::{ReencodeComponent, RoundtripReencoder};
use wasmparser::{Chunk, Parser, Payload};
use wasmtime::component::{ComponentExportIndex, InstancePre, TypedFunc};
use wasmtime::Store;

use super::bindings::{v0_1_0, v0_2_0, CategoryPre, Description, WitError, WIT_VERSION};
use super::state::PluginState;

/// Prefix of every interface of the package.
const PACKAGE: &str = "stevedore:plugin/";

/// A version of the `category` world that this host loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldVersion {
    /// The current one, [`WIT_VERSION`].
    Current,
    /// 0.2.0: the imported interfaces lack 0.3.0's functions.
    V0_2_0,
    /// 0.1.0: no params schema.
    V0_1_0,
}

impl WorldVersion {
    /// Every version this host loads, newest first.
    pub const ALL: [WorldVersion; 3] = [
        WorldVersion::Current,
        WorldVersion::V0_2_0,
        WorldVersion::V0_1_0,
    ];

    /// The package version, e.g. `0.2.0`.
    pub fn number(self) -> &'static str {
        match self {
            WorldVersion::Current => WIT_VERSION,
            WorldVersion::V0_2_0 => "0.2.0",
            WorldVersion::V0_1_0 => "0.1.0",
        }
    }

    /// The executor export a component of this version has.
    pub fn executor_export(self) -> String {
        format!("{PACKAGE}executor@{}", self.number())
    }
}

/// What a component's binary says before it is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Top-level import names, as in the file.
    pub imports: Vec<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
}

impl Shape {
    /// Read the top-level imports and exports of a component.
    pub fn read(bytes: &[u8]) -> anyhow::Result<Shape> {
        let mut shape = Shape {
            imports: Vec::new(),
            exports: Vec::new(),
        };
        for payload in top_level(bytes)? {
            match payload? {
                Payload::ComponentImportSection(s) => {
                    for import in s {
                        shape.imports.push(import?.name.0.to_string());
                    }
                }
                Payload::ComponentExportSection(s) => {
                    for export in s {
                        shape.exports.push(export?.name.0.to_string());
                    }
                }
                _ => {}
            }
        }
        Ok(shape)
    }

    /// The world version whose executor the component exports.
    pub fn version(&self) -> Option<WorldVersion> {
        WorldVersion::ALL
            .into_iter()
            .find(|v| self.exports.contains(&v.executor_export()))
    }
}

/// The top-level payloads of a component, nested modules and components
/// skipped whole.
fn top_level(bytes: &[u8]) -> anyhow::Result<Vec<anyhow::Result<Payload<'_>>>> {
    let mut parser = Parser::new(0);
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (consumed, payload) = match parser.parse(rest, true)? {
            Chunk::Parsed { consumed, payload } => (consumed, payload),
            Chunk::NeedMoreData(_) => anyhow::bail!("truncated component"),
        };
        rest = &rest[consumed..];
        if let Payload::ModuleSection {
            unchecked_range, ..
        }
        | Payload::ComponentSection {
            unchecked_range, ..
        } = &payload
        {
            rest = &rest[unchecked_range.len()..];
        }
        let end = matches!(payload, Payload::End(_));
        out.push(Ok(payload));
        if end {
            break;
        }
    }
    Ok(out)
}

/// The component with every `stevedore:plugin/*@{from}` import renamed to
/// the current version; every other section is copied byte for byte.
pub fn upgrade_imports(bytes: &[u8], from: WorldVersion) -> anyhow::Result<Vec<u8>> {
    let old = format!("@{}", from.number());
    let new = format!("@{WIT_VERSION}");
    let mut component = wasm_encoder::Component::new();
    for payload in top_level(bytes)? {
        let payload = payload?;
        match &payload {
            Payload::Version { .. } | Payload::End(_) => {}
            Payload::ComponentImportSection(s) => {
                let mut section = wasm_encoder::ComponentImportSection::new();
                for import in s.clone() {
                    let import = import?;
                    let name = import.name.0;
                    let renamed = match name.strip_suffix(old.as_str()) {
                        Some(base) if name.starts_with(PACKAGE) => format!("{base}{new}"),
                        _ => name.to_string(),
                    };
                    let ty = RoundtripReencoder
                        .component_type_ref(import.ty)
                        .context("re-encoding an import type")?;
                    section.import(&renamed, ty);
                }
                component.section(&section);
            }
            other => {
                let (id, range) = other
                    .as_section()
                    .context("unexpected payload at the top of a component")?;
                component.section(&wasm_encoder::RawSection {
                    id,
                    data: &bytes[range],
                });
            }
        }
    }
    Ok(component.finish())
}

/// A plugin ready to instantiate, bound with the bindings of its version.
///
/// `describe` goes through the generated bindings, which look up and
/// type-check every export of the `executor` interface (so a component
/// whose exports do not match fails at load, where `describe` runs first).
/// `validate` and `run` look up only the one function they call, from an
/// index found once here: loading every export on every call cost about 6%
/// of an instance's instructions (plugins bench, `instantiate noop`).
pub struct VersionedPre {
    bound: Bound,
    validate: ComponentExportIndex,
    run: ComponentExportIndex,
}

/// The generated bindings of one world version.
enum Bound {
    /// Built against the current WIT.
    Current(CategoryPre<PluginState>),
    /// Built against 0.2.0.
    V0_2_0(v0_2_0::CategoryPre<PluginState>),
    /// Built against 0.1.0.
    V0_1_0(v0_1_0::CategoryPre<PluginState>),
}

/// `validate: func(params: string) -> result<_, error>` (same in every version).
type ValidateFn<'a> = TypedFunc<(&'a str,), (Result<(), WitError>,)>;
/// `run: func() -> result<option<string>, error>` (same in every version).
type RunFn = TypedFunc<(), (Result<Option<String>, WitError>,)>;

impl VersionedPre {
    /// Bind `pre` with the bindings of `version`.
    pub fn new(version: WorldVersion, pre: InstancePre<PluginState>) -> anyhow::Result<Self> {
        let component = pre.component();
        let interface = version.executor_export();
        let executor = component
            .get_export_index(None, &interface)
            .with_context(|| format!("no exported instance named `{interface}`"))?;
        let function = |name: &str| {
            component
                .get_export_index(Some(&executor), name)
                .with_context(|| format!("`{interface}` does not export `{name}`"))
        };
        let (validate, run) = (function("validate")?, function("run")?);
        let bound = match version {
            WorldVersion::Current => Bound::Current(CategoryPre::new(pre)?),
            WorldVersion::V0_2_0 => Bound::V0_2_0(v0_2_0::CategoryPre::new(pre)?),
            WorldVersion::V0_1_0 => Bound::V0_1_0(v0_1_0::CategoryPre::new(pre)?),
        };
        Ok(VersionedPre {
            bound,
            validate,
            run,
        })
    }

    fn instance_pre(&self) -> &InstancePre<PluginState> {
        match &self.bound {
            Bound::Current(pre) => pre.instance_pre(),
            Bound::V0_2_0(pre) => pre.instance_pre(),
            Bound::V0_1_0(pre) => pre.instance_pre(),
        }
    }

    /// Instantiate and call `describe`; a 0.1.0 answer has no params schema.
    pub async fn describe(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Description> {
        match &self.bound {
            Bound::Current(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .stevedore_plugin_executor()
                    .call_describe(&mut *store)
                    .await
            }
            Bound::V0_2_0(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let old = instance
                    .stevedore_plugin_executor()
                    .call_describe(&mut *store)
                    .await?;
                Ok(Description {
                    name: old.name,
                    deletable: old.deletable,
                    capabilities: old.capabilities,
                    summary: old.summary,
                    secret_fields: old.secret_fields,
                    params_schema: old.params_schema,
                })
            }
            Bound::V0_1_0(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let old = instance
                    .stevedore_plugin_executor()
                    .call_describe(&mut *store)
                    .await?;
                Ok(Description {
                    name: old.name,
                    deletable: old.deletable,
                    capabilities: old.capabilities,
                    summary: old.summary,
                    secret_fields: old.secret_fields,
                    params_schema: None,
                })
            }
        }
    }

    /// Instantiate only, calling nothing.
    pub async fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<()> {
        self.instance_pre().instantiate_async(&mut *store).await?;
        Ok(())
    }

    /// Instantiate and call `validate(params)`.
    pub async fn validate(
        &self,
        store: &mut Store<PluginState>,
        params: &str,
    ) -> wasmtime::Result<Result<(), WitError>> {
        let instance = self.instance_pre().instantiate_async(&mut *store).await?;
        let validate: ValidateFn<'_> = instance.get_typed_func(&mut *store, self.validate)?;
        let (result,) = validate.call_async(&mut *store, (params,)).await?;
        Ok(result)
    }

    /// Instantiate and call `run()`.
    pub async fn run(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<Result<Option<String>, WitError>> {
        let instance = self.instance_pre().instantiate_async(&mut *store).await?;
        let run: RunFn = instance.get_typed_func(&mut *store, self.run)?;
        let (result,) = run.call_async(&mut *store, ()).await?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component importing three instances and exporting the first as
    /// a 0.1.0 executor.
    fn sample() -> Vec<u8> {
        use wasm_encoder::{
            Component, ComponentExportKind, ComponentExportSection, ComponentImportSection,
            ComponentTypeRef, ComponentTypeSection, InstanceType,
        };
        let mut component = Component::new();
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        component.section(&types);
        let mut imports = ComponentImportSection::new();
        for name in [
            "stevedore:plugin/types@0.1.0",
            "wasi:cli/stdout@0.2.6",
            "acme:other/thing@0.1.0",
        ] {
            imports.import(name, ComponentTypeRef::Instance(0));
        }
        component.section(&imports);
        let mut exports = ComponentExportSection::new();
        exports.export(
            "stevedore:plugin/executor@0.1.0",
            ComponentExportKind::Instance,
            0,
            None,
        );
        component.section(&exports);
        component.finish()
    }

    #[test]
    fn reads_imports_exports_and_version() {
        let bytes = sample();
        let shape = Shape::read(&bytes).unwrap();
        assert_eq!(
            shape.imports,
            [
                "stevedore:plugin/types@0.1.0",
                "wasi:cli/stdout@0.2.6",
                "acme:other/thing@0.1.0"
            ]
        );
        assert_eq!(shape.version(), Some(WorldVersion::V0_1_0));
    }

    #[test]
    fn renames_only_our_old_imports() {
        let bytes = sample();
        let upgraded = upgrade_imports(&bytes, WorldVersion::V0_1_0).unwrap();
        wasmparser::Validator::new()
            .validate_all(&upgraded)
            .unwrap();
        let shape = Shape::read(&upgraded).unwrap();
        assert_eq!(
            shape.imports,
            [
                format!("stevedore:plugin/types@{WIT_VERSION}").as_str(),
                "wasi:cli/stdout@0.2.6",
                "acme:other/thing@0.1.0"
            ]
        );
        assert_eq!(shape.exports, ["stevedore:plugin/executor@0.1.0"]);
    }
}
