//! A real MQTT broker (`mosquitto`, Debian package `mosquitto`) for the tests
//! that need one: started on a free loopback port with a generated
//! configuration, a password file (`mosquitto_passwd`), persistence and its log
//! in a folder of the test's, optionally TLS with a CA and server certificate
//! made for the test (`openssl`). Restartable on the same port and data.
//! Clients are `mosquitto_sub`/`mosquitto_pub` (`mosquitto-clients`). A missing
//! program fails the test: it is never skipped.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::free_port;

/// A program from the PATH, else from the Debian package's folders; fails the
/// test naming the package when it is missing.
fn program(name: &str, package: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([Path::new("/usr/sbin").join(name), Path::new("/usr/bin").join(name)])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing: this test needs a real MQTT broker and its clients; install them with \
                 `apt-get install {package}` (scripts/test installs it)"
            )
        })
}

pub const USER: &str = "hpflow";
pub const PASSWORD: &str = "pump-s3cret";

/// The broker's TLS material, made for one test.
pub struct Tls {
    /// PEM of the CA that signed the server and client certificates.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client certificate and key signed by the same CA.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Makes a CA, a server certificate for 127.0.0.1 and `localhost` and a
/// client certificate in `dir` with the `openssl` command line.
pub fn make_tls(dir: &Path) -> Tls {
    let openssl = program("openssl", "openssl");
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=hpflow test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    // A key and a certificate signed by the CA, for `name` with `ext`.
    let issue = |name: &str, subject: &str, ext: &str| {
        let (key, csr, extfile, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
            format!("{name}.pem"),
        );
        run(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ]);
        std::fs::write(dir.join(&extfile), ext).unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extfile,
            "-out",
            &pem,
        ]);
    };
    issue(
        "server",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    );
    issue(
        "client",
        "/CN=hpflow",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
    );
    Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}

/// A `mosquitto` of our own.
pub struct Mosquitto {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
    /// The CA file clients check the broker with, and the client certificate
    /// and key they show, when it serves TLS.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Mosquitto {
    /// A broker that asks for [`USER`]/[`PASSWORD`], with its files in `dir`.
    pub fn start(dir: &Path) -> Mosquitto {
        Mosquitto::start_with(dir, None)
    }

    /// As [`start`](Self::start), serving TLS only with `tls`'s certificate
    /// and asking every client for a certificate signed by its CA.
    pub fn start_with(dir: &Path, tls: Option<&Tls>) -> Mosquitto {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let passwd = dir.join("passwd");
        let out = Command::new(program("mosquitto_passwd", "mosquitto"))
            .arg("-b")
            .arg("-c")
            .arg(&passwd)
            .args([USER, PASSWORD])
            .output()
            .expect("mosquitto_passwd runs");
        assert!(
            out.status.success(),
            "mosquitto_passwd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut conf = format!(
            "user root\nper_listener_settings false\nallow_anonymous false\npassword_file {}\n\
             persistence true\npersistence_location {}/\nautosave_interval 1\n\
             log_dest file {}\nlog_type all\nlistener {port} 127.0.0.1\n",
            passwd.display(),
            dir.join("data").display(),
            dir.join("mosquitto.log").display(),
        );
        if let Some(t) = tls {
            conf.push_str(&format!(
                "certfile {}\nkeyfile {}\ncafile {}\nrequire_certificate true\n",
                t.cert.display(),
                t.key.display(),
                t.ca.display()
            ));
        }
        std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        let mut m = Mosquitto {
            child: None,
            dir: dir.to_path_buf(),
            port,
            tls: tls.map(|t| (t.ca.clone(), t.client_cert.clone(), t.client_key.clone())),
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let child = Command::new(program("mosquitto", "mosquitto"))
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("mosquitto exited ({status}) at start:\n{}", self.log());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen on {} within 10 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it as a service manager would (SIGTERM: it saves its retained
    /// messages) and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    fn client_args(&self, cmd: &mut Command) {
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-u",
            USER,
            "-P",
            PASSWORD,
        ]);
        if let Some((ca, cert, key)) = &self.tls {
            cmd.arg("--cafile")
                .arg(ca)
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key);
        }
    }

    /// Every retained message under `filter` now, as (topic, payload), by
    /// subscribing until the first message that is not retained or `wait`.
    pub fn retained(&self, filter: &str, wait: Duration) -> Vec<(String, String)> {
        let mut cmd = Command::new(program("mosquitto_sub", "mosquitto-clients"));
        self.client_args(&mut cmd);
        cmd.args(["-t", filter, "-v", "--retained-only", "-W"])
            .arg(wait.as_secs().max(1).to_string());
        let out = cmd.output().expect("mosquitto_sub runs");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .map(|l| match l.split_once(' ') {
                Some((t, p)) => (t.to_string(), p.to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect()
    }

    /// The retained payload of one topic, if there is one.
    pub fn retained_one(&self, topic: &str) -> Option<String> {
        self.retained(topic, Duration::from_secs(1))
            .into_iter()
            .find(|(t, _)| t == topic)
            .map(|(_, p)| p)
    }

    /// Publishes one message.
    pub fn publish(&self, topic: &str, payload: &str, retain: bool) {
        let mut cmd = Command::new(program("mosquitto_pub", "mosquitto-clients"));
        self.client_args(&mut cmd);
        cmd.args(["-t", topic, "-m", payload, "-q", "1"]);
        if retain {
            cmd.arg("-r");
        }
        let out = cmd.output().expect("mosquitto_pub runs");
        assert!(
            out.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Subscribes in the background to `filter`; the lines (`topic payload`)
    /// it received so far are read with [`Subscription::lines`].
    pub fn subscribe(&self, filter: &str) -> Subscription {
        let out = self.dir.join(format!("sub-{}.txt", free_port()));
        let file = std::fs::File::create(&out).unwrap();
        let mut cmd = Command::new(program("mosquitto_sub", "mosquitto-clients"));
        self.client_args(&mut cmd);
        cmd.args(["-t", filter, "-v"]).stdout(file).stderr(Stdio::null());
        let child = cmd.spawn().expect("mosquitto_sub starts");
        Subscription { child, out }
    }
}

/// A running `mosquitto_sub`.
pub struct Subscription {
    child: Child,
    out: PathBuf,
}

impl Subscription {
    pub fn lines(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| match l.split_once(' ') {
                Some((t, p)) => (t.to_string(), p.to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
