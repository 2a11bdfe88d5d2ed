//! Generates the httpd/APR bindings for `src/apache/sys.rs`.
//!
//! Headers are found the way apxs itself would: `$APXS -q INCLUDEDIR`, `$APXS -q EXTRA_INCLUDES`
//! and the APR config tool's `--includes --cppflags`. Nothing is hard-coded to one distribution.
//! When the target OS differs from the host's (e.g. `cargo check --target x86_64-unknown-freebsd`
//! on Linux), the httpd glue is compiled out, so the pure parts and the FreeBSD backend can still
//! be type-checked here, unless `PRISON_TARGET_INCLUDE` names the target's libc headers
//! (directories separated by `:`): then the glue is generated over the host's httpd headers and
//! the target's libc headers, as `make check-freebsd-link` does to link the whole module for
//! FreeBSD (docs/freebsd.md "Linked, not only type-checked").

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=apxs/wrapper.h");
    println!("cargo:rerun-if-env-changed=APXS");
    println!("cargo:rerun-if-env-changed=PRISON_TARGET_INCLUDE");
    println!("cargo:rustc-check-cfg=cfg(prison_httpd)");

    let mut clang_args: Vec<String> = Vec::new();
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let cross = target_os != env::consts::OS;
    if cross {
        let Ok(include) = env::var("PRISON_TARGET_INCLUDE") else {
            println!(
                "cargo:warning=target OS {target_os} is not the host's: httpd glue compiled out"
            );
            return;
        };
        // The target's libc headers instead of the host's; clang's own (stddef.h...) stay.
        let target = env::var("TARGET").expect("cargo sets TARGET");
        clang_args.push(format!("--target={target}"));
        clang_args.push("-nostdlibinc".to_owned());
        clang_args.extend(include.split(':').map(|dir| format!("-isystem{dir}")));
    }
    let apxs = env::var("APXS").unwrap_or_else(|_| "apxs".to_owned());
    clang_args.push(format!("-I{}", query(&apxs, "INCLUDEDIR")));
    clang_args.extend(
        query(&apxs, "EXTRA_INCLUDES")
            .split_whitespace()
            // Cross: the host's libc headers must not shadow the target's.
            .filter(|arg| !(cross && *arg == "-I/usr/include"))
            .map(str::to_owned),
    );
    let apr_config = query(&apxs, "APR_CONFIG");
    let apr_config = if apr_config.is_empty() {
        "apr-1-config".to_owned()
    } else {
        apr_config
    };
    clang_args.extend(
        run(&apr_config, &["--includes", "--cppflags"])
            .split_whitespace()
            .map(str::to_owned),
    );

    let bindings = bindgen::Builder::default()
        .header("apxs/wrapper.h")
        .clang_args(&clang_args)
        .allowlist_type("module_struct|module|command_rec|cmd_parms|cmd_how|server_rec|process_rec")
        .allowlist_type("apr_pool_t|apr_status_t|ap_unixd_config_rec")
        .allowlist_function("ap_hook_(post_config|check_config|drop_privileges|child_init|monitor)")
        .allowlist_function("ap_log_error_|ap_check_cmd_context|ap_state_query|ap_mpm_query")
        .allowlist_function(
            "ap_retained_data_(create|get)|ap_get_server_description|ap_runtime_dir_relative|ap_find_linked_module",
        )
        .allowlist_type("ap_directive_t")
        .allowlist_var("ap_conftree")
        .allowlist_function(
            "apr_pstrdup|apr_palloc|apr_pool_cleanup_register|apr_pool_cleanup_null|apr_pool_userdata_(set|get)",
        )
        .allowlist_var("ap_unixd_config|ap_server_conf|ap_server_root")
        .allowlist_var("MODULE_MAGIC_(NUMBER_MAJOR|NUMBER_MINOR|COOKIE)")
        .allowlist_var("APR_HOOK_.*|APLOG_(EMERG|ALERT|CRIT|ERR|WARNING|NOTICE|INFO|DEBUG)")
        .allowlist_var("RSRC_CONF|GLOBAL_ONLY|NOT_IN_.*|OK|DECLINED|DONE")
        .allowlist_var("AP_SQ_.*|AP_MPMQ_.*")
        .default_macro_constant_type(bindgen::MacroTypeVariation::Signed)
        // httpd's header comments hold C snippets that rustdoc would run as doctests.
        .generate_comments(false)
        .derive_debug(false)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen over apxs/wrapper.h with {clang_args:?}: {e}"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("httpd_sys.rs");
    bindings
        .write_to_file(&out)
        .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    println!("cargo:rustc-cfg=prison_httpd");
}

fn query(apxs: &str, var: &str) -> String {
    run(apxs, &["-q", var])
}

fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "running `{tool} {}`: {e} (install apache2-dev, or set APXS=/path/to/apxs)",
            args.join(" ")
        )
    });
    assert!(
        out.status.success(),
        "`{tool} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
