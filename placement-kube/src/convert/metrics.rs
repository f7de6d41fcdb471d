//! metrics.k8s.io/v1beta1 `NodeMetrics` and `PodMetrics`, which k8s-openapi does not ship: minimal
//! serde types that implement k8s-openapi's `Resource`/`ListableResource`/`Metadata` (and through them
//! `kube::Resource`), so `kube::Api::<NodeMetrics>::all(client)` lists them like any other object, and
//! their conversion into core usage (CPU millicores, memory bytes; a pod's usage is the sum of its
//! containers'). metrics-server reports CPU in nanocores (`123456789n`), which rounds **up** to
//! millicores like every quantity here.

use super::error::{ConvertError, Obj};
use super::quantities;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use placement_core::resources::Resources;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

const GROUP: &str = "metrics.k8s.io";
const VERSION: &str = "v1beta1";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// Usage of one node over `window`, measured at `timestamp`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMetrics {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub timestamp: Option<Time>,
    /// A Go duration, e.g. `"20.05s"`.
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// Usage of one container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerMetrics {
    pub name: String,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// Usage of one pod, per container.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetrics {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub timestamp: Option<Time>,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

/// The wire form, with `apiVersion` and `kind` as the API server writes them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a, T: Serialize> {
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a ObjectMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: &'a Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: &'a Option<String>,
    #[serde(flatten)]
    rest: T,
}

impl Serialize for NodeMetrics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Rest<'a> {
            usage: &'a BTreeMap<String, Quantity>,
        }
        Wire {
            api_version: API_VERSION,
            kind: "NodeMetrics",
            metadata: &self.metadata,
            timestamp: &self.timestamp,
            window: &self.window,
            rest: Rest { usage: &self.usage },
        }
        .serialize(s)
    }
}

impl Serialize for PodMetrics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Rest<'a> {
            containers: &'a [ContainerMetrics],
        }
        Wire {
            api_version: API_VERSION,
            kind: "PodMetrics",
            metadata: &self.metadata,
            timestamp: &self.timestamp,
            window: &self.window,
            rest: Rest { containers: &self.containers },
        }
        .serialize(s)
    }
}

/// `kube::Resource` (through k8s-openapi's traits) for a metrics.k8s.io kind.
macro_rules! metrics_resource {
    ($ty:ty, $kind:literal, $list_kind:literal, $plural:literal, $scope:ty) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = API_VERSION;
            const GROUP: &'static str = GROUP;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = VERSION;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = $scope;
        }

        impl k8s_openapi::ListableResource for $ty {
            const LIST_KIND: &'static str = $list_kind;
        }

        impl k8s_openapi::Metadata for $ty {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

metrics_resource!(NodeMetrics, "NodeMetrics", "NodeMetricsList", "nodes", k8s_openapi::ClusterResourceScope);
metrics_resource!(PodMetrics, "PodMetrics", "PodMetricsList", "pods", k8s_openapi::NamespaceResourceScope);

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("<unnamed>")
}

/// A node's usage. Errors name the NodeMetrics object and the field (`usage.cpu`).
pub fn node_usage(m: &NodeMetrics) -> Result<Resources, ConvertError> {
    let obj = Obj::cluster("NodeMetrics", name(&m.metadata));
    quantities::resources(&obj, "usage", Some(&m.usage))
}

/// A pod's usage: the sum of its containers' (each rounded up to a millicore first, so the sum may be
/// up to one millicore per container above the nanocore total). Errors name the field
/// (`containers[1].usage.memory`).
pub fn pod_usage(m: &PodMetrics) -> Result<Resources, ConvertError> {
    let obj = Obj::namespaced("PodMetrics", m.metadata.namespace.as_deref().unwrap_or_default(), name(&m.metadata));
    m.containers
        .iter()
        .enumerate()
        .map(|(i, c)| quantities::resources(&obj, &format!("containers[{i}].usage"), Some(&c.usage)))
        .sum()
}
