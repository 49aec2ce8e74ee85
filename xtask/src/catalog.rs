//! The test image and application repository ("qnap" catalog): a busybox
//! rootfs tarball (from `busybox-static`, as the Docker test image is made)
//! plus `list.json` naming it under the names the seed page uses
//! (`ubuntu-trusty`), and the application templates of
//! `tests/fixtures/catalog` (their `app` entries in `list.json`, shaped as
//! QNAP's: web-page `location`s, `displayName`, `icon`, entries for other
//! architectures; their folders under `template/`), served over loopback
//! HTTP by a tiny server of ours (`xtask catalog-server DIR ADDR`, std
//! only). Files under `/slow/` are sent at 512 KiB/s, so that a test can
//! cancel a download midway.
//!
//! The tests get the root URL as `STEVEDORE_TEST_CATALOG`.

use crate::util::{self, alive, cmdline, http_get, output, tail, terminate, Endpoint};
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the catalog is served.
pub const ADDR: &str = "127.0.0.1:5002";
/// The bridge and subnet the LXC tests use (not the server's default).
pub const LXC_BRIDGE: &str = "stvlxctest0";
/// Its subnet.
pub const LXC_SUBNET: &str = "10.213.77.0/24";

/// The root URL the tests get.
pub fn url() -> String {
    format!("http://{ADDR}/")
}

fn pidfile() -> PathBuf {
    PathBuf::from(crate::services::RUN_DIR).join("catalog.pid")
}

/// The inittab, rcS and DHCP script of the test image: init runs `udhcpc`
/// (which flushes a static address, as real images' DHCP clients do) and
/// serves `/var/www` with busybox httpd on port 80.
const INITTAB: &str = "::sysinit:/etc/init.d/rcS\n::respawn:/bin/httpd -f -p 80 -h /var/www\n";
const RCS: &str = "#!/bin/sh\n/bin/mount -a 2>/dev/null\n\
/bin/udhcpc -b -i eth0 -s /usr/share/udhcpc/default.script >/dev/null 2>&1\n";
const DHCP_SCRIPT: &str = "#!/bin/sh\ncase \"$1\" in\n\
deconfig) /bin/ip addr flush dev \"$interface\" ;;\n\
bound|renew) /bin/ip addr flush dev \"$interface\"; /bin/ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n\
  [ -n \"$router\" ] && /bin/ip route add default via \"$router\" ;;\nesac\nexit 0\n";

/// The `lxc` entries of `list.json`: the images [`build_images`] makes.
fn lxc_entries() -> Vec<serde_json::Value> {
    let other_arch = if std::env::consts::ARCH == "x86_64" {
        "armhf"
    } else {
        "amd64"
    };
    serde_json::json!([
        {"name": "ubuntu-trusty", "displayName": "Ubuntu 14.04 (busybox stand-in)",
         "version": "14.04", "type": "lxc", "repository": "qnap", "arch": host_arch(),
         "location": "images/busybox-rootfs.tar.gz", "icon": "", "description": "test image",
         "inspect": {}, "kernelVersion": "3.10"},
        {"name": "ubuntu-trusty", "version": "14.04", "type": "lxc", "arch": other_arch,
         "location": "images/does-not-exist.tar.gz"},
        {"name": "busybox", "version": "latest", "type": "lxc", "arch": host_arch(),
         "location": "images/busybox-lxc.tar.xz"},
        {"name": "slow", "version": "latest", "type": "lxc",
         "location": "slow/images/big.tar.gz"},
    ])
    .as_array()
    .cloned()
    .unwrap_or_default()
}

fn build(dir: &Path) -> Result<()> {
    if !dir.join("images").is_dir() {
        build_images(dir)?;
    }
    refresh_apps(dir)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The application templates of `tests/fixtures/catalog`, and `list.json`
/// with their entries after the images': rewritten on every start, so the
/// served repository follows the fixture (each file replaced by a rename).
fn refresh_apps(dir: &Path) -> Result<()> {
    let fixture = crate::util::repo_root().join("tests/fixtures/catalog");
    let text = fs::read_to_string(fixture.join("list.json")).context("the fixture list.json")?;
    let fixture_list: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    let mut list = lxc_entries();
    list.extend(fixture_list.into_iter().filter(|e| e["type"] == "app"));
    let fresh = dir.join(format!("template.{}", std::process::id()));
    if fresh.exists() {
        fs::remove_dir_all(&fresh)?;
    }
    copy_tree(&fixture.join("template"), &fresh)?;
    let old = dir.join(format!("template.old.{}", std::process::id()));
    if dir.join("template").exists() {
        fs::rename(dir.join("template"), &old)?;
    }
    fs::rename(&fresh, dir.join("template"))?;
    if old.exists() {
        fs::remove_dir_all(&old)?;
    }
    let tmp = dir.join(format!("list.json.{}", std::process::id()));
    fs::write(&tmp, serde_json::to_vec_pretty(&list)?)?;
    fs::rename(&tmp, dir.join("list.json"))?;
    Ok(())
}

fn build_images(dir: &Path) -> Result<()> {
    let started = Instant::now();
    let work = dir.with_extension("work");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    let rootfs = work.join("rootfs");
    for d in [
        "bin",
        "sbin",
        "etc/init.d",
        "root",
        "tmp",
        "var/www",
        "proc",
        "sys",
        "dev",
        "usr/share/udhcpc",
        "run",
    ] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    use std::os::unix::fs::{symlink, PermissionsExt};
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).context("copying /bin/busybox")?;
    let applets = output(Command::new("/bin/busybox").arg("--list"))?;
    for applet in applets.lines().map(str::trim) {
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            symlink("busybox", rootfs.join("bin").join(applet))?;
        }
    }
    symlink("../bin/busybox", rootfs.join("sbin/init"))?;
    fs::write(rootfs.join("etc/inittab"), INITTAB)?;
    fs::write(rootfs.join("etc/init.d/rcS"), RCS)?;
    fs::write(rootfs.join("usr/share/udhcpc/default.script"), DHCP_SCRIPT)?;
    for f in ["etc/init.d/rcS", "usr/share/udhcpc/default.script"] {
        fs::set_permissions(rootfs.join(f), fs::Permissions::from_mode(0o755))?;
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    fs::write(rootfs.join("etc/fstab"), "")?;
    fs::write(
        rootfs.join("var/www/index.html"),
        "hello from stevedore lxc\n",
    )?;
    let images = work.join("images");
    fs::create_dir_all(&images)?;
    // Files at the top level, gzip (as QNAP's tarballs are).
    util::run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-czf"])
            .arg(images.join("busybox-rootfs.tar.gz"))
            .arg("-C")
            .arg(&rootfs)
            .arg("."),
    )?;
    // LXC's layout (`rootfs/` + `config`), xz.
    fs::write(work.join("config"), "lxc.uts.name = busybox\n")?;
    util::run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-cJf"])
            .arg(images.join("busybox-lxc.tar.xz"))
            .arg("-C")
            .arg(&work)
            .args(["config", "rootfs"]),
    )?;
    // A slow one to cancel: 6 MiB that do not compress, at 512 KiB/s.
    let filler = work.join("filler");
    fs::create_dir_all(&filler)?;
    let mut noise = vec![0u8; 6 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    fs::write(filler.join("noise"), noise)?;
    util::run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-czf"])
            .arg(images.join("big.tar.gz"))
            .arg("-C")
            .arg(&filler)
            .arg("."),
    )?;
    fs::remove_dir_all(&filler)?;
    fs::remove_dir_all(&rootfs)?;
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::rename(&work, dir)?;
    eprintln!("==> built the test catalog in {:.2?}", started.elapsed());
    Ok(())
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        other => other,
    }
}

fn pid() -> Option<u32> {
    let ours =
        |pid: u32| alive(pid) && cmdline(pid).is_some_and(|c| c.contains(" catalog-server "));
    fs::read_to_string(pidfile())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|pid| ours(*pid))
}

/// Whether the catalog is served.
pub fn running() -> bool {
    pid().is_some() && answers()
}

fn answers() -> bool {
    matches!(
        http_get(&Endpoint::Tcp(ADDR.into()), "/list.json", &[]),
        Ok((200, _))
    )
}

/// Build the catalog (once) and serve it, unless it is served already.
pub fn start(state_dir: &Path) -> Result<()> {
    let dir = state_dir.join("catalog");
    build(&dir)?;
    if pid().is_some() && answers() {
        return Ok(());
    }
    stop();
    let log_path = state_dir.join("catalog.log");
    let log = fs::File::create(&log_path)?;
    let exe = std::env::current_exe().context("the xtask binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("catalog-server").arg(&dir).arg(ADDR);
    let mut child = crate::services::spawn_daemon(&mut cmd, log)?;
    fs::write(pidfile(), child.id().to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers() {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the catalog server exited ({}): {}",
                util::status_text(status),
                tail(&log_path, 10)
            );
        }
        if Instant::now() > deadline {
            bail!("the catalog server did not answer on {ADDR} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Stop the server, and take down what LXC tests left on the test bridge.
pub fn stop() {
    if let Some(pid) = pid() {
        terminate(pid, Duration::from_secs(5));
    }
    let _ = fs::remove_file(pidfile());
    let net = PathBuf::from("/run/stevedore/lxc-net").join(LXC_BRIDGE);
    if let Some(pid) = fs::read_to_string(net.join("dnsmasq.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|pid| cmdline(*pid).is_some_and(|c| c.contains("dnsmasq")))
    {
        terminate(pid, Duration::from_secs(5));
    }
    let _ = fs::remove_dir_all(&net);
    let table = format!("stevedore_{LXC_BRIDGE}");
    let _ = output(Command::new("nft").args(["delete", "table", "ip", &table]));
    if Path::new("/sys/class/net").join(LXC_BRIDGE).exists() {
        let _ = output(Command::new("ip").args(["link", "del", LXC_BRIDGE]));
    }
    for dir in ["-i", "-o"] {
        let _ = output(
            Command::new("iptables").args(["-D", "FORWARD", dir, LXC_BRIDGE, "-j", "ACCEPT"]),
        );
    }
}

/// `xtask catalog-server DIR ADDR`: serve DIR's files over HTTP/1.1 GET.
pub fn serve(args: &[String]) -> Result<()> {
    let [dir, addr] = args else {
        bail!("usage: xtask catalog-server DIR ADDR");
    };
    let dir = PathBuf::from(dir);
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let dir = dir.clone();
        std::thread::spawn(move || {
            let _ = answer(stream, &dir);
        });
    }
    Ok(())
}

fn answer(mut stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (slow, rel) = match path.strip_prefix("/slow/") {
        Some(rest) => (true, rest),
        None => (false, path.trim_start_matches('/')),
    };
    let file = (!rel.split('/').any(|p| p == ".." || p.is_empty()))
        .then(|| fs::File::open(dir.join(rel)).ok())
        .flatten();
    let Some(mut file) = file else {
        return stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let len = file.metadata()?.len();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
        if slow {
            std::thread::sleep(Duration::from_millis(125));
        }
    }
}
