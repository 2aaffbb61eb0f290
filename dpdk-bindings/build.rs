//! Finds the system libdpdk with pkg-config, generates bindings with bindgen
//! and compiles the tiny C shim for `static inline` per-burst functions.
//!
//! bindgen and `cc` get the same include paths, defines and `-include` /
//! `-march` flags (the latter two are not exposed by the `pkg-config` crate,
//! so they are read from `pkg-config --cflags libdpdk`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Flags from `pkg-config --cflags` that the `pkg-config` crate drops:
/// `-include <header>` pairs and `-m*` target flags (`-march=corei7`).
fn extra_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let out = Command::new(pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("running pkg-config --cflags libdpdk");
    assert!(out.status.success(), "pkg-config --cflags libdpdk failed");
    let text = String::from_utf8(out.stdout).expect("pkg-config output is UTF-8");
    let mut flags = Vec::new();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-include" {
            if let Some(h) = words.next() {
                flags.push("-include".to_owned());
                flags.push(h.to_owned());
            }
        } else if w.starts_with("-m") {
            flags.push(w.to_owned());
        }
    }
    flags
}

/// Generate code for the workspace's `rust-version` (MSRV), not for the
/// compiler that happens to run the build.
fn rust_target() -> bindgen::RustTarget {
    let msrv = env::var("CARGO_PKG_RUST_VERSION").unwrap_or_default();
    let mut parts = msrv
        .split('.')
        .skip(1)
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let minor = parts.next().unwrap_or(80);
    let patch = parts.next().unwrap_or(0);
    // Unknown (newer than bindgen knows): bindgen's latest stable target.
    bindgen::RustTarget::stable(minor, patch).unwrap_or_default()
}

fn main() {
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dpdk = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .expect("libdpdk >= 22.11 not found by pkg-config (install libdpdk-dev)");

    // The vdev bus (rte_vdev_init/uninit) and the ring PMD (rte_eth_from_rings)
    // are drivers, which `pkg-config --libs libdpdk` does not list.
    for lib in ["rte_bus_vdev", "rte_net_ring"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }

    let extra = extra_cflags();
    let mut clang_args: Vec<String> = Vec::new();
    for p in &dpdk.include_paths {
        clang_args.push(format!("-I{}", p.display()));
    }
    for (k, v) in &dpdk.defines {
        match v {
            Some(v) => clang_args.push(format!("-D{k}={v}")),
            None => clang_args.push(format!("-D{k}")),
        }
    }
    clang_args.extend(extra.iter().cloned());
    clang_args.push("-Icsrc".into());

    let mut build = cc::Build::new();
    build.file("csrc/shim.c").include("csrc").opt_level(3);
    for p in &dpdk.include_paths {
        build.include(p);
    }
    for (k, v) in &dpdk.defines {
        build.define(k, v.as_deref());
    }
    for f in &extra {
        build.flag(f);
    }
    build.compile("dpdk_shim");

    let bindings = bindgen::Builder::default()
        .rust_target(rust_target())
        .header("csrc/wrapper.h")
        .clang_args(&clang_args)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("rte_.*|dpdk_shim_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*|RING_F_.*|SOCKET_ID_ANY|LCORE_ID_ANY")
        // Packed structs that contain the align(2) rte_ether_addr (E0588,
        // rust-bindgen #1538).
        .opaque_type("rte_arp_hdr|rte_arp_ipv4|rte_l2tpv2_combined_msg_hdr")
        // rte_flow / traffic manager / metering are not used: keep them out.
        .blocklist_function("rte_flow_.*|rte_tm_.*|rte_mtr_.*")
        .no_debug("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .generate_comments(false)
        .generate()
        .expect("bindgen failed on csrc/wrapper.h");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("bindings.rs");
    bindings.write_to_file(&out).expect("writing bindings.rs");
}
