//! A pod's effective request, by the rules the scheduler uses:
//!
//! * each container's request of a resource is its `requests` entry, or its `limits` entry when only a
//!   limit is set (the API server defaults requests to limits per resource, so an object that skipped
//!   defaulting, such as a webhook's pod or a hand-written fixture, gets the same number);
//! * init containers with `restartPolicy: Always` are sidecars that keep running next to the app
//!   containers; the other init containers run one at a time (see
//!   [`placement_core::resources::effective_requests`]);
//! * pod-level `spec.resources` (PodLevelResources): a pod-level request of a resource (or its limit,
//!   when only a limit is set) replaces the containers' aggregate for that resource;
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

/// CPU and memory of a requests/limits pair at `path` (`spec.containers[1].resources`): each from
/// `requests`, falling back to `limits`. `None` per resource when neither is set.
fn requests_or_limits(
    obj: &Obj,
    path: &str,
    r: Option<&core_v1::ResourceRequirements>,
) -> Result<(Option<u64>, Option<u64>), ConvertError> {
    let Some(r) = r else {
        return Ok((None, None));
    };
    let pick = |name: &str| -> Option<(String, &Quantity)> {
        find(r.requests.as_ref(), path, "requests", name).or_else(|| find(r.limits.as_ref(), path, "limits", name))
    };
    let cpu = pick("cpu").map(|(field, q)| quantities::cpu(obj, &field, q)).transpose()?;
    let memory = pick("memory").map(|(field, q)| quantities::bytes(obj, &field, q)).transpose()?;
    Ok((cpu, memory))
}

fn container(obj: &Obj, path: &str, c: &core_v1::Container) -> Result<Resources, ConvertError> {
    let (cpu, memory) = requests_or_limits(obj, &format!("{path}.resources"), c.resources.as_ref())?;
    Ok(Resources::new(cpu.unwrap_or(0), memory.unwrap_or(0)))
}

/// The effective request of a pod spec.
pub(crate) fn effective(obj: &Obj, spec: &core_v1::PodSpec) -> Result<Resources, ConvertError> {
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| container(obj, &format!("spec.containers[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            Ok(InitContainer {
                requests: container(obj, &format!("spec.initContainers[{i}]"), c)?,
                restartable: c.restart_policy.as_deref() == Some("Always"),
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let overhead = quantities::resources(obj, "spec.overhead", spec.overhead.as_ref())?;
    let mut total = resources::effective_requests(&containers, &init, Resources::ZERO);
    let (pod_cpu, pod_memory) = requests_or_limits(obj, "spec.resources", spec.resources.as_ref())?;
    if let Some(cpu) = pod_cpu {
        total.cpu_millis = cpu;
    }
    if let Some(memory) = pod_memory {
        total.memory_bytes = memory;
    }
    Ok(total + overhead)
}
