//! A real PHP application in a prison, as README's "PHP applications" recipe sets it up:
//! Debian's `wordpress` under mod_php and prefork, `PrisonSecurity ALL`, no network, its own
//! MariaDB server over a unix socket. The test drives the installer and an image upload like a
//! browser (curl), and checks the result from outside: the rows in the database, the files in
//! the uploads directory. Negative controls: without the socket bind the installer reports the
//! database error; without /tmp (PrisonTmp off) an upload fails.
//!
//! The MariaDB server is the test's own (private datadir and socket, `--skip-networking`),
//! stopped and removed at the end even when the test fails; the host's mysql service is never
//! touched.

mod common;

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Httpd, Mpm, Setup};

const DB_NAME: &str = "wordpress";
const DB_USER: &str = "wordpress";
const DB_PASSWORD: &str = "prison-test-password";
const ADMIN: &str = "prisonadmin";
const ADMIN_PASSWORD: &str = "Correct-Horse-Battery-Staple-1";
/// Where the site lives, as in Debian's /usr/share/doc/wordpress/examples/apache.conf.
const SITE: &str = "/blog";

/// Debian's mod_php (libapache2-mod-php: libphp8.2.so on Debian 12).
fn mod_php() -> PathBuf {
    fs::read_dir(common::libexec())
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("libphp") && name.ends_with(".so")
        })
        .expect("no libphp*.so in apache2's modules: make deps installs libapache2-mod-php")
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn uid_gid(user: &str) -> (u32, u32) {
    let out = Command::new("id")
        .args(["-u", user])
        .output()
        .expect("id -u");
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a uid");
    let out = Command::new("id")
        .args(["-g", user])
        .output()
        .expect("id -g");
    let gid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a gid");
    (uid, gid)
}

/// The test's own MariaDB server: datadir and socket in a scratch directory, no TCP.
struct Mariadb {
    dir: PathBuf,
    /// The directory of the socket, bound into the prison as `/run/mysqld`.
    socket_dir: PathBuf,
    server: Option<Child>,
}

impl Mariadb {
    fn start() -> Self {
        let dir = PathBuf::from(format!(
            "/tmp/mod_prison-mariadb.{}",
            common::unique_name("m")
        ));
        let _ = fs::remove_dir_all(&dir);
        let socket_dir = dir.join("mysqld");
        let mut db = Self {
            dir: dir.clone(),
            socket_dir: socket_dir.clone(),
            server: None,
        };
        let data = dir.join("data");
        mkdir(&dir, 0o755);
        mkdir(&data, 0o700);
        mkdir(&socket_dir, 0o755);
        let (uid, gid) = uid_gid("mysql");
        for path in [&data, &socket_dir] {
            chown(path, Some(uid), Some(gid)).expect("chown to mysql");
        }
        let out = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ])
            .output()
            .expect("running mariadb-install-db (make deps installs mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let server = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", db.socket().display()))
            .arg(format!(
                "--pid-file={}",
                socket_dir.join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", data.join("error.log").display()))
            .args(["--user=mysql", "--skip-networking", "--skip-log-bin"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd");
        db.server = Some(server);
        let started = Instant::now();
        while db.sql("SELECT 1").is_err() {
            let exited = db.server.as_mut().and_then(|s| s.try_wait().ok().flatten());
            assert!(
                exited.is_none() && started.elapsed() < Duration::from_secs(60),
                "mariadbd did not answer on {}: {}",
                db.socket().display(),
                fs::read_to_string(dir.join("data/error.log")).unwrap_or_default()
            );
            sleep(Duration::from_millis(200));
        }
        db.sql(&format!(
            "CREATE DATABASE {DB_NAME}; \
             CREATE USER '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASSWORD}'; \
             GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'localhost';"
        ))
        .expect("creating the database");
        db
    }

    fn socket(&self) -> PathBuf {
        self.socket_dir.join("mysqld.sock")
    }

    /// Runs SQL as the server's root (unix-socket authentication): tab-separated rows.
    fn sql(&self, query: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "--batch", "--skip-column-names", "-e", query])
            .output()
            .map_err(|e| format!("running mariadb: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SAFETY: kill(2) on the server this test spawned and has not reaped yet.
            unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
            let started = Instant::now();
            while server.try_wait().ok().flatten().is_none() {
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = server.kill();
                    let _ = server.wait();
                    break;
                }
                sleep(Duration::from_millis(100));
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A browser: curl with a cookie jar, against one httpd.
struct Browser {
    port: u16,
    jar: PathBuf,
}

/// An answer: status, the Location header if any, the body.
struct Page {
    status: u16,
    location: String,
    body: String,
}

impl Browser {
    fn get(&self, path: &str) -> Page {
        self.curl(path, &[])
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut args = Vec::new();
        for (key, value) in form {
            args.push("--data-urlencode".to_owned());
            args.push(format!("{key}={value}"));
        }
        self.curl(path, &args)
    }

    fn curl(&self, path: &str, extra: &[String]) -> Page {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "60",
                "-o",
                "-",
                "-w",
                "\n%{http_code} %{redirect_url}",
            ])
            .arg("-b")
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .args(extra)
            .arg(&url)
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
        let (status, location) = last.split_once(' ').unwrap_or((last, ""));
        Page {
            status: status.parse().unwrap_or(0),
            location: location.to_owned(),
            body: body.to_owned(),
        }
    }
}

/// The value of the first `name="<field>" value="..."` input in a page.
fn form_value(body: &str, field: &str) -> Option<String> {
    let at = body.find(&format!("name=\"{field}\""))?;
    let rest = &body[at..];
    let value = rest.find("value=\"")? + "value=\"".len();
    let end = rest[value..].find('"')?;
    Some(rest[value..value + end].to_owned())
}

/// What the prison needs for WordPress, beside the scratch directories it binds in.
struct Site {
    scratch: PathBuf,
    uploads: PathBuf,
}

impl Site {
    fn new() -> Self {
        let scratch = PathBuf::from(format!(
            "/tmp/mod_prison-wordpress.{}",
            common::unique_name("w")
        ));
        let _ = fs::remove_dir_all(&scratch);
        mkdir(&scratch, 0o755);
        let (uid, gid) = uid_gid(common::USER);
        let uploads = scratch.join("uploads");
        mkdir(&uploads, 0o755);
        chown(&uploads, Some(uid), Some(gid)).expect("chown uploads");
        // Debian's /usr/share/wordpress/wp-config.php reads /etc/wordpress/config-<host>.php.
        let etc = scratch.join("etc-wordpress");
        mkdir(&etc, 0o755);
        fs::write(
            etc.join("config-127.0.0.1.php"),
            format!(
                "<?php\n\
                 define('DB_NAME', '{DB_NAME}');\n\
                 define('DB_USER', '{DB_USER}');\n\
                 define('DB_PASSWORD', '{DB_PASSWORD}');\n\
                 define('DB_HOST', 'localhost');\n\
                 define('WP_CONTENT_DIR', '/var/lib/wordpress/wp-content');\n\
                 define('DISABLE_WP_CRON', true);\n"
            ),
        )
        .expect("writing the WordPress config");
        Self { scratch, uploads }
    }

    fn httpd(&self, db: &Mariadb, socket_bind: bool) -> Httpd {
        let s = self.scratch.display();
        let mut setup = Setup::new(Mpm::Prefork)
            .line(format!("LoadModule php_module {}", mod_php().display()))
            .line("<FilesMatch \"\\.php$\">\n    SetHandler application/x-httpd-php\n</FilesMatch>")
            .line(format!("Alias {SITE} /usr/share/wordpress"))
            .line("<Directory /usr/share/wordpress>\n    DirectoryIndex index.php\n</Directory>")
            .line("PrisonSecurity ALL")
            .line("PrisonBind /usr")
            .line(format!("PrisonBind {s}/etc-wordpress /etc/wordpress"))
            .line("PrisonBind /var/lib/wordpress")
            .line(format!(
                "PrisonBind {} /var/lib/wordpress/wp-content/uploads rw",
                self.uploads.display()
            ));
        if socket_bind {
            // PHP looks for /var/run/mysqld/mysqld.sock: the prison's /var/run leads to /run.
            setup = setup.line(format!(
                "PrisonBind {} /run/mysqld",
                db.socket_dir.display()
            ));
        }
        let mut httpd = Httpd::new(setup);
        httpd.start();
        httpd
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

fn browser(httpd: &Httpd, label: &str) -> Browser {
    Browser {
        port: httpd.port,
        jar: httpd.root.join(format!("cookies-{label}")),
    }
}

fn install(b: &Browser) -> Page {
    b.post(
        &format!("{SITE}/wp-admin/install.php?step=2"),
        &[
            ("weblog_title", "A jailed blog"),
            ("user_name", ADMIN),
            ("admin_password", ADMIN_PASSWORD),
            ("admin_password2", ADMIN_PASSWORD),
            ("pw_weak", "1"),
            ("admin_email", "admin@example.org"),
            ("blog_public", "0"),
            ("Submit", "Install WordPress"),
        ],
    )
}

/// Uploads `png` through the browser uploader's form, as a logged-in admin.
fn upload(b: &Browser, png: &Path) -> Page {
    let page = b.get(&format!("{SITE}/wp-admin/media-new.php?browser-uploader"));
    let nonce = form_value(&page.body, "_wpnonce")
        .unwrap_or_else(|| panic!("no upload form: {}\n{}", page.status, page.body));
    b.curl(
        &format!("{SITE}/wp-admin/media-new.php"),
        &[
            "-F".into(),
            format!("async-upload=@{}", png.display()),
            "-F".into(),
            "post_id=0".into(),
            "-F".into(),
            format!("_wpnonce={nonce}"),
            "-F".into(),
            "html-upload=Upload".into(),
        ],
    )
}

/// The image the test uploads, made with GD on the host (400x300, so that WordPress makes
/// thumbnails with GD inside the prison).
fn make_png(path: &Path) {
    let script = format!(
        "$i = imagecreatetruecolor(400, 300); imagefill($i, 0, 0, imagecolorallocate($i, 20, 90, 160)); \
         imagepng($i, '{}') or exit(1);",
        path.display()
    );
    let status = Command::new("php")
        .args(["-r", &script])
        .status()
        .expect("running php (php-cli, php-gd)");
    assert!(status.success(), "making {}", path.display());
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn wordpress_installs_and_uploads_in_a_prison() {
    common::require_environment();
    assert!(
        Path::new("/usr/share/wordpress/wp-admin/install.php").exists(),
        "Debian's wordpress is not installed: make deps"
    );
    mod_php();
    let db = Mariadb::start();
    let site = Site::new();
    let started = Instant::now();

    // Negative control: without the socket, the same prison cannot reach the database.
    {
        let httpd = site.httpd(&db, false);
        let page = install(&browser(&httpd, "control"));
        assert!(
            page.body
                .contains("Error establishing a database connection"),
            "without the socket bind the installer did not report the database error: {} {}\n{}",
            page.status,
            page.location,
            page.body
        );
    }
    assert_eq!(db.sql(&format!("SHOW TABLES FROM {DB_NAME}")).unwrap(), "");

    let mut httpd = site.httpd(&db, true);
    assert!(
        httpd
            .error_log()
            .contains("security ALL, no network: ready"),
        "not the prison the recipe describes:\n{}",
        httpd.error_log()
    );
    let b = browser(&httpd, "admin");
    let page = install(&b);
    assert!(
        page.status == 200 && page.body.contains("Success!"),
        "the installer failed: {} {}\n{}\nerror log:\n{}",
        page.status,
        page.location,
        page.body,
        httpd.error_log()
    );
    // From outside: the installer's rows.
    let users = db
        .sql(&format!("SELECT user_login FROM {DB_NAME}.wp_users"))
        .unwrap();
    assert_eq!(users.trim(), ADMIN);
    let siteurl = db
        .sql(&format!(
            "SELECT option_value FROM {DB_NAME}.wp_options WHERE option_name = 'siteurl'"
        ))
        .unwrap();
    assert_eq!(
        siteurl.trim(),
        format!("http://127.0.0.1:{}{SITE}", httpd.port)
    );

    // Log in as a browser does (the test cookie first).
    b.get(&format!("{SITE}/wp-login.php"));
    let page = b.post(
        &format!("{SITE}/wp-login.php"),
        &[
            ("log", ADMIN),
            ("pwd", ADMIN_PASSWORD),
            ("wp-submit", "Log In"),
            ("testcookie", "1"),
        ],
    );
    assert!(
        page.status == 302 && page.location.contains("/wp-admin/"),
        "login failed: {} {}\n{}",
        page.status,
        page.location,
        page.body
    );

    // Upload through the browser uploader (no JavaScript): PHP puts the file in /tmp first.
    let png = httpd.root.join("jailed-upload.png");
    make_png(&png);
    let page = upload(&b, &png);
    assert!(
        page.status == 302 && page.location.contains("upload.php"),
        "the upload failed: {} {}\n{}\nerror log:\n{}",
        page.status,
        page.location,
        page.body,
        httpd.error_log()
    );
    // From outside: the attachment row and the files, thumbnails made by GD included.
    let attachment = db
        .sql(&format!(
            "SELECT post_title, post_mime_type FROM {DB_NAME}.wp_posts WHERE post_type = 'attachment'"
        ))
        .unwrap();
    assert_eq!(attachment.trim(), "jailed-upload\timage/png");
    let files = files_under(&site.uploads);
    let original = files.iter().find(|f| f.ends_with("/jailed-upload.png"));
    assert!(
        original.is_some(),
        "no upload in {}: {files:?}",
        site.uploads.display()
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("/jailed-upload-150x150.png")),
        "no thumbnail in {}: {files:?}",
        site.uploads.display()
    );
    let (uid, _) = uid_gid(common::USER);
    let meta = fs::metadata(site.uploads.join(original.unwrap())).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        uid,
        "written by the children's user"
    );

    // Negative control, after a graceful restart while logged in: a prison without /tmp
    // (PrisonTmp off) fails the upload as the issue saw it.
    httpd.append_config("PrisonTmp off");
    httpd.graceful();
    let second = httpd.root.join("second-upload.png");
    make_png(&second);
    let page = upload(&b, &second);
    assert!(
        page.status == 500 && page.body.contains("Missing a temporary folder."),
        "an upload without /tmp in the prison: {} {}\n{}",
        page.status,
        page.location,
        page.body
    );
    assert!(
        !files_under(&site.uploads)
            .iter()
            .any(|f| f.contains("second-upload")),
        "uploaded without /tmp"
    );
    eprintln!(
        "WordPress installed and uploaded to in {:?}",
        started.elapsed()
    );
}

/// A minimal SMTP relay on 127.0.0.1 for one test: accepts every message and keeps them.
struct Relay {
    port: u16,
    messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Relay {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the relay");
        let port = listener.local_addr().expect("the relay's address").port();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = messages.clone();
        // Ends with the test binary; it only ever answers this test's own clients.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(mut out) = stream.try_clone() else {
                    continue;
                };
                let mut lines = BufReader::new(stream);
                let mut message = String::new();
                let mut in_data = false;
                let _ = out.write_all(b"220 relay.test ESMTP\r\n");
                let mut line = String::new();
                while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let reply: &[u8] = if in_data {
                        if line.trim_end() == "." {
                            in_data = false;
                            kept.lock().unwrap().push(std::mem::take(&mut message));
                            b"250 queued\r\n"
                        } else {
                            message.push_str(&line);
                            b""
                        }
                    } else {
                        match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                            Some("DATA") => {
                                in_data = true;
                                b"354 go ahead\r\n"
                            }
                            Some("QUIT") => {
                                let _ = out.write_all(b"221 bye\r\n");
                                break;
                            }
                            _ => b"250 ok\r\n",
                        }
                    };
                    let _ = out.write_all(reply);
                    line.clear();
                }
            }
        });
        Self { port, messages }
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

/// PHP's mail() in a prison, as the README's recipe says: /bin/sh (mail() runs sendmail_path
/// through it), a non-setuid SMTP client (msmtp) sending to a relay, and PrisonIP so that the
/// prison has a network. Control: without PrisonIP, mail() fails and the relay gets nothing.
#[test]
fn php_mail_reaches_a_relay_with_msmtp_and_prison_ip() {
    common::require_environment();
    assert!(
        Path::new("/usr/bin/msmtp").exists(),
        "msmtp is not installed: make deps"
    );
    let relay = Relay::start();
    let mut setup = Setup::new(Mpm::Prefork)
        .line(format!("LoadModule php_module {}", mod_php().display()))
        .line("<FilesMatch \"\\.php$\">\n    SetHandler application/x-httpd-php\n</FilesMatch>")
        .line("PrisonSecurity ALL")
        .line("PrisonBind /usr")
        .line("php_admin_value sendmail_path \"/usr/bin/msmtp -t\"");
    // /bin/sh and the dynamic loader as the host has them: merged-/usr symlinks, or binds.
    let mut links = Vec::new();
    for dir in ["bin", "lib", "lib64"] {
        let host = Path::new("/").join(dir);
        match fs::read_link(&host) {
            Ok(target) => links.push((dir, target)),
            Err(_) if host.is_dir() => setup = setup.line(format!("PrisonBind {}", host.display())),
            Err(_) => {}
        }
    }
    let mut httpd = Httpd::new(setup);
    // (msmtp -t writes the message to a temporary file first: the prison's private /tmp.)
    // msmtp's system configuration, root-owned, as the recipe binds it.
    let msmtprc = httpd.root.join("msmtprc");
    fs::write(
        &msmtprc,
        format!(
            "account default\nhost 127.0.0.1\nport {}\nfrom blog@example.org\n",
            relay.port
        ),
    )
    .expect("writing msmtprc");
    httpd.append_config(&format!("PrisonBind {} /etc/msmtprc", msmtprc.display()));
    for (dir, target) in &links {
        std::os::unix::fs::symlink(target, httpd.prison.join(dir)).expect("a /usr symlink");
    }
    fs::write(
        httpd.prison.join("www/mail.php"),
        "<?php echo mail('admin@example.org', 'Sent from the prison', 'Hello from a jailed child')\n\
         ? \"sent\\n\" : \"not sent\\n\";\n",
    )
    .expect("writing mail.php");
    httpd.start();

    // Control: no PrisonIP, no network: msmtp cannot reach the relay.
    let page = common::http_get(httpd.port, "/mail.php").expect("GET /mail.php");
    assert_eq!(page.body, "not sent\n", "mail() without PrisonIP");
    assert!(relay.messages().is_empty(), "{:?}", relay.messages());
    let log = httpd.error_log();
    assert!(
        log.contains(&format!(
            "msmtp: cannot connect to 127.0.0.1, port {}",
            relay.port
        )),
        "mail() failed for another reason than the network:\n{log}"
    );

    httpd.append_config("PrisonIP 127.0.0.1");
    httpd.graceful();
    let page = common::http_get(httpd.port, "/mail.php").expect("GET /mail.php");
    assert_eq!(
        page.body,
        "sent\n",
        "mail() with PrisonIP:\n{}",
        httpd.error_log()
    );
    let messages = relay.messages();
    assert!(
        messages.len() == 1
            && messages[0].contains("Subject: Sent from the prison")
            && messages[0].contains("Hello from a jailed child"),
        "the relay got {messages:?}"
    );
}
