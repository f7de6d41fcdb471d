//! The real kube-runtime machinery (watcher, reflector, controller, event recorder) and the plain client
//! patterns the operator relies on (leases), run against the fake API server while it is being broken:
//! dropped watches, compaction (410 Gone and a relist), injected errors and conflicts.

use futures::StreamExt;
use futures::TryStreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use placement_testkit::{FakeApiServer, FakeConfig, Fault, Verb};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Polls `done` every 20 ms until it holds or `limit` passes; returns whether it held.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `namespace/name` to resourceVersion.
type Versions = BTreeMap<String, String>;

fn versions_of<'a>(objects: impl Iterator<Item = &'a serde_json::Value>) -> Versions {
    objects
        .map(|o| {
            let key = format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            );
            (key, o["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn store_versions(store: &Store<Pod>) -> Versions {
    store
        .state()
        .iter()
        .map(|p| {
            (
                format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()),
                p.resource_version().unwrap_or_default(),
            )
        })
        .collect()
}

fn pod(name: &str, round: usize) -> Pod {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"round": round.to_string()}},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}}))
    .unwrap()
}

/// What the watcher stream said, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Init,
    InitDone,
    /// A `410 Gone` watch error: the watcher must relist.
    Gone,
    /// An injected 500 on the list (or, for streaming lists, the watch) that starts a relist.
    Injected,
    OtherError,
}

/// Creates 200 pods over two namespaces in ten bursts, updating and deleting some in each burst.
async fn write_bursts(client: kube::Client) {
    let apis = [Api::<Pod>::namespaced(client.clone(), "default"), Api::<Pod>::namespaced(client, "other")];
    let mut live: Vec<(usize, String)> = Vec::new();
    for round in 0..10 {
        for i in 0..20 {
            let n = round * 20 + i;
            let name = format!("p-{n:03}");
            apis[n % 2].create(&PostParams::default(), &pod(&name, round)).await.unwrap();
            live.push((n % 2, name));
        }
        for k in 0..8 {
            let (ns, name) = &live[(round * 7 + k * 13) % live.len()];
            let patch = json!({"metadata": {"labels": {"round": round.to_string(), "touched": k.to_string()}}});
            apis[*ns].patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
        }
        for k in 0..5 {
            let (ns, name) = live.remove((round * 11 + k * 17) % live.len());
            apis[ns].delete(&name, &DeleteParams::default()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// Waits until the watcher has a watch open on the server.
async fn wait_for_watch(server: &FakeApiServer) {
    assert!(wait_until(Duration::from_secs(10), || server.watch_count() > 0).await, "the watcher never watched again");
}

/// Makes the watcher's next watch start from a compacted version, so it gets 410 Gone and must relist;
/// `errors` injected 500s on `init_verb` then fail the start of that relist.
async fn force_relist(server: &FakeApiServer, init_verb: Verb, errors: u32, marker: &str) {
    wait_for_watch(server).await;
    // The re-watch after the drop is held back until the log has been compacted past its version.
    server.faults().inject(Fault::delay(Duration::from_millis(500)).on(Verb::Watch).resource("pods").times(1));
    server.faults().inject(Fault::error(500).on(init_verb).resource("pods").times(errors));
    server.drop_watches();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.put(serde_json::to_value(pod(marker, 99)).unwrap()).unwrap();
    server.compact();
}

async fn chaos(server: &FakeApiServer, init_verb: Verb) {
    tokio::time::sleep(Duration::from_millis(60)).await;
    // A plain reconnect: the watcher resumes from its last version.
    wait_for_watch(server).await;
    server.drop_watches();
    tokio::time::sleep(Duration::from_millis(80)).await;
    force_relist(server, init_verb, 3, "marker-1").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Compaction right after a drop: a relist if the watcher fell behind, a resume otherwise.
    wait_for_watch(server).await;
    server.drop_watches();
    server.compact();
    tokio::time::sleep(Duration::from_millis(100)).await;
    force_relist(server, init_verb, 2, "marker-2").await;
}

async fn reflector_converges(config: watcher::Config, init_verb: Verb) {
    let fake = FakeConfig { bookmark_interval: Duration::from_millis(100), ..FakeConfig::default() };
    let server = FakeApiServer::start_with(fake).await.unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})).unwrap();
    let (store, writer) = reflector::store::<Pod>();
    let marks = Arc::new(Mutex::new(Vec::new()));
    let stream = reflector::reflector(writer, watcher::watcher(Api::<Pod>::all(server.client()), config));
    let task = {
        let marks = marks.clone();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let mark = match &item {
                    Ok(Event::Init) => Some(Mark::Init),
                    Ok(Event::InitDone) => Some(Mark::InitDone),
                    Ok(_) => None,
                    Err(watcher::Error::WatchError(s)) if s.code == 410 => Some(Mark::Gone),
                    Err(watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e))
                        if api_code(e) == Some(500) =>
                    {
                        Some(Mark::Injected)
                    }
                    Err(_) => Some(Mark::OtherError),
                };
                if let Some(m) = mark {
                    marks.lock().unwrap().push(m);
                }
                if item.is_err() {
                    // The watcher recovers on the next poll; a short pause stands in for a backoff.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready()).await.unwrap().unwrap();

    let writer = write_bursts(server.client());
    let ((), ()) =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join(writer, chaos(&server, init_verb)))
            .await
            .expect("writes and faults within 60 s");

    let want = || versions_of(server.list("v1", "Pod", None).iter());
    let converged = wait_until(Duration::from_secs(10), || store_versions(&store) == want()).await;
    let (have, want) = (store_versions(&store), want());
    assert!(
        converged,
        "the store never matched the server:\nonly in store: {:?}\nonly on server: {:?}\ndiffering: {:?}",
        have.keys().filter(|k| !want.contains_key(*k)).collect::<Vec<_>>(),
        want.keys().filter(|k| !have.contains_key(*k)).collect::<Vec<_>>(),
        have.iter().filter(|(k, v)| want.get(*k).is_some_and(|w| w != *v)).collect::<Vec<_>>()
    );
    // 200 created, 50 deleted, 2 markers.
    assert_eq!(want.len(), 152);
    assert!(want.contains_key("default/marker-1") && want.contains_key("other/p-199"));

    // Every injected fault was served: two held-back watches and five failed relist starts.
    assert!(wait_until(Duration::from_secs(10), || server.faults().hits() == 7).await, "{}", server.faults().hits());
    let marks = marks.lock().unwrap().clone();
    task.abort();
    let gone = marks.iter().position(|m| *m == Mark::Gone).unwrap_or_else(|| panic!("no 410 Gone seen: {marks:?}"));
    let init = gone + marks[gone..].iter().position(|m| *m == Mark::Init).expect("an Init after the 410");
    assert!(marks[init..].contains(&Mark::InitDone), "the relist after the 410 completed: {marks:?}");
    assert!(marks.iter().filter(|m| **m == Mark::Gone).count() >= 2, "{marks:?}");
    assert_eq!(marks.iter().filter(|m| **m == Mark::Injected).count(), 5, "{marks:?}");
    assert!(!marks.contains(&Mark::OtherError), "{marks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_converges_with_paged_list_then_watch() {
    reflector_converges(watcher::Config::default(), Verb::List).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_converges_with_small_pages() {
    reflector_converges(watcher::Config::default().page_size(7), Verb::List).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_converges_with_streaming_lists() {
    reflector_converges(watcher::Config::default().streaming_lists(), Verb::Watch).await;
}

// ---------------------------------------------------------------------------------------------------
// A controller over a custom resource, owning one ConfigMap per object.

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(group = "example.dev", version = "v1", kind = "Widget", namespaced, status = "WidgetStatus")]
struct WidgetSpec {
    size: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct WidgetStatus {
    observed_generation: i64,
    doubled: i64,
}

struct Ctx {
    client: kube::Client,
    errors: AtomicU32,
}

async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let ns = w.namespace().unwrap_or_default();
    let name = w.name_any();
    let want = WidgetStatus { observed_generation: w.metadata.generation.unwrap_or(0), doubled: w.spec.size * 2 };
    if w.status.as_ref() != Some(&want) {
        let widgets: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
        widgets.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": want}))).await?;
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("widget-{name}"), "ownerReferences": [w.controller_owner_ref(&())]},
        "data": {"size": w.spec.size.to_string()}});
    cms.patch(&format!("widget-{name}"), &PatchParams::apply("widget-controller").force(), &Patch::Apply(cm)).await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Widget>, _: &kube::Error, ctx: Arc<Ctx>) -> Action {
    ctx.errors.fetch_add(1, Ordering::Relaxed);
    Action::requeue(Duration::from_millis(50))
}

/// Whether every widget is reconciled at its latest generation, with its ConfigMap; the problems if not.
fn widget_problems(server: &FakeApiServer) -> Vec<String> {
    let mut problems = Vec::new();
    for w in server.list("example.dev/v1", "Widget", Some("default")) {
        let name = w["metadata"]["name"].as_str().unwrap_or("").to_string();
        let size = w["spec"]["size"].as_i64().unwrap_or(-1);
        let generation = w["metadata"]["generation"].as_i64().unwrap_or(-1);
        if w["status"] != json!({"observedGeneration": generation, "doubled": size * 2}) {
            problems.push(format!("{name}: generation {generation}, size {size}, status {}", w["status"]));
        }
        match server.get("v1", "ConfigMap", "default", &format!("widget-{name}")) {
            None => problems.push(format!("{name}: no ConfigMap")),
            Some(cm) => {
                if cm["data"]["size"] != json!(size.to_string()) {
                    problems.push(format!("{name}: ConfigMap data {}", cm["data"]));
                }
                if cm["metadata"]["ownerReferences"][0]["uid"] != w["metadata"]["uid"] {
                    problems.push(format!("{name}: ConfigMap owner {}", cm["metadata"]["ownerReferences"]));
                }
            }
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_converges_under_conflicts_and_dropped_watches() {
    let server = FakeApiServer::start().await.unwrap();
    server.put(serde_json::to_value(Widget::crd()).unwrap()).unwrap();
    let client = server.client();
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(Ctx { client: client.clone(), errors: AtomicU32::new(0) });
    server.faults().inject(Fault::conflict().on(Verb::Patch).resource("widgets/status").times(4));
    server.faults().inject(Fault::conflict().on(Verb::Patch).resource("configmaps").times(3));
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .owns(Api::<ConfigMap>::all(client.clone()), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    for i in 0..50 {
        let w = Widget::new(&format!("w-{i:02}"), WidgetSpec { size: i });
        widgets.create(&PostParams::default(), &w).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        let patch = json!({"spec": {"size": 100 + i}});
        widgets.patch(&format!("w-{i:02}"), &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }
    server.drop_watches();
    for i in (0..50).step_by(5) {
        let patch = json!({"spec": {"size": 1000 + i}});
        widgets.patch(&format!("w-{i:02}"), &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }
    // Someone deletes owned ConfigMaps: the controller, watching them, puts them back.
    assert!(wait_until(Duration::from_secs(10), || server.list("v1", "ConfigMap", Some("default")).len() >= 45).await);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 40..45 {
        match cms.delete(&format!("widget-w-{i:02}"), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => panic!("{e}"),
        }
    }
    // Compaction with the watches dropped: the controller's watchers relist or resume.
    server.drop_watches();
    server.compact();
    widgets.patch("w-49", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 4900}}))).await.unwrap();

    let converged = wait_until(Duration::from_secs(20), || widget_problems(&server).is_empty()).await;
    assert!(converged, "{:#?}", widget_problems(&server));
    assert_eq!(server.list("example.dev/v1", "Widget", Some("default")).len(), 50);
    let w00 = server.get("example.dev/v1", "Widget", "default", "w-00").unwrap();
    assert_eq!((w00["metadata"]["generation"].as_i64(), w00["status"]["doubled"].as_i64()), (Some(3), Some(2000)));
    let w01 = server.get("example.dev/v1", "Widget", "default", "w-01").unwrap();
    assert_eq!((w01["metadata"]["generation"].as_i64(), w01["status"]["doubled"].as_i64()), (Some(2), Some(202)));
    assert_eq!(server.faults().hits(), 7, "every injected conflict was met");
    assert!(ctx.errors.load(Ordering::Relaxed) >= 7, "the conflicts reached the error policy");
    controller.abort();
}

// ---------------------------------------------------------------------------------------------------
// Leases, with the plain API: acquire, renew, and two contenders racing on one version.

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn with_holder(lease: &Lease, holder: &str, transition: bool) -> Lease {
    let mut next = lease.clone();
    let spec = next.spec.get_or_insert_with(LeaseSpec::default);
    if transition {
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.acquire_time = Some(now());
    }
    spec.holder_identity = Some(holder.to_string());
    spec.renew_time = Some(now());
    next
}

#[tokio::test]
async fn lease_acquire_renew_and_one_winner_on_a_stale_version() {
    let server = FakeApiServer::start().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(server.client(), "default");
    let fresh = Lease {
        metadata: kube::api::ObjectMeta { name: Some("placement-operator".into()), ..Default::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    let acquired = leases.create(&PostParams::default(), &fresh).await.unwrap();
    // A second contender creating the same lease finds it taken.
    let mut theirs = fresh.clone();
    theirs.spec.as_mut().unwrap().holder_identity = Some("b".into());
    assert_eq!(api_code(&leases.create(&PostParams::default(), &theirs).await.unwrap_err()), Some(409));

    // Renew: replace with the version read.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let renewed =
        leases.replace("placement-operator", &PostParams::default(), &with_holder(&acquired, "a", false)).await;
    let renewed = renewed.unwrap();
    assert_ne!(renewed.metadata.resource_version, acquired.metadata.resource_version);
    let (before, after) = (&acquired.spec.as_ref().unwrap(), &renewed.spec.as_ref().unwrap());
    assert!(after.renew_time.as_ref().unwrap().0 > before.renew_time.as_ref().unwrap().0);
    assert_eq!(after.acquire_time, before.acquire_time);
    // Renewing from the version before the renewal is stale.
    let stale = leases.replace("placement-operator", &PostParams::default(), &with_holder(&acquired, "a", false)).await;
    assert_eq!(api_code(&stale.unwrap_err()), Some(409));

    // Both contenders read the same version and race to write it: exactly one wins.
    let seen = leases.get("placement-operator").await.unwrap();
    let a = with_holder(&seen, "a", false);
    let b = with_holder(&seen, "b", true);
    let pp = PostParams::default();
    let (ra, rb) =
        tokio::join!(leases.replace("placement-operator", &pp, &a), leases.replace("placement-operator", &pp, &b));
    let (winner, loser_error) = match (ra, rb) {
        (Ok(w), Err(e)) | (Err(e), Ok(w)) => (w, e),
        (ra, rb) => panic!("exactly one contender must win: {ra:?} {rb:?}"),
    };
    assert_eq!(api_code(&loser_error), Some(409));
    assert!(loser_error.to_string().contains("the object has been modified"), "{loser_error}");
    let held = leases.get("placement-operator").await.unwrap();
    assert_eq!(held.spec.as_ref().unwrap().holder_identity, winner.spec.as_ref().unwrap().holder_identity);
    assert_eq!(held.metadata.resource_version, winner.metadata.resource_version);

    // The loser retries its stale write and still loses; re-reading shows who holds it.
    let again = if winner.spec.as_ref().unwrap().holder_identity.as_deref() == Some("a") { &b } else { &a };
    let e = leases.replace("placement-operator", &PostParams::default(), again).await.unwrap_err();
    assert_eq!(api_code(&e), Some(409));

    // Handing over: b takes the lease from the current version, counting a transition.
    let current = leases.get("placement-operator").await.unwrap();
    let taken = leases.replace("placement-operator", &PostParams::default(), &with_holder(&current, "b", true)).await;
    let taken = taken.unwrap();
    let spec = taken.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert!(spec.lease_transitions.unwrap() >= 1);
}

// ---------------------------------------------------------------------------------------------------
// events.k8s.io/v1 Events: created with the client and with kube-runtime's recorder.

#[tokio::test]
async fn events_are_created_and_listed_back() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = pods.create(&PostParams::default(), &pod("web-0", 0)).await.unwrap();
    let events: Api<EventV1> = Api::namespaced(client.clone(), "default");

    let ev: EventV1 = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web-0.manual"},
        "eventTime": "2025-01-02T03:04:05.123456Z",
        "reportingController": "placement.dev/operator",
        "reportingInstance": "operator-0",
        "action": "Evict",
        "reason": "Rebalanced",
        "note": "moved to zone-b",
        "type": "Normal",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "web-0"}
    }))
    .unwrap();
    events.create(&PostParams::default(), &ev).await.unwrap();

    let recorder = Recorder::new(
        client.clone(),
        Reporter { controller: "placement-test".into(), instance: Some("test-0".into()) },
    );
    let published = RecorderEvent {
        type_: EventType::Warning,
        reason: "Unbalanced".into(),
        note: Some("zone-a holds 3 of 3 replicas".into()),
        action: "Check".into(),
        secondary: None,
    };
    let reference = p.object_ref(&());
    recorder.publish(&published, &reference).await.unwrap();
    // The same event again becomes a series on the first one (a patch), not a new object.
    recorder.publish(&published, &reference).await.unwrap();

    let listed = events.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let by = |controller: &str| {
        listed.iter().find(|e| e.reporting_controller.as_deref() == Some(controller)).expect("the event is listed")
    };
    let manual = by("placement.dev/operator");
    assert_eq!(manual.reporting_controller.as_deref(), Some("placement.dev/operator"));
    assert_eq!(manual.reason.as_deref(), Some("Rebalanced"));
    assert_eq!(manual.note.as_deref(), Some("moved to zone-b"));
    assert_eq!(manual.event_time.as_ref().map(|t| t.0.to_string()).as_deref(), Some("2025-01-02T03:04:05.123456Z"));
    assert_eq!(manual.regarding.as_ref().and_then(|r| r.name.as_deref()), Some("web-0"));
    let recorded = by("placement-test");
    assert_eq!(recorded.reporting_controller.as_deref(), Some("placement-test"));
    assert_eq!(recorded.reporting_instance.as_deref(), Some("test-0"));
    assert_eq!(recorded.type_.as_deref(), Some("Warning"));
    assert_eq!(recorded.regarding.as_ref().and_then(|r| r.uid.as_deref()), p.metadata.uid.as_deref());
    assert_eq!(recorded.series.as_ref().map(|s| s.count), Some(2));
    assert!(recorded.metadata.name.as_deref().unwrap().starts_with("web-0."));

    // Selecting by field, as `kubectl events --for pod/web-0` does.
    let about_web0 = events.list(&ListParams::default().fields("regarding.name=web-0")).await.unwrap();
    assert_eq!(about_web0.items.len(), 2);
    let rebalanced = events.list(&ListParams::default().fields("reason=Rebalanced")).await.unwrap();
    assert_eq!(
        rebalanced.items.iter().filter_map(|e| e.metadata.name.as_deref()).collect::<Vec<_>>(),
        ["web-0.manual"]
    );
}

// ---------------------------------------------------------------------------------------------------
// Two places where the fake once departed from the real server; each test states the real behaviour.

#[tokio::test]
async fn paged_list_continues_from_the_first_pages_snapshot() {
    // A watcher lists in pages and then watches from the list's version. The real server serves every
    // page from the first page's snapshot, so the pages and the replayed events never overlap; when a
    // later page already holds newer objects, the replay moves a reflector's store back in time first.
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    for name in ["a", "b", "c"] {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": "0"}});
        api.create(&PostParams::default(), &serde_json::from_value(cm).unwrap()).await.unwrap();
    }
    let first = api.list(&ListParams::default().limit(1)).await.unwrap();
    let b_before = api.get("b").await.unwrap().metadata.resource_version;
    api.patch("b", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "1"}}))).await.unwrap();
    api.delete("c", &DeleteParams::default()).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let rest = api.list(&ListParams::default().limit(10).continue_token(&token)).await.unwrap();
    assert_eq!(rest.metadata.resource_version, first.metadata.resource_version);
    let seen: Vec<_> = rest.items.iter().map(|c| (c.name_any(), c.metadata.resource_version.clone())).collect();
    let c_at_list = seen.iter().find(|(n, _)| n == "c").map(|(_, rv)| rv.clone());
    assert_eq!(seen.first(), Some(&("b".to_string(), b_before)), "b as of the list's version: {seen:?}");
    assert!(c_at_list.is_some(), "c, deleted after the list's version, is still on the page: {seen:?}");
}

#[tokio::test]
async fn events_k8s_io_events_are_core_events_too() {
    // `kubectl describe` reads core v1 Events: on a real cluster it shows what kube-runtime's recorder
    // published through events.k8s.io/v1.
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    let server = FakeApiServer::start().await.unwrap();
    let events: Api<EventV1> = Api::namespaced(server.client(), "default");
    let ev: EventV1 = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "web-0.manual"},
        "eventTime": "2025-01-02T03:04:05.123456Z", "reportingController": "placement.dev/operator",
        "reportingInstance": "operator-0", "action": "Evict", "reason": "Rebalanced", "note": "moved", "type": "Normal",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "web-0"}
    }))
    .unwrap();
    events.create(&PostParams::default(), &ev).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(server.client(), "default");
    let listed = core.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed.len(), 1, "the events.k8s.io Event is a core Event too");
    assert_eq!(listed[0].involved_object.name.as_deref(), Some("web-0"));
    assert_eq!(listed[0].reason.as_deref(), Some("Rebalanced"));
    assert_eq!(listed[0].message.as_deref(), Some("moved"));

    // And the other way: a watch through events.k8s.io/v1 sees a core Event in its own form.
    let rv = events.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut watch = events.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    let core_event: CoreEvent = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-1.core"}, "involvedObject": {"kind": "Pod", "name": "web-1"},
        "reason": "Scheduled", "message": "assigned", "type": "Normal"}))
    .unwrap();
    core.create(&PostParams::default(), &core_event).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.try_next()).await.unwrap().unwrap().unwrap();
    match seen {
        WatchEvent::Added(e) => {
            assert_eq!(e.regarding.and_then(|r| r.name).as_deref(), Some("web-1"));
            assert_eq!(e.note.as_deref(), Some("assigned"));
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
}
