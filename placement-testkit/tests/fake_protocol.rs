//! The fake API server's protocol rules, each checked with the real kube client.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use placement_testkit::{FakeApiServer, FakeConfig, Fault, Verb};
use serde_json::json;
use std::time::Duration;

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn is_gone(ev: &Option<kube::Result<WatchEvent<ConfigMap>>>) -> bool {
    match ev {
        Some(Err(e)) => api_code(e) == Some(410),
        Some(Ok(WatchEvent::Error(s))) => s.code == 410,
        _ => false,
    }
}

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}))
        .unwrap()
}

#[tokio::test]
async fn discovery_lists_builtins_and_registered_crds() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();
    let d = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(d.has_group("apps") && d.has_group("policy") && d.has_group("metrics.k8s.io"));
    assert!(!d.has_group("placement.dev"));
    server
        .put(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.dev"},
            "spec": {"group": "example.dev", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}}]}}))
        .unwrap();
    let d = kube::Discovery::new(client).run().await.unwrap();
    let group = d.get("example.dev").expect("the CRD's group is discovered");
    let (ar, caps) = group.recommended_kind("Widget").unwrap();
    assert_eq!(ar.plural, "widgets");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));
    let crd = server.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.example.dev").unwrap();
    let established = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established);
}

#[tokio::test]
async fn create_generate_name_conflicts_and_not_found() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut generated = cm("", json!({}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("cfg-".into());
    let a = api.create(&PostParams::default(), &generated).await.unwrap();
    let b = api.create(&PostParams::default(), &generated).await.unwrap();
    let (na, nb) = (a.metadata.name.clone().unwrap(), b.metadata.name.clone().unwrap());
    assert!(na.starts_with("cfg-") && na.len() == 9 && na != nb, "{na} {nb}");
    assert_ne!(a.metadata.uid, b.metadata.uid);
    let rv_a: u64 = a.metadata.resource_version.clone().unwrap().parse().unwrap();
    let rv_b: u64 = b.metadata.resource_version.clone().unwrap().parse().unwrap();
    assert!(rv_b > rv_a);

    // Exists already.
    let mut dup = cm(&na, json!({}));
    dup.metadata.namespace = None;
    let e = api.create(&PostParams::default(), &dup).await.unwrap_err();
    assert_eq!(api_code(&e), Some(409));

    // Stale resourceVersion on replace.
    let mut stale = a.clone();
    let mut fresh = a.clone();
    fresh.data = Some([("k".to_string(), "v2".to_string())].into());
    api.replace(&na, &PostParams::default(), &fresh).await.unwrap();
    stale.data = Some([("k".to_string(), "v3".to_string())].into());
    let e = api.replace(&na, &PostParams::default(), &stale).await.unwrap_err();
    assert_eq!(api_code(&e), Some(409));
    assert!(e.to_string().contains("the object has been modified"), "{e}");

    let e = api.get("missing").await.unwrap_err();
    assert_eq!(api_code(&e), Some(404));
    assert!(api.get_opt("missing").await.unwrap().is_none());

    // Invalid name and missing name.
    let e = api.create(&PostParams::default(), &cm("Not_Valid", json!({}))).await.unwrap_err();
    assert_eq!(api_code(&e), Some(422));
    let mut anon = cm("x", json!({}));
    anon.metadata.name = None;
    assert_eq!(api_code(&api.create(&PostParams::default(), &anon).await.unwrap_err()), Some(422));

    // Dry run stores nothing.
    let dry = PostParams { dry_run: true, ..Default::default() };
    api.create(&dry, &cm("dry", json!({}))).await.unwrap();
    assert!(api.get_opt("dry").await.unwrap().is_none());

    // Namespace in the body must match the path.
    let mut other = cm("other", json!({}));
    other.metadata.namespace = Some("kube-system".into());
    assert_eq!(api_code(&api.create(&PostParams::default(), &other).await.unwrap_err()), Some(400));
}

#[tokio::test]
async fn list_selects_by_labels_and_fields_and_pages() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    for i in 0..7 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({"tier": tier}))).await.unwrap();
    }
    let front = api.list(&ListParams::default().labels("tier=front")).await.unwrap();
    assert_eq!(front.items.len(), 4);
    let not_front = api.list(&ListParams::default().labels("tier notin (front)")).await.unwrap();
    assert_eq!(not_front.items.len(), 3);
    let one = api.list(&ListParams::default().fields("metadata.name=c3")).await.unwrap();
    assert_eq!(one.items.len(), 1);

    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    let all_ns: Api<ConfigMap> = Api::all(server.client());
    assert_eq!(all_ns.list(&ListParams::default()).await.unwrap().items.len(), 7);
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> WatchEvent<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .expect("stream open")
}

fn describe(e: &WatchEvent<ConfigMap>) -> String {
    match e {
        WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.as_deref().unwrap_or("")),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.as_deref().unwrap_or("")),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.as_deref().unwrap_or("")),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(e) => format!("ERROR {}", e.code),
    }
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_tracks_selection() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    api.create(&PostParams::default(), &cm("a", json!({"sel": "yes"}))).await.unwrap();
    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("b", json!({"sel": "yes"}))).await.unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();

    let mut all = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next_event(&mut all).await));
    }
    assert_eq!(seen, ["ADDED b", "MODIFIED a", "DELETED b"]);

    // A selector watch sees an object leave the selection as DELETED and enter it as ADDED.
    let now = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut sel = api.watch(&WatchParams::default().labels("sel=yes"), &now).await.unwrap().boxed();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"sel": "no"}}})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("c", json!({"sel": "no"}))).await.unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"sel": "yes"}}})))
        .await
        .unwrap();
    assert_eq!(describe(&next_event(&mut sel).await), "DELETED a");
    assert_eq!(describe(&next_event(&mut sel).await), "ADDED a");

    // Watch with no version: the current state first.
    let mut fresh = api.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    let mut initial = vec![describe(&next_event(&mut fresh).await), describe(&next_event(&mut fresh).await)];
    initial.sort();
    assert_eq!(initial, ["ADDED a", "ADDED c"]);
}

#[tokio::test]
async fn compaction_gives_410_gone_and_a_short_history_too() {
    let config = FakeConfig { history_limit: 5, ..FakeConfig::default() };
    let server = FakeApiServer::start_with(config).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let first = api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    for i in 0..10 {
        api.create(&PostParams::default(), &cm(&format!("x{i}"), json!({}))).await.unwrap();
    }
    let mut w = api.watch(&WatchParams::default(), &old_rv).await.unwrap().boxed();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap();
    assert!(is_gone(&ev), "expected 410 Gone, got {ev:?}");
    // Within the history it replays; after compact() it does not.
    let recent = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("y", json!({}))).await.unwrap();
    let mut ok = api.watch(&WatchParams::default(), &recent).await.unwrap().boxed();
    assert_eq!(describe(&next_event(&mut ok).await), "ADDED y");
    server.compact();
    let mut gone = api.watch(&WatchParams::default(), &recent).await.unwrap().boxed();
    let ev = tokio::time::timeout(Duration::from_secs(5), gone.next()).await.unwrap();
    assert!(is_gone(&ev), "{ev:?}");
    // An expired continue token is 410 too.
    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = page.metadata.continue_.unwrap();
    for i in 0..10 {
        api.create(&PostParams::default(), &cm(&format!("z{i}"), json!({}))).await.unwrap();
    }
    let e = api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap_err();
    assert_eq!(api_code(&e), Some(410));
}

#[tokio::test]
async fn bookmarks_and_streaming_lists() {
    let config = FakeConfig { bookmark_interval: Duration::from_millis(50), ..FakeConfig::default() };
    let server = FakeApiServer::start_with(config).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    api.create(&PostParams::default(), &cm("b", json!({}))).await.unwrap();
    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut w = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match next_event(&mut w).await {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {}", describe(&other)),
    }

    let mut s = api.watch(&WatchParams::default().initial_events(), "").await.unwrap().boxed();
    let mut got = Vec::new();
    loop {
        match next_event(&mut s).await {
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true"));
                break;
            }
            e => got.push(describe(&e)),
        }
    }
    assert_eq!(got, ["ADDED a", "ADDED b"]);
}

#[tokio::test]
async fn status_subresource_generation_and_patch_flavours() {
    let server = FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]},
        "status": {"phase": "Running"}}))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"), "status on create is the server's");
    assert_eq!(created.metadata.generation, Some(1));

    // Status endpoint changes status only.
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}, "spec": {"nodeName": "n1"}})),
    )
    .await
    .unwrap();
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(p.spec.as_ref().unwrap().node_name, None);
    assert_eq!(p.metadata.generation, Some(1));
    // Main endpoint ignores status, bumps generation on spec change.
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed"}, "spec": {"nodeName": "n1"}})),
    )
    .await
    .unwrap();
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    assert_eq!(p.metadata.generation, Some(2));
    // A no-op write is not a new version.
    let rv = p.metadata.resource_version.clone();
    let same =
        pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"spec": {"nodeName": "n1"}}))).await.unwrap();
    assert_eq!(same.metadata.resource_version, rv);

    // Strategic merge keeps the other container; JSON patch; server-side apply.
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}})),
    )
    .await
    .unwrap();
    let images: Vec<String> =
        pods.get("p").await.unwrap().spec.unwrap().containers.iter().map(|c| c.image.clone().unwrap()).collect();
    assert_eq!(images, ["a:1", "b:2"]);
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/metadata/labels", "value": {"x": "1"}}])).unwrap();
    pods.patch("p", &PatchParams::default(), &Patch::<()>::Json(jp)).await.unwrap();
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/metadata/nothing/here", "value": 1}])).unwrap();
    assert_eq!(
        api_code(&pods.patch("p", &PatchParams::default(), &Patch::<()>::Json(bad)).await.unwrap_err()),
        Some(422)
    );
    let ssa = PatchParams::apply("placement-test");
    pods.patch(
        "p",
        &ssa,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"y": "2"}}})),
    )
    .await
    .unwrap();
    let labels = pods.get("p").await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels.get("x").map(String::as_str), Some("1"));
    assert_eq!(labels.get("y").map(String::as_str), Some("2"));
    // Apply creates when missing.
    pods.patch("q", &ssa, &Patch::Apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"}, "spec": {"containers": [{"name": "c", "image": "c"}]}}))).await.unwrap();
    assert!(pods.get_opt("q").await.unwrap().is_some());
    // A patch with a stale resourceVersion conflicts.
    let stale = Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"z": "3"}}}));
    assert_eq!(api_code(&pods.patch("p", &PatchParams::default(), &stale).await.unwrap_err()), Some(409));
}

#[tokio::test]
async fn finalizers_hold_deletion_and_preconditions_guard_it() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut c = cm("f", json!({}));
    c.metadata.finalizers = Some(vec!["placement.dev/test".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut w = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    let deleted = api.delete("f", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_left(), "an object with finalizers is returned, not a Status");
    let held = api.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(describe(&next_event(&mut w).await), "MODIFIED f");
    api.patch("f", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(describe(&next_event(&mut w).await), "DELETED f");
    assert!(api.get_opt("f").await.unwrap().is_none());

    api.create(&PostParams::default(), &cm("g", json!({}))).await.unwrap();
    let e = api
        .delete(
            "g",
            &DeleteParams {
                preconditions: Some(kube::api::Preconditions { resource_version: Some("1".into()), uid: None }),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), Some(409));
    let e = api
        .delete(
            "g",
            &DeleteParams {
                preconditions: Some(kube::api::Preconditions { uid: Some("nope".into()), resource_version: None }),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), Some(409));
    api.delete("g", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(&api.delete("g", &DeleteParams::default()).await.unwrap_err()), Some(404));
}

fn ready_pod(name: &str, app: &str, phase: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}})
}

#[tokio::test]
async fn eviction_respects_disruption_budgets() {
    let server = FakeApiServer::start().await.unwrap();
    for i in 0..3 {
        server.put(ready_pod(&format!("web-{i}"), "web", "Running")).unwrap();
    }
    server.put(ready_pod("done", "web", "Succeeded")).unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(server.client(), "default");
    let pdb: PodDisruptionBudget =
        serde_json::from_value(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}))
        .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let status = pdbs.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (status.current_healthy, status.desired_healthy, status.disruptions_allowed, status.expected_pods),
        (3, 2, 1, 3)
    );

    // kube retries 429 by itself by default; this test wants to see it.
    let pods: Api<Pod> = Api::namespaced(server.client_without_retry(), "default");
    pods.evict("web-0", &Default::default()).await.unwrap();
    assert!(pods.get_opt("web-0").await.unwrap().is_none());
    let status = pdbs.get("web").await.unwrap().status.unwrap();
    assert_eq!((status.current_healthy, status.disruptions_allowed), (2, 0));
    let e = pods.evict("web-1", &Default::default()).await.unwrap_err();
    assert_eq!(api_code(&e), Some(429));
    assert!(e.to_string().contains("disruption budget"), "{e}");
    assert!(pods.get_opt("web-1").await.unwrap().is_some());
    // A terminal pod is evicted without a budget check.
    pods.evict("done", &Default::default()).await.unwrap();
    // Dry-run eviction changes nothing.
    server.put(ready_pod("web-3", "web", "Running")).unwrap();
    // kube sends `deleteOptions` as `delete_options`, which API servers ignore: dry run goes in the query.
    let dry = kube::api::EvictParams {
        post_options: PostParams { dry_run: true, ..Default::default() },
        ..Default::default()
    };
    pods.evict("web-3", &dry).await.unwrap();
    assert!(pods.get_opt("web-3").await.unwrap().is_some());
    assert_eq!(pdbs.get("web").await.unwrap().status.unwrap().disruptions_allowed, 1);
    // Two budgets over one pod are an error, as on the real server.
    let second: PodDisruptionBudget =
        serde_json::from_value(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web2"}, "spec": {"maxUnavailable": 3, "selector": {"matchLabels": {"app": "web"}}}}))
        .unwrap();
    pdbs.create(&PostParams::default(), &second).await.unwrap();
    assert_eq!(api_code(&pods.evict("web-3", &Default::default()).await.unwrap_err()), Some(500));
    assert_eq!(api_code(&pods.evict("missing", &Default::default()).await.unwrap_err()), Some(404));
}

#[tokio::test]
async fn faults_errors_delays_conflicts_and_dropped_watches() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client_without_retry(), "default");
    api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();

    server.faults().inject(Fault::error(503).on(Verb::List).resource("configmaps").times(2));
    assert_eq!(api_code(&api.list(&ListParams::default()).await.unwrap_err()), Some(503));
    assert_eq!(api_code(&api.list(&ListParams::default()).await.unwrap_err()), Some(503));
    assert!(api.list(&ListParams::default()).await.is_ok());

    server.faults().inject(Fault::conflict().resource("configmaps").times(1));
    let e = api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "x"}}))).await.unwrap_err();
    assert_eq!(api_code(&e), Some(409));
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "x"}}))).await.unwrap();

    server.faults().inject(Fault::delay(Duration::from_millis(300)).on(Verb::Get).times(1));
    let started = std::time::Instant::now();
    api.get("a").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.faults().hits(), 4);

    // The default client retries 503 by itself and gets through.
    server.faults().inject(Fault::error(503).on(Verb::Get).resource("configmaps").times(2));
    let retrying: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    assert!(retrying.get("a").await.is_ok());
    assert_eq!(server.faults().hits(), 6);

    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut w = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.drop_watches(), 1);
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("the stream ends");
    assert!(end.is_none(), "{end:?}");
}

/// `deleteOptions.preconditions.uid` as the real server reads it: a pod recreated under the same name
/// is another pod, and evicting it with the old uid is 409 Conflict, before any budget is spent.
#[tokio::test]
async fn eviction_honours_the_uid_precondition() {
    let server = FakeApiServer::start().await.unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(server.client(), "default");
    let pdb: PodDisruptionBudget =
        serde_json::from_value(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "db"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}}}))
        .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client_without_retry(), "default");
    server.put(ready_pod("db-0", "db", "Running")).unwrap();
    let old_uid = pods.get("db-0").await.unwrap().metadata.uid.unwrap();
    pods.delete("db-0", &DeleteParams::default()).await.unwrap();
    server.put(ready_pod("db-0", "db", "Running")).unwrap();
    let new_uid = pods.get("db-0").await.unwrap().metadata.uid.unwrap();
    assert_ne!(old_uid, new_uid);
    assert_eq!(pdbs.get("db").await.unwrap().status.unwrap().disruptions_allowed, 1);
    let evict = |uid: &str| {
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "db-0", "namespace": "default"},
            "deleteOptions": {"preconditions": {"uid": uid}}})
    };
    let e = pods
        .create_subresource::<_, serde_json::Value>("eviction", "db-0", &PostParams::default(), &evict(&old_uid))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), Some(409), "{e}");
    assert!(e.to_string().contains("Precondition failed: UID"), "{e}");
    assert_eq!(pods.get("db-0").await.unwrap().metadata.uid.as_deref(), Some(new_uid.as_str()));
    assert_eq!(pdbs.get("db").await.unwrap().status.unwrap().disruptions_allowed, 1, "no budget spent");
    pods.create_subresource::<_, serde_json::Value>("eviction", "db-0", &PostParams::default(), &evict(&new_uid))
        .await
        .unwrap();
    assert!(pods.get_opt("db-0").await.unwrap().is_none());
}
