//! The module as httpd sees it: what it exports, and `apache2 -t` on valid and invalid
//! configurations (each error shown as httpd's own syntax error, with the line and directive).

mod common;

use std::process::Command;

use common::{Httpd, Mpm, Setup};

#[test]
fn module_exports_only_prison_module() {
    common::require_environment();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(common::module())
        .output()
        .expect("running nm");
    assert!(out.status.success(), "nm failed");
    let symbols: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();
    assert_eq!(symbols, ["prison_module"], "exported symbols");
}

#[test]
fn full_valid_configuration_is_accepted() {
    let cpus = if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        "0-1"
    } else {
        "0"
    };
    let setup = Setup::new(Mpm::Event)
        .line("PrisonIP 192.0.2.10 2001:db8::10")
        .line("PrisonSecurity ipc")
        .line(format!("PrisonCPU {cpus}"))
        .line("PrisonMemory 256M 1G")
        .line("PrisonProcesses 256")
        .line("PrisonBind /usr/share/zoneinfo /zoneinfo ro");
    let httpd = Httpd::new(setup);
    let (ok, text) = httpd.config_test();
    assert!(ok, "apache2 -t refused a valid configuration:\n{text}");
    assert!(text.contains("Syntax OK"), "{text}");
}

/// One bad form per line: the directive as written, and what httpd must say about it.
const BAD_FORMS: &[(&str, &str)] = &[
    ("PrisonDir relative/path", "PrisonDir: "),
    ("PrisonDir /nonexistent/prison", "PrisonDir: "),
    ("PrisonDir /etc/hostname", "PrisonDir: "),
    ("PrisonIP not-an-address", "PrisonIP: "),
    ("PrisonIP 192.0.2.1 192.0.2.2", "PrisonIP: "),
    ("PrisonSecurity Some", "PrisonSecurity: "),
    ("PrisonCPU 10-8", "PrisonCPU: "),
    ("PrisonCPU 1,,2", "PrisonCPU: "),
    ("PrisonCPU x", "PrisonCPU: "),
    ("PrisonCPU 4095", "PrisonCPU: "),
    ("PrisonMemory 2G 1G", "PrisonMemory: "),
    ("PrisonMemory 12Q 0", "PrisonMemory: "),
    ("PrisonProcesses many", "PrisonProcesses: "),
    ("PrisonName bad.name", "PrisonName: "),
    ("PrisonName 12345", "PrisonName: "),
    ("PrisonBind /nonexistent/source", "PrisonBind: "),
    ("PrisonBind /usr /usr sometimes", "PrisonBind: "),
    ("PrisonBind /usr /dev", "PrisonBind: "),
    (
        "PrisonSecurity ALL\nPrisonSecurity IPC",
        "PrisonSecurity: given twice",
    ),
    ("PrisonConnect 192.0.2.5/24", "PrisonConnect: "),
    ("PrisonConnect none 192.0.2.10", "PrisonConnect: "),
    ("ChrootDir /tmp", "ChrootDir"),
    ("Mutex sysvsem default", "Mutex"),
];

#[test]
fn each_bad_form_is_a_syntax_error_naming_the_directive() {
    let mut failures = Vec::new();
    for (lines, message) in BAD_FORMS {
        let mut setup = Setup::new(Mpm::Event);
        for line in lines.lines() {
            setup = setup.line(line);
        }
        let httpd = Httpd::new(setup);
        let (ok, text) = httpd.config_test();
        if ok || !text.contains(message) {
            failures.push(format!(
                "{lines:?}: wanted {message:?}, apache2 -t said:\n{text}"
            ));
        }
        // Errors in directives come with httpd's file and line.
        let line_error = !lines.starts_with("ChrootDir") && !lines.starts_with("Mutex");
        if line_error && !text.contains("Syntax error on line") {
            failures.push(format!("{lines:?}: no line number in:\n{text}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn prison_directives_outside_server_config_are_refused() {
    for (wrap_open, wrap_close) in [
        ("<VirtualHost 127.0.0.1:80>", "</VirtualHost>"),
        ("<Directory /www>", "</Directory>"),
    ] {
        let setup = Setup::new(Mpm::Event)
            .unjailed()
            .line(wrap_open)
            .line("PrisonSecurity ALL")
            .line(wrap_close);
        let httpd = Httpd::new(setup);
        let (ok, text) = httpd.config_test();
        assert!(!ok, "{wrap_open}: accepted:\n{text}");
        assert!(
            text.contains("PrisonSecurity") && text.contains("Syntax error on line"),
            "{wrap_open}: {text}"
        );
    }
}

#[test]
fn prison_connect_without_prison_ip_is_refused_at_config_test() {
    let httpd = Httpd::new(Setup::new(Mpm::Event).line("PrisonConnect 192.0.2.10:3306"));
    let (ok, text) = httpd.config_test();
    assert!(!ok, "accepted:\n{text}");
    assert!(
        text.contains("PrisonConnect is set but PrisonIP is not") && text.contains("set PrisonIP"),
        "{text}"
    );
    // Control: with PrisonIP the same line passes.
    let httpd = Httpd::new(
        Setup::new(Mpm::Event)
            .line("PrisonIP 192.0.2.1")
            .line("PrisonConnect 192.0.2.10:3306"),
    );
    let (ok, text) = httpd.config_test();
    assert!(ok, "refused:\n{text}");
}

#[test]
fn a_prison_directive_without_prison_dir_is_refused() {
    let setup = Setup::new(Mpm::Event).unjailed().line("PrisonSecurity ALL");
    let httpd = Httpd::new(setup);
    let (ok, text) = httpd.config_test();
    assert!(!ok, "accepted:\n{text}");
    assert!(
        text.contains("PrisonSecurity is set but PrisonDir is not"),
        "{text}"
    );
}

#[test]
fn loads_and_serves_under_every_mpm_without_a_prison() {
    for mpm in Mpm::ALL {
        let mut httpd = Httpd::new(Setup::new(mpm).unjailed());
        httpd.start();
        let response = httpd.get("/");
        assert_eq!(response.status, 200, "{mpm:?}");
        assert_eq!(response.body, common::INDEX, "{mpm:?}");
        // Loaded, and it says it jails nothing without PrisonDir.
        assert!(
            httpd
                .error_log()
                .contains("no PrisonDir, children are not jailed"),
            "{mpm:?}: {}",
            httpd.error_log()
        );
        httpd.stop_cleanly();
    }
}

/// PARANOID checks each directory above PrisonDir as sshd does ChrootDirectory's: the issue's
/// `/srv/prison` mode 0757 above a correct PrisonDir is refused with the path and the mode.
/// A PARANOID=0 build does not check ancestors: there the same tree is accepted.
#[test]
fn a_writable_ancestor_of_prison_dir_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let httpd = Httpd::new(Setup::new(Mpm::Event));
    // Negative control: the harness's tree (root-owned, 0755, under the sticky /tmp) passes.
    let (ok, text) = httpd.config_test();
    assert!(ok, "the harness's own tree was refused:\n{text}");
    let chmod = |mode| {
        std::fs::set_permissions(&httpd.root, std::fs::Permissions::from_mode(mode))
            .expect("chmod the ServerRoot")
    };
    chmod(0o757);
    let (ok, text) = httpd.config_test();
    chmod(0o755);
    if !mod_prison::config::PARANOID {
        assert!(
            ok,
            "a PARANOID=0 build refused a world-writable ancestor:\n{text}"
        );
        return;
    }
    assert!(!ok, "a world-writable ancestor was accepted:\n{text}");
    let want = format!(
        "PrisonDir: {:?}, above {:?}, must not be group or world writable (mode 0757)",
        httpd.root, httpd.prison
    );
    assert!(
        text.contains(&want) && text.contains("Syntax error on line"),
        "wanted {want:?} with a line number, apache2 -t said:\n{text}"
    );
}

/// A loopback PrisonIP is valid but shares the host's loopback: `-t` says so, and not for an
/// address of the prison's own nor with PrisonConnect.
#[test]
fn a_loopback_prison_ip_is_warned_about() {
    for (ip, warned) in [
        ("127.0.0.1", Some("127.0.0.1 is a loopback address")),
        ("::1", Some("::1 is a loopback address")),
        ("192.0.2.10 2001:db8::10", None),
        // PrisonConnect reaches only the loopback services it lists.
        ("127.0.0.1\nPrisonConnect 127.0.0.1:3306", None),
    ] {
        let httpd = Httpd::new(Setup::new(Mpm::Prefork).line(format!("PrisonIP {ip}")));
        let (ok, text) = httpd.config_test();
        assert!(ok, "PrisonIP {ip}: refused:\n{text}");
        match warned {
            Some(warning) => assert!(
                text.contains(&format!(
                    "mod_prison: PrisonIP: {warning}: the prison shares the host's loopback"
                )) && text.contains("PrisonIP does not restrict destinations"),
                "PrisonIP {ip}: no loopback warning in:\n{text}"
            ),
            None => assert!(
                !text.contains("loopback"),
                "PrisonIP {ip}: a loopback warning for an address of its own:\n{text}"
            ),
        }
    }
}
