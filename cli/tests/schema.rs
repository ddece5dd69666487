//! The JSON Schema of `podnet/v1` (`schema/podnet-v1.json`) is generated from the model types
//! (schemars): the checked-in file must be exactly what the types generate, and documents
//! podnet renders must validate against it. The end-to-end tests validate every document the
//! real binary prints (`common::validate`).
//!
//! After changing the model, regenerate the file with
//! `PODNET_WRITE_SCHEMA=1 cargo test -p podnet --test schema`.

mod common;

use podnet::model::{
    ContainerStats, CounterScope, Files, Memory, MemorySource, Network, PodStats, PodStatsList,
    Sockets,
};
use serde_json::Value;

#[test]
fn the_checked_in_schema_is_what_the_types_generate() {
    let path = common::schema_path();
    let generated = serde_json::to_string_pretty(&podnet::model::json_schema()).unwrap() + "\n";
    if std::env::var_os("PODNET_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        on_disk == generated,
        "{} differs from what the model types generate; if the change is meant, regenerate it \
         with PODNET_WRITE_SCHEMA=1 cargo test -p podnet --test schema\n--- generated:\n{generated}",
        path.display()
    );
}

fn sample() -> PodStatsList {
    let mut doc = PodStatsList::new(
        "node-1".into(),
        podnet::stats::rfc3339(std::time::SystemTime::now()),
        1.000_123,
    );
    doc.file_open_probe = Some("kprobe");
    doc.warnings.push("pod shop/x (Pending): no cgroup".into());
    let mut known = PodStats {
        namespace: "shop".into(),
        pod: "web-0".into(),
        uid: "u1".into(),
        qos_class: Some("Burstable".into()),
        cgroup_path: "/kubepods.slice/x".into(),
        network: Network {
            rx_bytes: 1,
            rx_packets: 1,
            tx_bytes: 2,
            tx_packets: 1,
            rx_bytes_per_sec: 1.04,
            tx_bytes_per_sec: 2.0,
        },
        memory: Memory {
            usage_bytes: 10,
            limit_bytes: Some(100),
            rss_bytes: 5,
            oom_kills: 0,
            source: MemorySource::Cgroup1,
        },
        ..PodStats::default()
    };
    known.containers.push(ContainerStats {
        name: "app".into(),
        id: "abc".into(),
        cgroup_path: "/kubepods.slice/x/y".into(),
        ..ContainerStats::default()
    });
    // Known by UID only, with unreadable gauges: nulls where the schema allows them.
    let unknown = PodStats {
        uid: "u2".into(),
        cgroup_path: "/kubepods/pod-u2".into(),
        sockets: Sockets {
            open_unknown: true,
            ..Sockets::default()
        },
        files: Files {
            open_fds_unknown: true,
            ..Files::default()
        },
        containers: vec![ContainerStats {
            id: "def".into(),
            ..ContainerStats::default()
        }],
        ..PodStats::default()
    };
    doc.items = vec![known, unknown];
    doc
}

#[test]
fn rendered_documents_validate_and_wrong_ones_do_not() {
    let mut doc = sample();
    for text in [
        podnet::render::render_json(&doc),
        podnet::render::render_json_line(&doc),
    ] {
        common::validate(&serde_json::from_str(&text).unwrap());
    }
    doc.counters = CounterScope::Cumulative;
    doc.file_open_probe = None;
    let v: Value = serde_json::from_str(&podnet::render::render_json(&doc)).unwrap();
    common::validate(&v);
    assert_eq!(v["counters"], "cumulative");
    assert!(v["items"][1]["pod"].is_null() && v["items"][1]["containers"][0]["name"].is_null());
    // The schema is not a formality: each of these breaks it.
    let mut broken = Vec::new();
    for (pointer, value) in [
        ("/apiVersion", Value::from("podnet/v2")),
        ("/counters", Value::from("sometimes")),
        ("/timestamp", Value::from("2026-11-21T10:00:00Z")),
        ("/items/0/network/rxBytes", Value::from(-1)),
        ("/items/0/memory/source", Value::from("swap")),
        ("/items/0/sockets/created", Value::Null),
    ] {
        let mut bad = v.clone();
        *bad.pointer_mut(pointer).unwrap() = value;
        broken.push((pointer, common::schema_errors(&bad)));
    }
    let mut missing = v.clone();
    missing["items"][0]["files"]
        .as_object_mut()
        .unwrap()
        .remove("opens");
    broken.push((
        "/items/0/files/opens (removed)",
        common::schema_errors(&missing),
    ));
    for (what, errors) in broken {
        assert!(!errors.is_empty(), "{what}: accepted");
    }
}
