//! The `containers` interface on LXC: create, run, list, read and export
//! containers, and import an export as an image.

use async_trait::async_trait;
use serde_json::json;

use super::conf::Record;
use super::{
    conf, console, export, images, io_err, network, stats, subtree, tools, unpack, LxcRuntime,
    Parts, State,
};
use crate::runtime::archives::FORMAT;
use crate::runtime::output::Output;
use crate::runtime::{
    CallContext, ChangeSettings, ContainerEntry, ContainerLogs, ContainerRef, ContainerSpec,
    ContainerState, Containers, DeleteContainer, Error, ExportContainer, ExportSubtree,
    ImportImage, ImportSubtree, LogStream, RemoveContainer, RtResult, RuntimeKind, StopContainer,
    UsageQuery, Usages,
};

#[async_trait]
impl Containers for LxcRuntime {
    async fn container_create(&self, cx: &CallContext, spec: ContainerSpec) -> RtResult<String> {
        let dir = conf::container_dir(&self.path, &spec.name)?;
        let image = self.find_image(&spec.image)?;
        if tools::which("lxc-start").is_none() {
            return Err(tools::ToolError::Missing {
                tool: "lxc-start".into(),
                hint: "Debian: apt-get install lxc",
            }
            .into());
        }
        let ports = conf::ports(&spec)?;
        // Checked again when the rules are written; here before the slow part.
        network::check_free(&ports)?;
        {
            // The name is taken by creating the folder.
            let _creating = self.creating.lock().await;
            if dir.exists() {
                return Err(Error::Conflict(format!(
                    "name: container {} already exists",
                    spec.name
                )));
            }
            std::fs::create_dir_all(dir.join("rootfs")).map_err(|e| io_err("creating", &dir, e))?;
        }
        let lease = match self.network.allocate(&dir).await {
            Ok(lease) => lease,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let parts = Parts {
            spec: &spec,
            dir: &dir,
            lease: &lease,
            image: &image,
            ports: &ports,
        };
        match self.build(cx, parts).await {
            Ok(()) => Ok(spec.name.clone()),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                let _ = self.network.release(&lease).await;
                Err(e)
            }
        }
    }

    async fn container_start(&self, _cx: &CallContext, c: &ContainerRef) -> RtResult<()> {
        let container = &c.id;
        let dir = self.existing(container)?;
        match self.state(container).await? {
            State::Running => return Ok(()),
            State::Frozen => {
                tools::lxc("unfreeze", &self.path, container, &[]).await?;
                return Ok(());
            }
            State::Stopped => {}
        }
        // `lxc.mount.entry` names staging folders; re-pin them from the
        // user's folder now (a link there is refused).
        let sources = self.mount_sources(container);
        self.pins.refresh(sources.iter().map(String::as_str))?;
        self.network.ensure().await?;
        let log = dir.join("start.log");
        let _ = std::fs::remove_file(&log);
        let log_arg = format!("--logfile={}", log.display());
        let mut args = vec!["-d".to_string(), log_arg, "--logpriority=ERROR".to_string()];
        // Containers created before the console log was configured get it
        // for this run, in their folder.
        let config = std::fs::read_to_string(dir.join("config")).unwrap_or_default();
        if !config
            .lines()
            .any(|l| l.trim_start().starts_with(conf::CONSOLE_LOGFILE_KEY))
        {
            args.push("-s".into());
            args.push(format!(
                "{}={}",
                conf::CONSOLE_LOGFILE_KEY,
                dir.join(conf::CONSOLE_LOG).display()
            ));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = tools::lxc("start", &self.path, container, &args).await;
        let running = self.state(container).await.ok() == Some(State::Running);
        if started.is_err() || !running {
            let detail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = detail.lines().rev().take(5).collect();
            let why = match started {
                Err(e) => e.to_string(),
                Ok(_) => "it stopped right after starting".into(),
            };
            return Err(Error::Runtime(format!(
                "container {container} did not start: {why}; {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        Ok(())
    }

    async fn container_stop(&self, _cx: &CallContext, req: StopContainer) -> RtResult<()> {
        let container = &req.container.id;
        self.existing(container)?;
        match self.state(container).await? {
            State::Stopped => return Ok(()),
            State::Frozen => {
                tools::lxc("unfreeze", &self.path, container, &[]).await?;
            }
            State::Running => {}
        }
        let timeout = req.timeout_secs.to_string();
        tools::lxc("stop", &self.path, container, &["-t", &timeout]).await?;
        Ok(())
    }

    async fn container_remove(&self, _cx: &CallContext, req: RemoveContainer) -> RtResult<()> {
        self.remove(&req.container.id, req.force).await
    }

    /// LXC containers have no anonymous volumes: a delete is a forced remove.
    async fn container_delete(&self, _cx: &CallContext, req: DeleteContainer) -> RtResult<()> {
        self.remove(&req.container.id, true).await
    }

    async fn container_list(
        &self,
        _cx: &CallContext,
        _kind: RuntimeKind,
    ) -> RtResult<Vec<ContainerEntry>> {
        let mut out = Vec::new();
        for name in self.names() {
            match self.entry(&name).await {
                Ok(e) => out.push(e),
                Err(Error::NotFound(_)) => {} // removed meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn container_entry(
        &self,
        _cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<ContainerEntry> {
        let container = &c.id;
        self.entry(container).await
    }

    async fn container_usage(&self, _cx: &CallContext, req: UsageQuery) -> RtResult<Usages> {
        use futures::StreamExt;
        let sampled = futures::stream::iter(req.containers)
            .map(|name| async move {
                self.existing(&name).ok()?;
                let out = tools::lxc("info", &self.path, &name, &["-S", "-H"])
                    .await
                    .map_err(|e| tracing::debug!(container = %name, error = %e, "lxc-info -S"))
                    .ok()?;
                let counters = stats::parse_info(&out);
                let usage = self
                    .sampler
                    .usage(&name, std::time::Instant::now(), counters);
                Some((name, usage))
            })
            .buffer_unordered(stats::CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await;
        Ok(sampled)
    }

    async fn container_logs(&self, _cx: &CallContext, req: ContainerLogs) -> RtResult<String> {
        let (dir, tail) = (self.existing(&req.container.id)?, req.tail);
        let path = dir.join(conf::CONSOLE_LOG);
        tokio::task::spawn_blocking(move || stats::tail_file(&path, tail))
            .await
            .map_err(|e| Error::Other(e.to_string()))?
    }

    /// The console log followed while the container's init runs (its pid
    /// asked before the log is read, so nothing written before a stop is
    /// missed).
    async fn container_follow_logs(
        &self,
        _cx: &CallContext,
        req: ContainerLogs,
    ) -> RtResult<LogStream> {
        let name = &req.container.id;
        let dir = self.existing(name)?;
        let init = tools::lxc("info", &self.path, name, &["-p", "-H"])
            .await
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .and_then(console::Init::of);
        console::follow(dir.join(conf::CONSOLE_LOG), req.tail, init).await
    }

    async fn container_settings(
        &self,
        _cx: &CallContext,
        c: &ContainerRef,
    ) -> RtResult<serde_json::Value> {
        self.settings(c)
    }

    async fn container_change_settings(
        &self,
        _cx: &CallContext,
        req: ChangeSettings,
    ) -> RtResult<()> {
        self.change_settings(req).await
    }

    async fn engine_version(&self, _cx: &CallContext, _kind: RuntimeKind) -> RtResult<String> {
        let out = tools::run("lxc-info", ["--version"]).await?;
        Ok(out.trim().to_string())
    }

    async fn container_inspect(&self, _cx: &CallContext, c: &ContainerRef) -> RtResult<String> {
        let container = &c.id;
        let dir = self.existing(container)?;
        let entry = self.entry(container).await?;
        let record = Record::read(&dir).unwrap_or_default();
        let config = std::fs::read_to_string(dir.join("config")).unwrap_or_default();
        let pid = tools::lxc("info", &self.path, container, &["-p", "-H"])
            .await
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        Ok(json!({
            "Id": container,
            "Name": container,
            "Type": "lxc",
            "State": {
                "Status": if entry.state == ContainerState::Running { "running" } else { "stopped" },
                "Running": entry.state == ContainerState::Running,
                "Pid": pid,
            },
            "Image": record.image,
            "ImageID": record.image_id,
            "Created": record.created,
            "NetworkSettings": {
                "IPAddress": record.lease.as_ref().map(|l| l.ip.to_string()),
                "MacAddress": record.lease.as_ref().map(|l| l.mac.clone()),
                "Ports": record.ports,
            },
            "Settings": record.create,
            "Path": dir,
            "Config": config,
        })
        .to_string())
    }

    async fn container_export(&self, cx: &CallContext, req: ExportContainer) -> RtResult<u64> {
        let (container, file) = (&req.container.id, &req.file);
        let (dir, path) = (self.existing(container)?, &file.path);
        let output = Output::prepare(&self.share, path, cx.task_id, file.overwrite)?;
        let running = self.state(container).await? == State::Running;
        let record = Record::read(&dir).unwrap_or_default();
        let mut create = match record.create {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::from_iter([("type".to_string(), json!("lxc"))]),
        };
        create.insert("name".into(), json!(container));
        let settings = json!({
            "version": 1,
            "format": FORMAT,
            "name": container,
            "image": record.image,
            "create": create,
        });
        cx.reporter
            .progress(0, &format!("exporting {container} to {path}"));
        let size = export::export(
            cx, &self.path, container, running, &settings, output, file.gzip,
        )
        .await?;
        cx.reporter
            .progress(100, &format!("exported {container} to {path}"));
        Ok(size)
    }

    async fn container_subtree_export(
        &self,
        cx: &CallContext,
        req: ExportSubtree,
    ) -> RtResult<u64> {
        let (name, file) = (&req.container.id, &req.file);
        let dir = self.existing(name)?;
        crate::runtime::subtree::relative(&req.subtree)?;
        let output =
            Output::prepare(&self.share, &file.path, cx.task_id, file.overwrite).map_err(|e| {
                match e {
                    Error::Conflict(m) => Error::Conflict(m.replace("`force`", "`overwrite`")),
                    other => other,
                }
            })?;
        let running = self.state(name).await? == State::Running;
        let what = format!("{} of container {name}", req.subtree);
        cx.reporter
            .progress(0, &format!("exporting {what} to {}", file.path));
        let export = subtree::Export {
            lxc_path: &self.path,
            name,
            dir: &dir,
            subtree: &req.subtree,
            freeze: running && !req.live,
            idmap: container_idmap(&dir),
            gzip: file.gzip,
        };
        let size = subtree::export(cx, export, output).await?;
        cx.reporter
            .progress(100, &format!("exported {what} to {}", file.path));
        Ok(size)
    }

    async fn container_subtree_import(
        &self,
        cx: &CallContext,
        req: ImportSubtree,
    ) -> RtResult<u64> {
        let name = &req.container.id;
        let dir = self.existing(name)?;
        crate::runtime::subtree::relative(&req.subtree)?;
        let (file, _) = self.share.open_file(&req.path)?;
        let what = format!("{} into {} of container {name}", req.path, req.subtree);
        cx.reporter.progress(-1, &format!("importing {what}"));
        let idmap = container_idmap(&dir);
        let import = subtree::Import {
            dir,
            subtree: req.subtree.clone(),
            file,
            overwrite: req.overwrite,
            idmap,
            cap: self.store.max_expanded(),
        };
        let size = tokio::task::spawn_blocking(move || subtree::import(import))
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
        cx.reporter.progress(100, &format!("imported {what}"));
        Ok(size)
    }

    async fn archive_config(&self, _cx: &CallContext, path: String) -> RtResult<Option<String>> {
        let (file, _) = self.share.open_file(&path)?;
        let config = tokio::task::spawn_blocking(move || unpack::recorded_config(file))
            .await
            .map_err(|e| Error::Other(e.to_string()))??;
        Ok(config.map(|c| c.to_string()))
    }

    async fn image_import(&self, cx: &CallContext, req: ImportImage) -> RtResult<String> {
        let path = req.path;
        let (file, _) = self.share.open_file(&path)?;
        let reference = images::reference(&req.repository, &req.tag);
        cx.reporter
            .progress(-1, &format!("importing {path} as {reference}"));
        let record = self.store.import(cx, file, &path, &reference).await?;
        Ok(record.id)
    }
}

/// The ids of the container in `dir`, read from its LXC config (`None`:
/// privileged, or no config to read).
fn container_idmap(dir: &std::path::Path) -> Option<super::idmap::IdMap> {
    let config = std::fs::read_to_string(dir.join("config")).ok()?;
    subtree::idmap_of(&config)
}
