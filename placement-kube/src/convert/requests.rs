//! A pod's effective request, by the rules the scheduler uses:
//!
//! * each container's request of a resource is its `requests` entry, or its `limits` entry when only a
//!   limit is set (the API server defaults requests to limits per resource, so an object that skipped
//!   defaulting, such as a webhook's pod or a hand-written fixture, gets the same number);
//! * init containers with `restartPolicy: Always` are sidecars that keep running next to the app
//!   containers; the other init containers run one at a time (see
//!   [`placement_core::resources::effective_requests`]);
//! * pod-level `spec.resources` (PodLevelResources): a pod-level request of a resource replaces the
//!   containers' aggregate for that resource; a pod-level limit without request counts as the request
//!   only when no container sets that resource (the API server's defaulting of pod-level requests);
//! * `spec.overhead` (RuntimeClass overhead) is added on top.
//!
//! Only CPU and memory are read. Ephemeral containers have no requests in the scheduler's sense.

use super::error::{ConvertError, Obj};
use super::quantities::{self, ResourceList};
use k8s_openapi::api::core::v1 as core_v1;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use placement_core::resources::{self, InitContainer, Resources};

/// Resource `name` of `list` with its field path (`{path}.{which}.{name}`).
fn find<'l>(list: Option<&'l ResourceList>, path: &str, which: &str, name: &str) -> Option<(String, &'l Quantity)> {
    list.and_then(|l| l.get(name)).map(|q| (format!("{path}.{which}.{name}"), q))
}

/// `(cpu, memory)`, each `None` when not set.
type Pair = (Option<u64>, Option<u64>);

/// CPU and memory of one list (`{path}.{which}`) of a requests/limits pair.
fn list(obj: &Obj, path: &str, which: &str, list: Option<&ResourceList>) -> Result<Pair, ConvertError> {
    let cpu = find(list, path, which, "cpu").map(|(field, q)| quantities::cpu(obj, &field, q)).transpose()?;
    let memory = find(list, path, which, "memory").map(|(field, q)| quantities::bytes(obj, &field, q)).transpose()?;
    Ok((cpu, memory))
}

/// A container's request per resource at `path` (`spec.containers[1].resources`): `requests`, falling
/// back to `limits` resource by resource. A limit is only parsed when it is used.
fn container(obj: &Obj, path: &str, c: &core_v1::Container) -> Result<Pair, ConvertError> {
    let Some(r) = c.resources.as_ref() else {
        return Ok((None, None));
    };
    let (cpu, memory) = list(obj, path, "requests", r.requests.as_ref())?;
    let cpu = match cpu {
        Some(v) => Some(v),
        None => find(r.limits.as_ref(), path, "limits", "cpu").map(|(f, q)| quantities::cpu(obj, &f, q)).transpose()?,
    };
    let memory = match memory {
        Some(v) => Some(v),
        None => {
            find(r.limits.as_ref(), path, "limits", "memory").map(|(f, q)| quantities::bytes(obj, &f, q)).transpose()?
        }
    };
    Ok((cpu, memory))
}

fn value((cpu, memory): Pair) -> Resources {
    Resources::new(cpu.unwrap_or(0), memory.unwrap_or(0))
}

/// The effective request of a pod spec.
pub(crate) fn effective(obj: &Obj, spec: &core_v1::PodSpec) -> Result<Resources, ConvertError> {
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| container(obj, &format!("spec.containers[{i}].resources"), c))
        .collect::<Result<Vec<_>, _>>()?;
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| Ok((container(obj, &format!("spec.initContainers[{i}].resources"), c)?, c)))
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let containers_set_cpu = containers.iter().chain(init.iter().map(|(p, _)| p)).any(|p| p.0.is_some());
    let containers_set_memory = containers.iter().chain(init.iter().map(|(p, _)| p)).any(|p| p.1.is_some());

    let app: Vec<Resources> = containers.into_iter().map(value).collect();
    let init: Vec<InitContainer> = init
        .into_iter()
        .map(|(p, c)| InitContainer { requests: value(p), restartable: c.restart_policy.as_deref() == Some("Always") })
        .collect();
    let mut total = resources::effective_requests(&app, &init, Resources::ZERO);

    if let Some(r) = spec.resources.as_ref() {
        let (req_cpu, req_memory) = list(obj, "spec.resources", "requests", r.requests.as_ref())?;
        let (lim_cpu, lim_memory) = list(obj, "spec.resources", "limits", r.limits.as_ref())?;
        if let Some(cpu) = req_cpu.or(lim_cpu.filter(|_| !containers_set_cpu)) {
            total.cpu_millis = cpu;
        }
        if let Some(memory) = req_memory.or(lim_memory.filter(|_| !containers_set_memory)) {
            total.memory_bytes = memory;
        }
    }
    let overhead = quantities::resources(obj, "spec.overhead", spec.overhead.as_ref())?;
    Ok(total + overhead)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MI: u64 = 1 << 20;

    fn spec(v: serde_json::Value) -> core_v1::PodSpec {
        serde_json::from_value(v).expect("pod spec")
    }

    fn c(name: &str, resources: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "resources": resources})
    }

    #[test]
    fn effective_request_table() {
        let obj = Obj::namespaced("Pod", "ns", "p");
        let cases: Vec<(&str, serde_json::Value, Resources)> = vec![
            ("no resources at all", json!({"containers": [{"name": "a"}]}), Resources::ZERO),
            (
                "limits default requests per resource",
                json!({"containers": [c("a", json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "200m"}}))]}),
                Resources::new(200, 1024 * MI),
            ),
            (
                "init container with restartPolicy other than Always is not a sidecar",
                json!({
                    "containers": [c("a", json!({"requests": {"cpu": "100m"}}))],
                    "initContainers": [
                        {"name": "i", "restartPolicy": "OnFailure", "resources": {"requests": {"cpu": "50m"}}}
                    ]
                }),
                Resources::new(100, 0),
            ),
            (
                "pod-level request replaces the aggregate, overhead still added",
                json!({
                    "containers": [c("a", json!({"requests": {"cpu": "100m", "memory": "64Mi"}}))],
                    "resources": {"requests": {"cpu": "1"}},
                    "overhead": {"cpu": "10m", "memory": "1Mi"}
                }),
                Resources::new(1010, 65 * MI),
            ),
            (
                "pod-level limit counts only for resources no container sets",
                json!({
                    "containers": [c("a", json!({"requests": {"cpu": "100m"}})), {"name": "b"}],
                    "resources": {"limits": {"cpu": "2", "memory": "2Gi"}}
                }),
                Resources::new(100, 2048 * MI),
            ),
        ];
        for (name, s, want) in cases {
            assert_eq!(effective(&obj, &spec(s)).expect(name), want, "{name}");
        }
    }

    #[test]
    fn unused_limits_are_not_parsed() {
        let obj = Obj::namespaced("Pod", "ns", "p");
        let s = spec(json!({"containers": [c("a", json!({"limits": {"cpu": "junk"}, "requests": {"cpu": "1"}}))]}));
        assert_eq!(effective(&obj, &s), Ok(Resources::new(1000, 0)));
        let s = spec(json!({"containers": [c("a", json!({"limits": {"cpu": "junk"}}))]}));
        assert_eq!(effective(&obj, &s).unwrap_err().field, "spec.containers[0].resources.limits.cpu");
    }
}
