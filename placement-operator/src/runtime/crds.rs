//! The startup check that the placement CRDs are installed.
//!
//! The operator asks API discovery (`/apis/{group}/{version}`) for every served version of every CRD in
//! [`placement_kube::crd::all_crds`], not the `customresourcedefinitions` resource itself: discovery
//! needs no RBAC beyond what every authenticated client has, and it says what the API server actually
//! serves (a CRD object can exist while its version is not yet established). A missing CRD is a
//! deployment error, not something to wait for: the operator exits non-zero with a message listing
//! every missing resource and the command that installs them.

use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Where the CRD manifests live in the repository and release artefacts.
pub const INSTALL_HINT: &str = "install them with `kubectl apply -f deploy/crds/` (or `kubectl apply -k deploy/operator` \
after the CRDs), then restart the operator";

/// What the placement CRDs need: `group/version` to the plurals served there, and each plural's CRD name.
fn expected() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for crd in placement_kube::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let spec = &crd.spec;
        for v in spec.versions.iter().filter(|v| v.served) {
            out.entry(format!("{}/{}", spec.group, v.name))
                .or_default()
                .insert(spec.names.plural.clone(), format!("{name} ({})", v.name));
        }
    }
    out
}

/// Checks through discovery that every placement CRD version is served; lists the missing ones.
pub async fn missing(client: &kube::Client) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for (group_version, plurals) in expected() {
        let served: BTreeSet<String> = match client.list_api_group_resources(&group_version).await {
            Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
            Err(kube::Error::Api(s)) if s.code == 404 => BTreeSet::new(),
            Err(e) => return Err(Error::kube(format!("discovering {group_version}"), e)),
        };
        missing.extend(plurals.into_iter().filter(|(plural, _)| !served.contains(plural)).map(|(_, crd)| crd));
    }
    Ok(missing)
}

/// [`missing`], as an error naming every missing CRD and how to install them.
pub async fn check(client: &kube::Client) -> Result<()> {
    let missing = missing(client).await?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::MissingCrds(format!(
        "the placement CRDs are not installed in this cluster; missing: {}; {INSTALL_HINT}",
        missing.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_is_expected_under_its_group_version() {
        let e = expected();
        let all: Vec<&String> = e.values().flat_map(|p| p.keys()).collect();
        assert_eq!(all.len(), placement_kube::crd::all_crds().len());
        assert!(e.keys().all(|gv| gv.starts_with("placement.dev/")), "{e:?}");
    }
}
