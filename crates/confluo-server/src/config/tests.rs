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
