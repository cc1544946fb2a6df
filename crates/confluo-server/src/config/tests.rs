//! check-config's problems, each at its line.

use super::*;

const BASE: &str = r#"cluster_id = 7
topology = "all-to-all"

[node]
name = "a"
id = 1
datacenter = "dc1"
role = "leader"
client_addr = "127.0.0.1:7001"
peer_addr = "127.0.0.1:7101"
data_dir = "/tmp"

[[peers]]
name = "b"
id = 2
datacenter = "dc1"
role = "follower"
leader = "a"
client_addr = "127.0.0.1:7002"
peer_addr = "127.0.0.1:7102"
"#;

fn problems(text: &str) -> Vec<Problem> {
    match ServerConfig::parse(text, None) {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn a_valid_file_parses_with_defaults() {
    let c = ServerConfig::parse(BASE, None).unwrap();
    assert_eq!(c.cluster_id, 7);
    assert_eq!(c.node.name, "a");
    assert_eq!(c.peers[0].role, MemberRole::Follower { leader: "a".into() });
    assert_eq!(c.limits, ClientLimits::default());
    assert_eq!(c.drain_timeout, Duration::from_secs(10));
    assert_eq!(
        c.threads, 1,
        "one event loop unless the file says otherwise"
    );
}

#[test]
fn runtime_threads_are_read_and_zero_is_named_at_its_line() {
    let c = ServerConfig::parse(&format!("{BASE}\n[runtime]\nthreads = 4\n"), None).unwrap();
    assert_eq!(c.threads, 4);
    let text = format!("{BASE}\n[runtime]\nthreads = 0\n");
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, text.lines().count(), "{p:?}");
    assert!(
        p[0].message.contains("threads must be between 1 and 1024"),
        "{p:?}"
    );
}

#[test]
fn an_unknown_key_is_named_at_its_line() {
    let text = BASE.replace("role = \"leader\"", "role = \"leader\"\nrol = \"x\"");
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, 9, "{p:?}");
    assert!(p[0].message.contains("unknown field `rol`"), "{p:?}");
}

#[test]
fn duplicate_ids_and_names_name_both_lines() {
    let text = BASE
        .replace("id = 2", "id = 1")
        .replace("name = \"b\"", "name = \"a\"");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.line == 15 && p.message == "duplicate node id 1 (also at line 6)"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.line == 14 && p.message.contains("duplicate node name")),
        "{p:?}"
    );
}

#[test]
fn a_follower_needs_a_leader_that_exists_and_leads() {
    let p = problems(&BASE.replace("leader = \"a\"\n", ""));
    assert_eq!(p[0].line, 17);
    assert!(p[0].message.contains("needs `leader ="), "{p:?}");
    let p = problems(&BASE.replace("leader = \"a\"", "leader = \"z\""));
    assert_eq!(p[0].line, 18);
    assert!(p[0].message.contains("\"z\" is not listed"), "{p:?}");
    let text = BASE.replace("role = \"leader\"", "role = \"follower\"\nleader = \"b\"");
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.message.contains("\"b\" is not a leader")),
        "{p:?}"
    );
}

#[test]
fn a_star_needs_a_hub_that_is_a_leader() {
    let p = problems(&BASE.replace("all-to-all", "star"));
    assert_eq!(p[0].line, 2);
    let text = BASE.replace(
        "topology = \"all-to-all\"",
        "topology = \"star\"\nhub = \"b\"",
    );
    assert!(problems(&text)[0].message.contains("is not a leader"));
    let text = BASE.replace("topology = \"all-to-all\"", "hub = \"a\"");
    assert!(problems(&text)[0].message.contains("only for topology"));
}

#[test]
fn an_unusable_data_dir_is_refused() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let text = BASE.replace("/tmp", &file.path().display().to_string());
    let p = problems(&text);
    assert_eq!(p[0].line, 11);
    assert!(p[0].message.contains("not a directory"), "{p:?}");
    let missing = BASE.replace("/tmp", "/tmp/confluo-config-test-missing/sub");
    assert!(
        ServerConfig::parse(&missing, None).is_ok(),
        "a missing directory is created"
    );
}

#[test]
fn addresses_and_limits_are_checked() {
    let p = problems(&BASE.replace("127.0.0.1:7102", "127.0.0.1:7101"));
    assert!(p[0].message.contains("used twice"), "{p:?}");
    let text = format!("{BASE}\n[limits]\nmax_clients = 0\n");
    assert!(problems(&text)[0].message.contains("max_clients"));
    let text = format!("{BASE}\n[limits]\nmax_clent = 1\n");
    assert!(
        problems(&text)[0]
            .message
            .contains("unknown field `max_clent`")
    );
    let p = problems(&BASE.replace("127.0.0.1:7001", "localhost"));
    assert_eq!(p[0].line, 9);
}

#[test]
fn peers_cannot_carry_this_nodes_keys() {
    let text = format!("{BASE}data_dir = \"/x\"\n");
    assert!(
        problems(&text)[0]
            .message
            .contains("data_dir belongs in [node]")
    );
}

/// A CA and certificates for nodes "a" and "b" in `dir`, and the `[tls]` table for "a".
fn certs(dir: &Path) -> String {
    let ca = confluo_transport::testing::TestCa::new("test CA").unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for name in ["a", "b"] {
        let cert = ca.node(name).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), &cert.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), &cert.key_pem).unwrap();
    }
    "\n[tls]\nca_file = \"ca.pem\"\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\n".into()
}

#[test]
fn tls_files_load_relative_to_the_config_and_name_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let c = ServerConfig::parse(&format!("{BASE}{tls}"), Some(dir.path())).unwrap();
    match &c.peer_security {
        PeerSecurity::Tls(f) => assert_eq!(f.ca_file, dir.path().join("ca.pem")),
        other => panic!("{other:?}"),
    }
    // b's certificate is not for node a: named at the [tls] line.
    let text = format!(
        "{BASE}{}",
        tls.replace("\"a.pem", "\"b.pem")
            .replace("\"a.key", "\"b.key")
    );
    let p = problems_in(&text, dir.path());
    assert_eq!(p[0].line, 22, "{p:?}");
    assert!(
        p[0].message
            .contains("not valid for its configured name \"a\""),
        "{p:?}"
    );
    let text = format!("{BASE}{}", tls.replace("ca.pem", "missing.pem"));
    let p = problems_in(&text, dir.path());
    assert!(p[0].message.contains("missing.pem"), "{p:?}");
}

fn problems_in(text: &str, base: &Path) -> Vec<Problem> {
    match ServerConfig::parse(text, Some(base)) {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn a_shared_secret_comes_from_a_file_of_at_least_16_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "0123456789abcdef0123\n").unwrap();
    std::fs::write(dir.path().join("short"), "tiny\n").unwrap();
    let with = |file: &str| {
        BASE.replace(
            "cluster_id = 7",
            &format!("cluster_id = 7\nshared_secret_file = \"{file}\""),
        )
    };
    let c = ServerConfig::parse(&with("secret"), Some(dir.path())).unwrap();
    assert!(matches!(c.peer_security, PeerSecurity::SharedSecret { .. }));
    let p = problems_in(&with("short"), dir.path());
    assert_eq!(p[0].line, 2);
    assert!(p[0].message.contains("at least 16"), "{p:?}");
    let both = format!("{}{}", with("secret"), certs(dir.path()));
    assert!(
        problems_in(&both, dir.path())[0]
            .message
            .contains("choose one")
    );
}

#[test]
fn unauthenticated_peers_off_loopback_are_refused_unless_insecure() {
    let text = BASE.replace("127.0.0.1:7102", "10.1.2.3:7102");
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, 20, "at the peer's address: {p:?}");
    assert!(
        p[0].message
            .contains("10.1.2.3:7102 is not a loopback address"),
        "{p:?}"
    );
    assert!(p[0].message.contains("insecure = true"), "{p:?}");
    let text = text.replace("cluster_id = 7", "cluster_id = 7\ninsecure = true");
    let c = ServerConfig::parse(&text, None).unwrap();
    assert_eq!(c.peer_security, PeerSecurity::None { insecure: true });
}

#[test]
fn client_users_need_valid_hashes_and_distinct_names() {
    let hash = PasswordHash::new(b"pw", std::num::NonZeroU32::new(1).unwrap()).to_string();
    let text = format!(
        "{BASE}\n[auth]\nrequirepass = \"{hash}\"\n[[auth.users]]\nname = \"reader\"\npassword = \"{hash}\"\naccess = \"read-only\"\n"
    );
    let c = ServerConfig::parse(&text, None).unwrap();
    assert!(c.auth.required());
    let names: Vec<(&str, Access)> = c
        .auth
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.access))
        .collect();
    assert_eq!(
        names,
        [("default", Access::ReadWrite), ("reader", Access::ReadOnly)]
    );
    assert!(!format!("{c:?}").contains(&hash), "Debug hides the hashes");
    let p = problems(&text.replace(&format!("password = \"{hash}\""), "password = \"pw\""));
    assert_eq!(p[0].line, 26, "{p:?}");
    assert!(p[0].message.contains("confluo hash-password"), "{p:?}");
    let p = problems(&text.replace("name = \"reader\"", "name = \"default\""));
    assert!(p[0].message.contains("requirepass"), "{p:?}");
    let p = problems(&text.replace("access = \"read-only\"", "access = \"admin\""));
    assert!(p[0].message.contains("unknown variant `admin`"), "{p:?}");
    assert!(
        problems(&format!("{BASE}\n[auth]\n"))[0]
            .message
            .contains("needs requirepass")
    );
}

#[test]
fn client_tls_loads_its_files() {
    let dir = tempfile::tempdir().unwrap();
    certs(dir.path());
    let text = format!(
        "{BASE}\n[client_tls]\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\nca_file = \"ca.pem\"\n"
    );
    let c = ServerConfig::parse(&text, Some(dir.path())).unwrap();
    assert_eq!(
        c.client_tls.unwrap().ca_file,
        Some(dir.path().join("ca.pem"))
    );
    let p = problems_in(
        &text.replace("key_file = \"a.key\"", "key_file = \"b.key\""),
        dir.path(),
    );
    assert_eq!(p[0].line, 22, "{p:?}");
    assert!(p[0].message.contains("[client_tls]"), "{p:?}");
}
