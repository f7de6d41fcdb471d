//! Quantity fields into exact integers, with the field path in every error. CPU and memory are the only
//! resources placement decides on; other resource names (`ephemeral-storage`, extended resources) are
//! read by nobody and therefore never parsed, so a strange GPU quantity cannot make a pod disappear.
//! The parsing itself is [`crate::quantity`]: exact, rounding up like the API server.

use super::error::{ConvertError, Obj};
use crate::quantity;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use placement_core::resources::Resources;
use std::collections::BTreeMap;

/// A resource list (`requests`, `allocatable`, `usage`, ...).
pub(crate) type ResourceList = BTreeMap<String, Quantity>;

/// CPU millicores of `q`, or an error at `field`.
pub(crate) fn cpu(obj: &Obj, field: &str, q: &Quantity) -> Result<u64, ConvertError> {
    quantity::cpu_millis(&q.0).map_err(|e| obj.err(field, e))
}

/// Bytes of `q`, or an error at `field`.
pub(crate) fn bytes(obj: &Obj, field: &str, q: &Quantity) -> Result<u64, ConvertError> {
    quantity::bytes(&q.0).map_err(|e| obj.err(field, e))
}

/// `cpu` and `memory` of a resource list at `path` (missing ones are 0).
pub(crate) fn resources(obj: &Obj, path: &str, list: Option<&ResourceList>) -> Result<Resources, ConvertError> {
    let Some(list) = list else {
        return Ok(Resources::ZERO);
    };
    let cpu_millis = list.get("cpu").map(|q| cpu(obj, &format!("{path}.cpu"), q)).transpose()?.unwrap_or(0);
    let memory_bytes = list.get("memory").map(|q| bytes(obj, &format!("{path}.memory"), q)).transpose()?.unwrap_or(0);
    Ok(Resources::new(cpu_millis, memory_bytes))
}
