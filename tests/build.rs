//! Finds the outside tools some integration tests need, so `cargo test --workspace` passes
//! on a machine that has only Rust and python3: Debian's Chromium + ChromeDriver (the sandbox
//! page's browser test), Terraform with an offline hashicorp/aws provider mirror (the
//! Terraform tests) and Debian's PostgreSQL server (the PostgreSQL ledger's tests). A test whose tool is absent is compiled as ignored with a reason that
//! names the tool and how to get it, so libtest prints it and counts it as ignored, not passed.
//!
//! `FARGATE_CONNECT_REQUIRE_TOOLS=1` (`.ci/run` sets it) never skips: an absent tool then fails
//! its tests with their own message. The script runs again when a tool appears (it watches the
//! paths, or the folder a missing one would appear in) or when one of the variables changes.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    for var in [
        "FARGATE_CONNECT_REQUIRE_TOOLS",
        "FARGATE_CONNECT_CHROMIUM",
        "FARGATE_CONNECT_CHROMEDRIVER",
        "FARGATE_CONNECT_TERRAFORM",
        "FARGATE_CONNECT_TF_PLUGINS",
        "FARGATE_CONNECT_PG_BIN",
        "PATH",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(fc_skip_browser)");
    println!("cargo::rustc-check-cfg=cfg(fc_skip_terraform)");
    println!("cargo::rustc-check-cfg=cfg(fc_skip_postgres)");
    println!("cargo::rustc-check-cfg=cfg(fc_skip_bastion_box)");
    let required = env::var("FARGATE_CONNECT_REQUIRE_TOOLS").is_ok_and(|v| !v.is_empty() && v != "0");

    let chromium = path_from("FARGATE_CONNECT_CHROMIUM", "/usr/bin/chromium");
    let driver = path_from("FARGATE_CONNECT_CHROMEDRIVER", "/usr/bin/chromedriver");
    let browser = present(&chromium) & present(&driver);

    let terraform = match env::var_os("FARGATE_CONNECT_TERRAFORM") {
        Some(path) => Some(PathBuf::from(path)).filter(|p| present(p)),
        None => on_path("terraform"),
    };
    let plugins =
        path_from("FARGATE_CONNECT_TF_PLUGINS", "/opt/tf-plugins").join("registry.terraform.io/hashicorp/aws");
    let terraform_ok = terraform.is_some() & present(&plugins);

    // tests/src/postgres.rs looks in the same places.
    let postgres = match env::var_os("FARGATE_CONNECT_PG_BIN") {
        Some(dir) => present(&PathBuf::from(dir).join("initdb")),
        None => {
            let debian = Path::new("/usr/lib/postgresql");
            let versions = std::fs::read_dir(debian).into_iter().flatten().flatten();
            let found = versions.map(|v| v.path().join("bin/initdb")).any(|p| p.exists());
            present(debian) && found || on_path("initdb").is_some()
        }
    };

    // The bastion box (tests/bastion_box) needs root (namespaces, overlay, chroot) and the real
    // programs a bastion runs: cloud-init, sudo, nft, useradd, systemd-analyze, unshare.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    let box_tools = ["cloud-init", "sudo", "nft", "useradd", "systemd-analyze", "unshare", "nsenter", "visudo"];
    let box_ok = root && box_tools.iter().all(|tool| on_path(tool).is_some());
    if !box_ok {
        skip(
            required,
            "fc_skip_bastion_box",
            "root and cloud-init, sudo, nftables (apt-get install cloud-init sudo nftables) for the bastion box",
        );
    }
    if !postgres {
        skip(required, "fc_skip_postgres", "PostgreSQL's server (apt-get install postgresql)");
    }
    if !browser {
        skip(required, "fc_skip_browser", "Chromium/ChromeDriver (apt-get install chromium chromium-driver)");
    }
    if !terraform_ok {
        skip(
            required,
            "fc_skip_terraform",
            "Terraform + hashicorp/aws mirror (FARGATE_CONNECT_TERRAFORM, FARGATE_CONNECT_TF_PLUGINS)",
        );
    }
}

fn path_from(var: &str, default: &str) -> PathBuf {
    env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

/// Whether `path` exists; watches it, or the nearest folder it would appear in (not `/`).
fn present(path: &Path) -> bool {
    let watch = path.ancestors().find(|p| p.exists() && *p != Path::new("/"));
    if let Some(watch) = watch {
        println!("cargo::rerun-if-changed={}", watch.display());
    }
    path.exists()
}

fn on_path(name: &str) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = env::var_os("PATH").map(|p| env::split_paths(&p).collect()).unwrap_or_default();
    let found = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
    if found.is_none() {
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
    found
}

fn skip(required: bool, cfg: &str, what: &str) {
    if required {
        println!("cargo::warning={what} not found; FARGATE_CONNECT_REQUIRE_TOOLS is set, so its tests will fail");
    } else {
        println!("cargo::warning=SKIPPING the tests that need {what}: not found");
        println!("cargo::rustc-cfg={cfg}");
    }
}
