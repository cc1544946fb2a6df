//! Security as an operator meets it: `confluo serve` processes with mutual TLS between
//! nodes, client users, client TLS and certificate rotation, on 127.0.0.1 with real sockets,
//! certificates minted by the test (rcgen), logs read from the processes' stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use confluo_server::PasswordHash;
use confluo_transport::testing::TestCa;

mod common;

use common::{BIN, connect_with, until_writable};

fn free_addr() -> SocketAddr {
    common::free_addr(3_000)
}

/// Fast hashes: the tests check the scheme, not its cost.
fn hash(password: &str) -> String {
    PasswordHash::new(password.as_bytes(), NonZeroU32::new(1000).unwrap()).to_string()
}

/// A `confluo serve` process (stderr in a file), killed if the test ends early.
struct Process {
    process: common::Process,
    log: PathBuf,
}

impl Process {
    fn signal(&self, sig: &str) {
        self.process.signal(sig);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has a line containing every one of `words`.
    fn until_logged(&self, words: &[&str], within: Duration) {
        let start = Instant::now();
        while !self
            .log()
            .lines()
            .any(|l| words.iter().all(|w| l.contains(w)))
        {
            assert!(
                start.elapsed() < within,
                "no line with {words:?} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn serve(config: &Path) -> Process {
    let log = config.with_extension("log");
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn confluo serve");
    Process {
        process: common::Process(child),
        log,
    }
}

/// Nodes n0, n1, ... as leaders; `security(i)` is each one's security text (top-level keys
/// first, then tables). Returns each config's path and client address.
fn leaders(
    dir: &Path,
    n: usize,
    security: impl Fn(usize) -> (String, String),
) -> Vec<(PathBuf, SocketAddr, SocketAddr)> {
    let nodes: Vec<(SocketAddr, SocketAddr)> = (0..n).map(|_| (free_addr(), free_addr())).collect();
    let entry = |i: usize| {
        format!(
            "name = \"n{i}\"\nid = {}\ndatacenter = \"dc{i}\"\nrole = \"leader\"\nclient_addr = \"{}\"\npeer_addr = \"{}\"\n",
            i + 1,
            nodes[i].0,
            nodes[i].1
        )
    };
    (0..n)
        .map(|me| {
            let (top, tables) = security(me);
            let mut text = format!(
                "cluster_id = 9\n{top}\n[node]\n{}data_dir = \"data-{me}\"\n",
                entry(me)
            );
            for o in (0..n).filter(|&o| o != me) {
                text.push_str(&format!("[[peers]]\n{}", entry(o)));
            }
            text.push_str(&tables);
            let path = dir.join(format!("n{me}.toml"));
            std::fs::write(&path, text).expect("write config");
            (path, nodes[me].0, nodes[me].1)
        })
        .collect()
}

/// Writes `ca.pem` (under `prefix`) and a certificate and key per name.
fn mint(dir: &Path, ca: &TestCa, prefix: &str, names: &[&str]) {
    std::fs::write(dir.join(format!("{prefix}ca.pem")), ca.pem()).unwrap();
    for name in names {
        let cert = ca.node(name).unwrap();
        std::fs::write(dir.join(format!("{prefix}{name}.pem")), &cert.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{prefix}{name}.key")), &cert.key_pem).unwrap();
    }
}

fn tls_table(ca: &str, cert: &str) -> String {
    format!("[tls]\nca_file = \"{ca}\"\ncert_file = \"{cert}.pem\"\nkey_file = \"{cert}.key\"\n")
}

/// Waits until `key` reads `value` at `con`.
fn until_value(con: &mut redis::Connection, key: &str, value: &str, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        let got: Option<String> = redis::cmd("GET").arg(key).query(con).unwrap();
        if got.as_deref() == Some(value) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One request in RESP, and the first line of its reply (errors, statuses, integers) or,
/// for a bulk string, its content.
fn raw<S: Read + Write>(stream: &mut BufReader<S>, args: &[&str]) -> String {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.get_mut().write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    let line = line.trim_end().to_string();
    if line.starts_with('$') && line != "$-1" {
        let mut data = String::new();
        stream.read_line(&mut data).unwrap();
        return data.trim_end().to_string();
    }
    line
}

fn raw_client(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::new(s)
}

#[test]
fn an_mtls_cluster_replicates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster CA").unwrap();
    mint(dir.path(), &ca, "", &["n0", "n1", "n2"]);
    let configs = leaders(dir.path(), 3, |i| {
        (String::new(), tls_table("ca.pem", &format!("n{i}")))
    });
    let check = Command::new(BIN)
        .arg("check-config")
        .arg(&configs[0].0)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let nodes: Vec<Process> = configs.iter().map(|c| serve(&c.0)).collect();
    let mut cons: Vec<redis::Connection> =
        configs.iter().map(|c| connect_with(c.1, None)).collect();
    until_writable(&mut cons[0]);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("over mTLS")
        .query(&mut cons[0])
        .unwrap();
    for (i, con) in cons.iter_mut().enumerate().skip(1) {
        assert!(
            until_value(con, "k", "over mTLS", Duration::from_secs(15)),
            "n{i} never got the write:\n{}",
            nodes[i].log()
        );
    }
}

/// A client that speaks TLS with `cert` (from another CA) to `addr`, as `name` expects.
fn tls_attempt(
    addr: SocketAddr,
    roots: &TestCa,
    cert: &confluo_transport::testing::NodeCert,
    name: &str,
) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut store = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(roots.pem().as_bytes()) {
        store.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"confluo/2".to_vec()];
    let Ok(mut sock) = TcpStream::connect(addr) else {
        return;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
    let mut conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let _ = tls.write_all(b"CNFL\x02\x02 hello, I am node 1");
    let mut buf = [0u8; 64];
    let _ = tls.read(&mut buf);
}

#[test]
fn attackers_on_the_peer_port_are_refused_and_logged_while_the_cluster_replicates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster CA").unwrap();
    mint(dir.path(), &ca, "", &["n0", "n1", "n2"]);
    let configs = leaders(dir.path(), 3, |i| {
        (String::new(), tls_table("ca.pem", &format!("n{i}")))
    });
    let nodes: Vec<Process> = configs.iter().map(|c| serve(&c.0)).collect();
    let mut cons: Vec<redis::Connection> =
        configs.iter().map(|c| connect_with(c.1, None)).collect();
    until_writable(&mut cons[0]);

    // The attacker: a certificate for n0's own name from another CA, and plaintext that
    // claims to be a confluo peer, against n1's peer port, over and over.
    let rogue = TestCa::new("rogue CA").unwrap();
    let rogue_cert = rogue.node("n0").unwrap();
    let target = configs[1].2;
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut attempts = 0u32;
            while !stop.load(Ordering::Relaxed) {
                tls_attempt(target, &ca, &rogue_cert, "n1");
                if let Ok(mut s) = TcpStream::connect(target) {
                    let _ = s.write_all(b"CNFL\x02\x00\x00\x00\x00\x00\x00\x00\x09plaintext");
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = s.read(&mut [0u8; 16]);
                }
                attempts += 1;
            }
            attempts
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let _: () = redis::cmd("SET")
        .arg("during")
        .arg("yes")
        .query(&mut cons[0])
        .unwrap();
    for (i, con) in cons.iter_mut().enumerate().skip(1) {
        assert!(
            until_value(con, "during", "yes", Duration::from_secs(15)),
            "n{i} during the attack"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let attempts = attacker.join().unwrap();
    assert!(attempts >= 2, "the attacker ran: {attempts}");
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("yes")
        .query(&mut cons[2])
        .unwrap();
    for (i, con) in cons.iter_mut().enumerate().take(2) {
        assert!(
            until_value(con, "after", "yes", Duration::from_secs(15)),
            "n{i} after the attack"
        );
    }
    nodes[1].until_logged(
        &["refused inbound connection", "cause=certificate"],
        Duration::from_secs(5),
    );
    nodes[1].until_logged(
        &["refused inbound connection", "cause=plaintext"],
        Duration::from_secs(5),
    );
    // Bounded: at most a few lines per second per cause, whatever the attacker did.
    let lines = nodes[1]
        .log()
        .lines()
        .filter(|l| l.contains("refused inbound"))
        .count();
    assert!(lines < 200, "{lines} refusal lines");
}

#[test]
fn a_server_refuses_to_start_on_a_network_peer_address_without_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let configs = leaders(dir.path(), 2, |_| (String::new(), String::new()));
    let text = std::fs::read_to_string(&configs[0].0).unwrap();
    let open = text.replace(
        &configs[1].2.to_string(),
        &format!("192.0.2.7:{}", configs[1].2.port()),
    );
    std::fs::write(&configs[0].0, &open).unwrap();
    let mut node = serve(&configs[0].0);
    let status = node.process.0.wait().unwrap();
    assert!(!status.success());
    let log = node.log();
    assert!(log.contains("192.0.2.7"), "{log}");
    assert!(
        log.contains("is not a loopback address and peers are not authenticated"),
        "{log}"
    );
    assert!(log.contains("insecure = true"), "{log}");
    assert!(!dir.path().join("data-0").exists(), "nothing was created");
    let check = Command::new(BIN)
        .arg("check-config")
        .arg(&configs[0].0)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains(":17:13: 192.0.2.7"),
        "the line of the peer's address: {err}"
    );
    // In so many words, it starts.
    std::fs::write(
        &configs[0].0,
        open.replace("cluster_id = 9\n", "cluster_id = 9\ninsecure = true\n"),
    )
    .unwrap();
    let _node = serve(&configs[0].0);
    connect_with(configs[0].1, None);
}

fn auth_tables() -> String {
    format!(
        "[auth]\nrequirepass = \"{}\"\n[[auth.users]]\nname = \"app\"\npassword = \"{}\"\naccess = \"read-write\"\n[[auth.users]]\nname = \"reader\"\npassword = \"{}\"\naccess = \"read-only\"\n",
        hash("admin-pw"),
        hash("app-pw"),
        hash("reader-pw")
    )
}

#[test]
fn clients_authenticate_first_and_a_wrong_password_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let configs = leaders(dir.path(), 1, |_| (String::new(), auth_tables()));
    let node = serve(&configs[0].0);
    let addr = configs[0].1;
    let mut app = connect_with(addr, Some(("app", "app-pw")));
    until_writable(&mut app);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut app).unwrap();

    let mut c = raw_client(addr);
    assert_eq!(
        raw(&mut c, &["GET", "k"]),
        "-NOAUTH Authentication required."
    );
    assert_eq!(
        raw(&mut c, &["SET", "k", "x"]),
        "-NOAUTH Authentication required."
    );
    assert_eq!(raw(&mut c, &["PING"]), "-NOAUTH Authentication required.");
    assert!(
        raw(&mut c, &["HELLO", "3"])
            .starts_with("-NOAUTH HELLO must be called with the client already authenticated")
    );
    let wrongpass = "-WRONGPASS invalid username-password pair or user is disabled.";
    assert_eq!(raw(&mut c, &["AUTH", "app", "nope"]), wrongpass);
    assert_eq!(raw(&mut c, &["AUTH", "nobody", "app-pw"]), wrongpass);
    assert_eq!(
        raw(&mut c, &["AUTH", "app-pw"]),
        wrongpass,
        "that is app's, not default's"
    );
    assert_eq!(
        raw(&mut c, &["HELLO", "3", "AUTH", "app", "nope"]),
        wrongpass
    );
    assert_eq!(
        raw(&mut c, &["GET", "k"]),
        "-NOAUTH Authentication required."
    );
    assert_eq!(
        raw(&mut c, &["SET", "k", "x"]),
        "-NOAUTH Authentication required."
    );
    assert_eq!(
        raw(&mut c, &["AUTH", "admin-pw"]),
        "+OK",
        "requirepass: the default user"
    );
    assert_eq!(
        raw(&mut c, &["GET", "k"]),
        "v",
        "the wrong passwords wrote nothing"
    );
    assert_eq!(raw(&mut c, &["RESET"]), "+RESET");
    assert_eq!(
        raw(&mut c, &["GET", "k"]),
        "-NOAUTH Authentication required."
    );
    // HELLO 3 AUTH in one step: the reply is a RESP3 map.
    assert!(raw(&mut c, &["HELLO", "3", "AUTH", "app", "app-pw"]).starts_with('%'));
    node.until_logged(
        &["client authentication failed", "user=\"app\""],
        Duration::from_secs(5),
    );

    if let Some(cli) = redis_cli() {
        let out = Command::new(cli)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &addr.port().to_string(),
                "--user",
                "app",
                "--pass",
                "app-pw",
                "--no-auth-warning",
                "GET",
                "k",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
    }
}

fn redis_cli() -> Option<&'static str> {
    Command::new("redis-cli")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "redis-cli")
}

#[test]
fn a_read_only_user_writing_gets_noperm_and_the_write_happens_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secret"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let configs = leaders(dir.path(), 2, |_| {
        ("shared_secret_file = \"secret\"".into(), auth_tables())
    });
    let _nodes: Vec<Process> = configs.iter().map(|c| serve(&c.0)).collect();
    let mut app0 = connect_with(configs[0].1, Some(("app", "app-pw")));
    let mut app1 = connect_with(configs[1].1, Some(("app", "app-pw")));
    until_writable(&mut app0);
    let mut reader = connect_with(configs[0].1, Some(("reader", "reader-pw")));
    let e = redis::cmd("SET")
        .arg("stolen")
        .arg("x")
        .query::<()>(&mut reader)
        .unwrap_err();
    assert_eq!(e.code(), Some("NOPERM"), "{e}");
    assert!(
        e.to_string()
            .contains("User reader has no permissions to run the 'set' command"),
        "{e}"
    );
    let e = redis::cmd("INCR")
        .arg("n")
        .query::<i64>(&mut reader)
        .unwrap_err();
    assert_eq!(e.code(), Some("NOPERM"), "{e}");
    // A write after them, that reaches the other node: the refused ones would be there too.
    let _: () = redis::cmd("SET")
        .arg("marker")
        .arg("1")
        .query(&mut app0)
        .unwrap();
    assert!(
        until_value(&mut app1, "marker", "1", Duration::from_secs(15)),
        "replicated over the shared secret"
    );
    for con in [&mut app0, &mut app1, &mut reader] {
        let got: Option<String> = redis::cmd("GET").arg("stolen").query(con).unwrap();
        assert_eq!(got, None);
        let n: i64 = redis::cmd("EXISTS").arg("n").query(con).unwrap();
        assert_eq!(n, 0);
    }
    let got: String = redis::cmd("GET").arg("marker").query(&mut reader).unwrap();
    assert_eq!(got, "1", "reads are allowed");
}

#[test]
fn the_client_port_speaks_tls_to_rustls_and_redis_cli() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("client CA").unwrap();
    mint(dir.path(), &ca, "", &["127.0.0.1"]);
    let table =
        "[client_tls]\ncert_file = \"127.0.0.1.pem\"\nkey_file = \"127.0.0.1.key\"\n".to_string();
    let configs = leaders(dir.path(), 1, |_| (String::new(), table.clone()));
    let node = serve(&configs[0].0);
    let addr = configs[0].1;

    use rustls::pki_types::ServerName;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let start = Instant::now();
    let sock = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(15) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("{e}:\n{}", node.log()),
        }
    };
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, sock));
    assert_eq!(raw(&mut tls, &["PING"]), "+PONG");
    let mut set = String::from("LOADING");
    while set.starts_with("-LOADING") || set == "LOADING" {
        set = raw(&mut tls, &["SET", "k", "over tls"]);
    }
    assert_eq!(set, "+OK");
    assert_eq!(raw(&mut tls, &["GET", "k"]), "over tls");

    // Plaintext gets no reply: the bytes are not a TLS handshake.
    let mut plain = raw_client(addr);
    plain.get_mut().write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut line = String::new();
    let n = plain.read_line(&mut line).unwrap_or(0);
    assert!(!line.contains("PONG"), "plaintext answered: {n} {line:?}");
    node.until_logged(&["client TLS handshake failed"], Duration::from_secs(5));

    if let Some(cli) = redis_cli() {
        let out = Command::new(cli)
            .args(["--tls", "--cacert"])
            .arg(dir.path().join("ca.pem"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &addr.port().to_string(),
                "GET",
                "k",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if text.contains("not supported") || text.contains("Unrecognized option") {
            eprintln!("this redis-cli has no TLS: {text}");
        } else {
            assert_eq!(text.trim(), "over tls");
        }
    }
}

#[test]
fn sighup_rotates_the_peer_ca_and_a_bad_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCa::new("old CA").unwrap();
    let new = TestCa::new("new CA").unwrap();
    mint(dir.path(), &old, "old-", &["n0"]);
    mint(dir.path(), &new, "new-", &["n1"]);
    // n1 is already on the new CA and trusts both; n0 trusts only the old one.
    std::fs::write(
        dir.path().join("both.pem"),
        format!("{}{}", old.pem(), new.pem()),
    )
    .unwrap();
    std::fs::copy(dir.path().join("old-ca.pem"), dir.path().join("n0-ca.pem")).unwrap();
    let configs = leaders(dir.path(), 2, |i| match i {
        0 => (String::new(), tls_table("n0-ca.pem", "old-n0")),
        _ => (String::new(), tls_table("both.pem", "new-n1")),
    });
    let n0 = serve(&configs[0].0);
    let n1 = serve(&configs[1].0);
    let mut c0 = connect_with(configs[0].1, None);
    let mut c1 = connect_with(configs[1].1, None);
    until_writable(&mut c1);
    until_writable(&mut c0);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("before")
        .query(&mut c1)
        .unwrap();
    n0.until_logged(
        &["refused inbound connection", "cause=certificate"],
        Duration::from_secs(10),
    );
    assert!(
        !until_value(&mut c0, "k", "before", Duration::from_secs(2)),
        "n0 does not trust n1 yet"
    );

    // A bad file, noticed by its change: logged, and the old material stays.
    std::fs::write(dir.path().join("n0-ca.pem"), "not a certificate").unwrap();
    n0.until_logged(
        &["certificates not reloaded", "a certificate file changed"],
        Duration::from_secs(10),
    );
    let mut fresh = connect_with(configs[0].1, None);
    let _: String = redis::cmd("PING").query(&mut fresh).unwrap();

    // Both CAs, then SIGHUP: new connections use them, and n1 gets in.
    std::fs::write(
        dir.path().join("n0-ca.pem"),
        format!("{}{}", old.pem(), new.pem()),
    )
    .unwrap();
    n0.signal("HUP");
    n0.until_logged(&["certificates reloaded"], Duration::from_secs(10));
    assert!(
        until_value(&mut c0, "k", "before", Duration::from_secs(20)),
        "n1's write after the reload:\n{}\n{}",
        n0.log(),
        n1.log()
    );
    let _: () = redis::cmd("SET")
        .arg("k2")
        .arg("after")
        .query(&mut c0)
        .unwrap();
    assert!(until_value(&mut c1, "k2", "after", Duration::from_secs(15)));
}
