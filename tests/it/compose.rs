//! `docker-compose.yml` (which cannot run here: no Docker engine) parses, wires Kafka,
//! driftwatch and a mail catcher together, and mounts a config that `driftwatch check`
//! accepts and that points at the compose Kafka.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

#[test]
fn compose_file_is_wired_and_its_config_passes_check() {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_saphyr::from_str(&text).unwrap();
    let services = compose["services"].as_object().expect("services");
    for s in ["kafka", "driftwatch", "mailpit"] {
        assert!(services.contains_key(s), "service {s} missing");
    }
    let kafka_env = &services["kafka"]["environment"];
    assert_eq!(
        kafka_env["KAFKA_PROCESS_ROLES"], "broker,controller",
        "single-node KRaft"
    );
    let dw = &services["driftwatch"];
    assert_eq!(
        dw["build"], ".",
        "driftwatch is built from the repository's Dockerfile"
    );
    assert!(repo_root().join("Dockerfile").exists());

    // the config mounted into the container
    let mount = dw["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|v| v.contains("/etc/driftwatch/driftwatch.toml"))
        .expect("config mount");
    let host = mount.split(':').next().unwrap();
    let config = repo_root().join(host.trim_start_matches("./"));
    let command: Vec<&str> = dw["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        command,
        ["run", "--config", "/etc/driftwatch/driftwatch.toml"]
    );

    // The image carries the repository's rules where the mounted config looks for them.
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("COPY rules /etc/driftwatch/rules"),
        "{dockerfile}"
    );
    let mounted = std::fs::read_to_string(&config).unwrap();
    assert!(
        mounted.contains("rules_dir = \"/etc/driftwatch/rules\""),
        "{mounted}"
    );
    let out = Command::new(bin())
        .args(["check", "--config", config.to_str().unwrap(), "--rules"])
        .arg(repo_root().join("rules"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("kafka:9092"),
        "the mounted config talks to the compose Kafka: {stdout}"
    );
    let advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].as_str().unwrap();
    assert!(advertised.contains("kafka:9092"), "{advertised}");
}
