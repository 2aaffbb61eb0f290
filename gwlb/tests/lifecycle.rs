//! `gwlb run` lifecycle on real DPDK ports (net_pcap): signals during startup and a second
//! instance on the same devices.

// The `gwlb` binary these tests run needs the DPDK data path.
#![cfg(feature = "dpdk")]

mod common;
mod needs_root;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Writes a config reading a small pcap into `dir`; returns its path.
fn pcap_config(dir: &TestDir) -> std::path::PathBuf {
    let rx = dir.path.join("in.pcap");
    let tx = dir.path.join("out.pcap");
    write_pcap(&rx, &[]).expect("write input pcap");
    let prefix = dir.path.file_name().unwrap().to_string_lossy().into_owned();
    let cfg = dir.path.join("gwlb.toml");
    fs::write(&cfg, config_toml(&rx, &tx, &prefix)).expect("write config");
    cfg
}

fn spawn(cfg: &std::path::Path, dir: &TestDir, tag: &str, secs: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gwlb"))
        .arg("run")
        .arg("--config")
        .arg(cfg)
        .args(["--duration", secs])
        .env("GWLB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.path.join(format!("{tag}.out"))).unwrap())
        .stderr(fs::File::create(dir.path.join(format!("{tag}.err"))).unwrap())
        .spawn()
        .expect("spawn gwlb")
}

fn wait(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gwlb did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGHUP (systemd's reload) from the first instant of startup on: gwlb keeps running and
/// exits 0 at the end of its run (before the fix, the default disposition ended it with 129).
#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn sighup_during_startup_does_not_kill() {
    needs_root::require();
    let dir = TestDir::new("sighup-startup");
    let cfg = pcap_config(&dir);
    let mut child = spawn(&cfg, &dir, "gw", "2");
    // Before `main` nothing can catch a signal: start once the binary is exec'ed and its
    // runtime had a few milliseconds (startup itself takes hundreds: config, EAL, ports).
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_gwlb"));
    let t0 = Instant::now();
    while fs::read_link(format!("/proc/{}/exe", child.id()))
        .ok()
        .as_ref()
        != Some(&exe)
    {
        assert!(t0.elapsed() < Duration::from_secs(5), "gwlb never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    let t0 = Instant::now();
    let mut sent = 0;
    while t0.elapsed() < Duration::from_millis(400) {
        // SAFETY: kill with a valid signal number on our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) };
        sent += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = wait(&mut child, Duration::from_secs(30));
    let err = fs::read_to_string(dir.path.join("gw.err")).unwrap_or_default();
    assert!(
        status.success(),
        "gwlb exited with {status} after {sent} SIGHUPs\n{err}"
    );
    assert!(
        err.contains("reload"),
        "a SIGHUP was taken as a reload:\n{err}"
    );
}

/// A second `gwlb run` on the same devices is refused with an error naming the port and the
/// first instance; the first goes on undisturbed.
#[test]
#[ignore = "needs root (DPDK, namespaces): scripts/test.sh runs it as root"]
fn second_instance_on_the_same_ports_is_refused() {
    needs_root::require();
    let dir = TestDir::new("second-instance");
    let cfg = pcap_config(&dir);
    let mut first = spawn(&cfg, &dir, "first", "4");
    std::thread::sleep(Duration::from_millis(800));
    let mut second = spawn(&cfg, &dir, "second", "4");
    let status = wait(&mut second, Duration::from_secs(10));
    let err = fs::read_to_string(dir.path.join("second.err")).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "second instance: {status}\n{err}");
    assert!(
        err.contains("ports[0]")
            && err.contains("already in use by another gwlb")
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    let status = wait(&mut first, Duration::from_secs(30));
    assert!(status.success(), "first instance: {status}");
    // Once the first is gone, the devices are free again.
    let mut third = spawn(&cfg, &dir, "third", "0.5");
    let status = wait(&mut third, Duration::from_secs(30));
    let err = fs::read_to_string(dir.path.join("third.err")).unwrap_or_default();
    assert!(status.success(), "after the first stopped: {status}\n{err}");
}
