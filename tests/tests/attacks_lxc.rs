//! Attacks on the LXC runtime by a non-admin (issue 26, item 4 and the low
//! items about LXC): the real `stevedore serve`, the real `create` plugin,
//! Debian's `lxc` tools and the test bridge (`STEVEDORE_TEST_LXC_BRIDGE`,
//! shared by every LXC test, as in `lxc.rs`). `bob` has the default policy.
//! Each test asserts the precise non-effect: the host's service still
//! answers on its port, the server's API still answers, the container's root
//! is not the host's root, `route_localnet` is not opened on every
//! interface, and a hostile image leaves no setuid-root file or device node.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use stevedore_e2e::{ask, eventually, free_port, hash_password, report, Client, Options, Server};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

fn bridge() -> String {
    env("STEVEDORE_TEST_LXC_BRIDGE")
}

/// A server with its own LXC path on the test bridge, and bob logged in.
/// Its containers (and their published ports) are taken down when it goes,
/// also when a test fails or the API was made unreachable.
struct Bob {
    bob: Client,
    server: Server,
    path: tempfile::TempDir,
}

impl Bob {
    async fn start() -> Bob {
        Bob::with_catalog(&env("STEVEDORE_TEST_CATALOG")).await
    }

    async fn with_catalog(catalog: &str) -> Bob {
        let path = tempfile::Builder::new()
            .prefix("stevedore-lxc-")
            .tempdir()
            .unwrap();
        let config = format!(
            "[users.bob]\npassword_hash = \"{}\"\n",
            hash_password("bob-pw")
        );
        let server = Server::start(
            Options::with_plugins(&["create", "image_download"])
                .config(&config)
                .env("STEVEDORE_CATALOG", catalog)
                .env("STEVEDORE_LXC_PATH", &path.path().display().to_string())
                .env("STEVEDORE_LXC_BRIDGE", &bridge())
                .env("STEVEDORE_LXC_SUBNET", &env("STEVEDORE_TEST_LXC_SUBNET")),
        )
        .await;
        let bob = server.client();
        assert_eq!(bob.login("bob", "bob-pw").await.status, 200);
        Bob { bob, server, path }
    }

    fn path(&self) -> &Path {
        self.path.path()
    }

    /// `lxc-<verb>` on this server's LXC path ([`stevedore_e2e::lxc`]).
    fn lxc(&self, verb: &str, name: &str, args: &[&str]) -> String {
        stevedore_e2e::lxc(self.path(), verb, name, args)
    }

    /// Submit an LXC `create` of `image` as bob; `Ok(task)` once it ended,
    /// `Err(answer body)` when refused at submit.
    async fn create(&self, name: &str, image: &str, extra: Value) -> Result<Value, Value> {
        let mut body = json!({"type": "lxc", "repository": "qnap", "name": name,
                              "image": image, "tag": "latest"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = self.bob.submit("create", &body.to_string()).await;
        if r.status != 200 {
            return Err(json!({"status": r.status, "body": r.body}));
        }
        let id = r.body["id"].as_i64().unwrap();
        let t = self
            .bob
            .wait_until(id, Duration::from_secs(120), |t| {
                t["state"] == "completed" || t["state"] == "error"
            })
            .await
            .unwrap_or_else(|last| panic!("task {id} did not end: {last:?}"));
        Ok(t)
    }

    /// A create that must be refused, at submit (403) or as a task in
    /// `error`; returns the refusal's text.
    async fn refused(&self, name: &str, extra: Value) -> String {
        match self.create(name, "busybox", extra).await {
            Err(answer) => {
                assert_eq!(answer["status"], 403, "{answer}");
                answer["body"]["error"]["message"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
            Ok(t) => {
                assert_eq!(t["state"], "error", "the create went through: {t}");
                t["detail_state"].as_str().unwrap().to_string()
            }
        }
    }

    /// A create that must complete.
    async fn created(&self, name: &str, image: &str, extra: Value) -> Value {
        let t = self
            .create(name, image, extra)
            .await
            .unwrap_or_else(|a| panic!("create refused: {a}"));
        assert_eq!(t["state"], "completed", "{t}\n{}", self.server.logs());
        t
    }
}

impl Drop for Bob {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(self.path.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let mac = std::fs::read(entry.path().join("stevedore.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|r| r["lease"]["mac"].as_str().map(str::to_string));
            stevedore_e2e::lxc_destroy(self.path.path(), &name);
            if let Some(mac) = mac {
                forget(&mac);
            }
        }
    }
}

/// Drop the address and port rules of the container with `mac` from the
/// shared test bridge (what the server does on remove; here also when the
/// server can no longer be asked).
fn forget(mac: &str) {
    let br = bridge();
    let _ = std::fs::remove_file(
        Path::new("/run/stevedore/lxc-net")
            .join(&br)
            .join("hosts")
            .join(mac.replace(':', "")),
    );
    let table = format!("stevedore_{}", br.replace('-', "_"));
    let Ok(out) = Command::new("nft")
        .args(["-j", "-a", "list", "table", "ip", &table])
        .output()
    else {
        return;
    };
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    for item in listing["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        if rule["comment"].as_str() == Some(mac) {
            let (chain, handle) = (rule["chain"].as_str().unwrap(), rule["handle"].to_string());
            let _ = Command::new("nft")
                .args(["delete", "rule", "ip", &table, chain, "handle", &handle])
                .status();
        }
    }
}

/// A host service on 127.0.0.1 answering `marker` to every connection, on
/// a free port (a thread of its own: the test's checks block).
fn host_service(marker: &'static str) -> u16 {
    host_service_on([127, 0, 0, 1].into(), marker)
}

/// [`host_service`] on address `ip`.
fn host_service_on(ip: std::net::Ipv4Addr, marker: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in listener.incoming().flatten() {
            // Read the request first: closing with unread data would reset.
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read(&mut [0u8; 512]);
            let _ = s.write_all(marker.as_bytes());
        }
    });
    port
}

fn sysctl(path: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{path}/route_localnet"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test]
async fn lxc_port_cannot_take_over_host_service() {
    let s = Bob::start().await;
    let port = host_service("host-marker");
    assert_eq!(ask(port).as_deref(), Some("host-marker"));
    let why = s
        .refused("grab", json!({"network": {"port": [[port, 80, "tcp"]]}}))
        .await;
    assert!(why.contains("network.port"), "{why}");
    assert!(!s.path().join("grab").exists(), "nothing created");
    // The host's listener still gets the connections.
    for _ in 0..5 {
        assert_eq!(ask(port).as_deref(), Some("host-marker"));
    }
    report!("attacks_lxc: host service on 127.0.0.1:{port} kept its port; refusal: {why}");
}

#[tokio::test]
async fn lxc_port_cannot_take_server_port() {
    let s = Bob::start().await;
    let port = s.server.addr.port();
    let why = s
        .refused(
            "grab-api",
            json!({"network": {"port": [[port, 80, "tcp"]]}}),
        )
        .await;
    assert!(why.contains("network.port"), "{why}");
    assert!(!s.path().join("grab-api").exists(), "nothing created");
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let r = http
            .get(format!("{}/metrics", s.server.base()))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .expect("the API still answers");
        assert!(r.status().is_success());
    }
    report!("attacks_lxc: the server's port {port} stayed the API's; refusal: {why}");
}

#[tokio::test]
async fn lxc_port_below_1024_refused() {
    let s = Bob::start().await;
    let port = 999;
    let why = s
        .refused("low", json!({"network": {"port": [[port, 80, "tcp"]]}}))
        .await;
    assert!(why.contains("network.port"), "{why}");
    assert!(why.contains("bob"), "{why}");
    assert!(!s.path().join("low").exists(), "nothing created");
    report!("attacks_lxc: host port {port} refused to bob: {why}");
}

#[tokio::test]
async fn lxc_container_cannot_reach_host_loopback() {
    let s = Bob::start().await;
    let gateway = gateway();
    let hidden = host_service("loopback-only-marker");
    s.created("probe", "busybox", json!({})).await;
    // The bridge address is up once the server set the bridge up.
    let open = host_service_on(gateway, "gateway-marker");
    // The image's DHCP client flushes the address first: wait for its route.
    let via = format!("default via {gateway}");
    eventually("the container's route", Duration::from_secs(30), || {
        s.lxc("attach", "probe", &["--", "/bin/ip", "route"])
            .contains(&via)
            .then_some(())
    })
    .await;
    // Root in the container points 127.0.0.1 at the host (its own
    // loopback routes removed) and takes answers from 127.0.0.1.
    let script = format!(
        "sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1 \
           net.ipv4.conf.all.accept_local=1 net.ipv4.conf.eth0.accept_local=1; \
         ip route del local 127.0.0.1 dev lo table local; \
         ip route del local 127.0.0.0/8 dev lo table local; \
         ip route add 127.0.0.1/32 via {gateway} dev eth0; \
         echo x | nc -w 3 127.0.0.1 {hidden}; echo; echo x | nc -w 3 {gateway} {open}"
    );
    // Tried until the positive control answers (the container's DHCP
    // client may still be settling its address); no try may reach the
    // hidden service.
    let probe = || {
        let out = Command::new("lxc-attach")
            .arg("-P")
            .arg(s.path())
            .args(["-n", "probe", "--", "/bin/sh", "-c", &script])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !text.contains("loopback-only-marker"),
            "the container reached the host's 127.0.0.1:{hidden}"
        );
        text.contains("gateway-marker").then_some(())
    };
    eventually(
        "the host's bridge address answers",
        Duration::from_secs(60),
        probe,
    )
    .await;
    report!("attacks_lxc: a container addressing the host's 127.0.0.1:{hidden} got nothing; its gateway {gateway} answers");
}

/// The bridge's address: `.1` of the test subnet.
fn gateway() -> std::net::Ipv4Addr {
    let subnet = env("STEVEDORE_TEST_LXC_SUBNET");
    let base: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
    let [a, b, c, _] = base.octets();
    std::net::Ipv4Addr::new(a, b, c, 1)
}

/// The first line of `/proc/<pid>/uid_map` as `(inside, outside, count)`.
fn uid_map(pid: &str, file: &str) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    let f: Vec<u64> = text
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (f[0], f[1], f[2])
}

#[tokio::test]
async fn lxc_container_is_unprivileged() {
    use std::os::unix::fs::MetadataExt;
    let s = Bob::start().await;
    s.created("plain", "busybox", json!({})).await;
    let config = std::fs::read_to_string(s.path().join("plain/config")).unwrap();
    assert!(
        config.lines().any(|l| l.starts_with("lxc.idmap = u 0 ")),
        "no uid map in:\n{config}"
    );
    assert!(
        config.lines().any(|l| l.starts_with("lxc.idmap = g 0 ")),
        "no gid map in:\n{config}"
    );
    assert!(!config.contains("unconfined"), "{config}");
    let pid = s.lxc("info", "plain", &["-p", "-H"]);
    let (inside, outside, count) = uid_map(&pid, "uid_map");
    assert_eq!(inside, 0);
    assert_ne!(outside, 0, "root inside is root outside");
    assert!(count <= 65536, "{count} ids mapped");
    let (_, gid_outside, _) = uid_map(&pid, "gid_map");
    assert_ne!(gid_outside, 0);
    // A file root makes inside belongs to the mapped id on the host.
    s.lxc(
        "attach",
        "plain",
        &["--", "/bin/sh", "-c", "echo x > /root/made"],
    );
    let meta = std::fs::metadata(s.path().join("plain/rootfs/root/made")).unwrap();
    assert_eq!(u64::from(meta.uid()), outside);
    assert_eq!(u64::from(meta.gid()), gid_outside);
    // ... and so do the image's files.
    let init = std::fs::symlink_metadata(s.path().join("plain/rootfs/bin/busybox")).unwrap();
    assert_eq!(u64::from(init.uid()), outside);
    report!(
        "attacks_lxc: bob's container root is host uid {outside} (gid {gid_outside}), {count} ids"
    );
}

/// The position of each `FORWARD` rule of `iptables -S` that matches.
fn forward_rules(matches: impl Fn(&str) -> bool) -> Vec<usize> {
    let out = Command::new("iptables")
        .args(["-S", "FORWARD"])
        .output()
        .expect("iptables");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .enumerate()
        .filter(|(_, l)| matches(l))
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test]
async fn route_localnet_scoped() {
    let br = bridge();
    // A host that never had the unscoped setting: what the server must keep.
    if sysctl("all") != "0" {
        std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "0").unwrap();
    }
    let s = Bob::start().await;
    let port = free_port();
    s.created(
        "web",
        "busybox",
        json!({"network": {"port": [[port, 80, "tcp"]]}, "autostart": true}),
    )
    .await;
    // The published port works from 127.0.0.1 ...
    let body = eventually("httpd through the port", Duration::from_secs(30), || {
        ask(port).filter(|b| b.contains("hello from stevedore lxc"))
    })
    .await;
    assert!(body.contains("200 OK"), "{body}");
    // ... with route_localnet on the bridge only.
    assert_eq!(
        sysctl("all"),
        "0",
        "route_localnet opened on every interface"
    );
    assert_eq!(sysctl(&br), "1", "route_localnet of {br}");
    // The bridge's FORWARD accepts come after Docker's chains (isolation first).
    let ours = forward_rules(|l| l.contains(&format!(" {br} ")) && l.ends_with("-j ACCEPT"));
    let docker = forward_rules(|l| l.contains("-j DOCKER"));
    assert!(!ours.is_empty(), "no FORWARD rule for {br}");
    if let (Some(first_ours), Some(last_docker)) = (ours.iter().min(), docker.iter().max()) {
        assert!(
            first_ours > last_docker,
            "FORWARD accepts of {br} (at {ours:?}) ahead of Docker's jumps (at {docker:?})"
        );
    }
    let deleted = s
        .bob
        .send(reqwest::Method::DELETE, "container/lxc/web", None)
        .await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    report!(
        "attacks_lxc: route_localnet all=0 {br}=1 with a published port; FORWARD rules at {ours:?}, Docker's at {docker:?}"
    );
}

/// The busybox rootfs of the test catalog, plus a setuid-root file, a
/// file with a `security.capability` attribute, a block device node (8:0)
/// and a safe one (`null`, 1:3), as a gzip tarball.
async fn hostile_image() -> Vec<u8> {
    use std::io::Read;
    let base = reqwest::get(format!(
        "{}/images/busybox-rootfs.tar.gz",
        env("STEVEDORE_TEST_CATALOG")
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&base[..])
        .read_to_end(&mut plain)
        .unwrap();
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(&plain[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.append(&header, &data[..]).unwrap();
    }
    let file = |name: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(4);
        h.set_cksum();
        h
    };
    out.append(&file("bin/suid-root", 0o4755), &b"#!/x"[..])
        .unwrap();
    out.append(&file("bin/sgid-root", 0o2755), &b"#!/x"[..])
        .unwrap();
    // cap_sys_admin+ep, as `setcap` writes it (VFS_CAP_REVISION_2).
    let mut cap = [0u8; 20];
    cap[0..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 21).to_le_bytes());
    out.append_pax_extensions([("SCHILY.xattr.security.capability", &cap[..])])
        .unwrap();
    out.append(&file("bin/capped", 0o755), &b"#!/x"[..])
        .unwrap();
    let node = |name: &str, kind: tar::EntryType, major: u32, minor: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_mode(0o666);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        h
    };
    out.append(&node("root/sda", tar::EntryType::Block, 8, 0), &[][..])
        .unwrap();
    out.append(&node("root/mem", tar::EntryType::Char, 1, 1), &[][..])
        .unwrap();
    out.append(&node("root/null", tar::EntryType::Char, 1, 3), &[][..])
        .unwrap();
    let plain = out.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    gz.finish().unwrap()
}

/// Device nodes under `dir` (not following links), as `(path, rdev, block)`.
fn device_nodes(dir: &Path) -> Vec<(PathBuf, u64, bool)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        let t = meta.file_type();
        if t.is_dir() {
            out.extend(device_nodes(&e.path()));
        } else if t.is_block_device() || t.is_char_device() {
            out.push((e.path(), meta.rdev(), t.is_block_device()));
        }
    }
    out
}

/// The extended attribute names of `path` (python3's `os.listxattr`).
fn xattrs(path: &Path) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os,sys; print(' '.join(os.listxattr(sys.argv[1], follow_symlinks=False)))",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn rootfs_drops_setuid_and_devices() {
    use std::os::unix::fs::MetadataExt;
    let catalog = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(catalog.path().join("images")).unwrap();
    std::fs::write(
        catalog.path().join("images/evil.tar.gz"),
        hostile_image().await,
    )
    .unwrap();
    std::fs::write(
        catalog.path().join("list.json"),
        json!([{"name": "evil", "version": "latest", "type": "lxc",
                "location": "images/evil.tar.gz"}])
        .to_string(),
    )
    .unwrap();
    let s = Bob::with_catalog(&catalog.path().display().to_string()).await;
    s.created("evil", "evil", json!({})).await;
    let rootfs = s.path().join("evil/rootfs");
    for name in ["bin/suid-root", "bin/sgid-root"] {
        let meta = std::fs::symlink_metadata(rootfs.join(name)).unwrap();
        let setid = meta.mode() & 0o6000 != 0;
        assert!(
            !setid || (meta.uid() != 0 && meta.gid() != 0),
            "{name}: mode {:o} owned by {}:{}",
            meta.mode(),
            meta.uid(),
            meta.gid()
        );
    }
    let attrs = xattrs(&rootfs.join("bin/capped"));
    assert!(!attrs.contains("security."), "bin/capped keeps {attrs}");
    // Only the safe set of character devices (1:3 null ... 5:2 ptmx).
    let safe = |rdev: u64, block: bool| {
        let (major, minor) = ((rdev >> 8) & 0xfff, rdev & 0xff);
        !block && matches!((major, minor), (1, 3 | 5 | 7 | 8 | 9) | (5, 0..=2))
    };
    let nodes = device_nodes(&rootfs);
    let unsafe_nodes: Vec<_> = nodes.iter().filter(|(_, r, b)| !safe(*r, *b)).collect();
    assert!(
        unsafe_nodes.is_empty(),
        "device nodes made: {unsafe_nodes:?}"
    );
    report!(
        "attacks_lxc: hostile image: {} safe device node(s) kept, setuid files safe, xattrs on bin/capped: [{attrs}]",
        nodes.len()
    );
}
