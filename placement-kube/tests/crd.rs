//! The custom resources: every CRD renders with its names, printer columns, status subresource and a
//! description on every schema property; the examples in `examples/crds` deserialize and convert to
//! core; invalid specs give errors naming the field; omitted fields take their defaults.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use placement_kube::crd::{
    self, CrdError, NodeClass, PodDistribution, PodDistributionSpec, RebalancePolicy, RebalancePolicySpec,
    TrafficWeight, TrafficWeightSpec, WorkloadSLO, ZoneBalancer, ZoneBalancerSpec,
};
use serde_json::Value;
use std::path::PathBuf;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/crds")
}

fn schema_of(crd: &CustomResourceDefinition) -> Value {
    let version = crd.spec.versions.first().expect("one version");
    let schema = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("a schema");
    serde_json::to_value(schema).expect("schema serializes")
}

#[test]
fn every_crd_renders_with_names_columns_and_status() {
    let crds = crd::all_crds();
    let names: Vec<&str> = crds.iter().filter_map(|c| c.metadata.name.as_deref()).collect();
    assert_eq!(
        names,
        [
            "zonebalancers.placement.dev",
            "poddistributions.placement.dev",
            "rebalancepolicies.placement.dev",
            "workloadslos.placement.dev",
            "nodeclasses.placement.dev",
            "trafficweights.placement.dev",
        ]
    );
    let expected = [
        ("ZoneBalancer", "Namespaced", "zb"),
        ("PodDistribution", "Namespaced", "pdist"),
        ("RebalancePolicy", "Cluster", "rbp"),
        ("WorkloadSLO", "Namespaced", "wslo"),
        ("NodeClass", "Cluster", "nclass"),
        ("TrafficWeight", "Namespaced", "tw"),
    ];
    for (c, (kind, scope, short)) in crds.iter().zip(expected) {
        assert_eq!(c.spec.group, crd::GROUP);
        assert_eq!(c.spec.names.kind, kind);
        assert_eq!(c.spec.scope, scope, "{kind}");
        assert_eq!(c.spec.names.short_names.as_deref(), Some(&[short.to_string()][..]), "{kind}");
        assert_eq!(c.spec.names.categories.as_deref(), Some(&[crd::CATEGORY.to_string()][..]), "{kind}");
        assert_eq!(c.spec.versions.len(), 1);
        let v = &c.spec.versions[0];
        assert_eq!(v.name, crd::VERSION);
        assert!(v.served && v.storage);
        let status = v.subresources.as_ref().and_then(|s| s.status.as_ref());
        assert!(status.is_some(), "{kind} has a status subresource");
        let columns = v.additional_printer_columns.as_deref().unwrap_or_default();
        let column_names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert!(column_names.contains(&"Ready") && column_names.contains(&"Age"), "{kind}: {column_names:?}");
        assert!(columns.len() >= 3, "{kind} has key fields as columns too");
        for col in columns {
            assert!(col.description.as_deref().is_some_and(|d| !d.is_empty()), "{kind}.{} has a description", col.name);
            assert!(col.json_path.starts_with('.'), "{kind}.{}", col.name);
        }
        let schema = schema_of(c);
        let spec = &schema["properties"]["spec"];
        let status = &schema["properties"]["status"];
        for (what, s) in [("spec", spec), ("status", status)] {
            assert_eq!(s["type"], "object", "{kind}.{what}");
        }
        let status_props = status["properties"].as_object().expect("status properties");
        assert!(status_props.contains_key("observedGeneration"), "{kind}");
        assert_eq!(status_props["conditions"]["x-kubernetes-list-type"], "map", "{kind}");
    }
    assert_eq!(ZoneBalancer::crd_name(), "zonebalancers.placement.dev");
}

/// Every property of every schema (nested objects, array items, map values) has a description.
#[test]
fn every_schema_property_has_a_description() {
    fn walk(node: &Value, path: &str, missing: &mut Vec<String>) {
        let Some(obj) = node.as_object() else { return };
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                let described = prop.get("description").and_then(Value::as_str).is_some_and(|d| !d.trim().is_empty());
                if !described {
                    missing.push(here.clone());
                }
                walk(prop, &here, missing);
            }
        }
        if let Some(items) = obj.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
        if let Some(values) = obj.get("additionalProperties") {
            walk(values, &format!("{path}{{}}"), missing);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for (i, sub) in obj.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
                walk(sub, &format!("{path}<{key}{i}>"), missing);
            }
        }
    }
    let mut missing = Vec::new();
    let mut count = 0;
    for c in crd::all_crds() {
        let schema = schema_of(&c);
        let root = c.spec.names.kind.clone();
        assert!(schema["description"].as_str().is_some_and(|d| !d.is_empty()), "{root} has a description");
        walk(&schema, &root, &mut missing);
        count += serde_json::to_string(&schema).map(|s| s.matches("\"description\"").count()).unwrap_or(0);
    }
    assert!(missing.is_empty(), "properties without a description:\n{}", missing.join("\n"));
    assert!(count > 150, "the walk saw the schemas ({count} descriptions)");
}

#[test]
fn cross_field_rules_are_cel_validations() {
    let all = serde_json::to_string(&crd::all_crds()).expect("serializes");
    for rule in [
        "self.groups.filter(g, has(g.base)).size() <= 1",
        "has(self.weight) != has(self.percent)",
        "self.coldThreshold < self.hotThreshold",
        "has(self.route53) != has(self.httpRoute)",
        "self.groups.map(g, g.percent).sum() == 100",
        "!has(self.rebalanceThreshold) || self.mode == 'operator'",
        "has(self.targetRef) || has(self.selector)",
    ] {
        let quoted = serde_json::to_string(rule).expect("string");
        let encoded = quoted.trim_matches('"');
        assert!(all.contains(encoded), "missing CEL rule {rule}");
    }
    // Lists used in rules are bounded, so the API server can estimate their cost.
    let pd = schema_of(&PodDistribution::crd());
    assert_eq!(pd["properties"]["spec"]["properties"]["groups"]["maxItems"], 16);
}

#[test]
fn yaml_renders_with_the_header_and_parses_back() {
    let files = crd::rendered_files().expect("renders");
    assert_eq!(files.len(), 6);
    for (name, text) in &files {
        assert!(name.ends_with(".placement.dev.yaml"), "{name}");
        assert!(text.starts_with(crd::GENERATED_HEADER), "{name}");
        let back: CustomResourceDefinition = serde_yaml_ng::from_str(text).expect("parses");
        assert_eq!(format!("{}.yaml", back.metadata.name.as_deref().unwrap_or_default()), *name);
    }
    assert_eq!(files, crd::rendered_files().expect("renders"), "rendering is deterministic");
    for name in ["pdist", "PodDistribution", "poddistributions", "poddistributions.placement.dev"] {
        let found = crd::find_crd(name).and_then(|c| c.metadata.name);
        assert_eq!(found.as_deref(), Some("poddistributions.placement.dev"), "{name}");
    }
    assert!(crd::crd_yaml_by_name("nonsense").is_none());
    assert!(crd::crd_yaml_by_name("tw").is_some_and(|r| r.is_ok()));
}

/// Deserialize one example document and convert its spec to core.
fn check_example(file: &str, text: &str) -> Result<String, String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    assert_eq!(doc["apiVersion"], crd::API_VERSION, "{file}");
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
    let err = |e: CrdError| format!("{file}: {e}");
    let de = |e: serde_yaml_ng::Error| format!("{file}: {e}");
    match kind.as_str() {
        "ZoneBalancer" => {
            let r: ZoneBalancer = serde_yaml_ng::from_str(text).map_err(de)?;
            r.spec.to_core().map_err(err)?;
        }
        "PodDistribution" => {
            let r: PodDistribution = serde_yaml_ng::from_str(text).map_err(de)?;
            r.spec.to_core(&ns).map_err(err)?;
        }
        "RebalancePolicy" => {
            let r: RebalancePolicy = serde_yaml_ng::from_str(text).map_err(de)?;
            r.spec.to_core().map_err(err)?;
        }
        "WorkloadSLO" => {
            let r: WorkloadSLO = serde_yaml_ng::from_str(text).map_err(de)?;
            let target = placement_core::selector::LabelSelector::from_pairs([("app", "api")]);
            r.spec.to_core_with_target(&ns, "x", Some(&target)).map_err(err)?;
        }
        "NodeClass" => {
            let r: NodeClass = serde_yaml_ng::from_str(text).map_err(de)?;
            r.spec.to_core("x").map_err(err)?;
        }
        "TrafficWeight" => {
            let r: TrafficWeight = serde_yaml_ng::from_str(text).map_err(de)?;
            r.spec.to_core(8).map_err(err)?;
        }
        other => return Err(format!("{file}: unknown kind {other:?}")),
    }
    Ok(kind)
}

#[test]
fn every_example_deserializes_and_converts() {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/crds exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    let mut kinds = Vec::new();
    for path in &entries {
        let text = std::fs::read_to_string(path).expect("readable");
        let kind = check_example(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
        kinds.push(kind);
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), 6, "one example per kind at least: {kinds:?}");
}

#[test]
fn every_yaml_block_of_the_docs_deserializes_and_converts() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/crds.md");
    let text = std::fs::read_to_string(&path).expect("docs/crds.md exists");
    let mut blocks = 0;
    let mut rest = text.as_str();
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("closed block");
        check_example(&format!("docs/crds.md block {blocks}"), &body[..end]).unwrap_or_else(|e| panic!("{e}"));
        blocks += 1;
        rest = &body[end + 3..];
    }
    assert!(blocks >= 6, "{blocks} blocks");
}

/// The placement resources in the guides (docs/traffic-weights.md, docs/migration.md) are valid too; their
/// other objects (Secrets, routes, RoleBindings) are at least YAML with a kind.
#[test]
fn the_guides_examples_are_valid() {
    for (file, at_least) in [("traffic-weights.md", 2), ("migration.md", 6)] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs").join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("docs/{file}: {e}"));
        let mut checked = 0;
        for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
            let body = &block[..block.find("```").expect("closed block")];
            for doc in body.split("\n---\n") {
                let value: serde_yaml_ng::Value =
                    serde_yaml_ng::from_str(doc).unwrap_or_else(|e| panic!("docs/{file} block {i}: {e}"));
                let kind = value["kind"].as_str().unwrap_or_else(|| panic!("docs/{file} block {i}: no kind"));
                let api = value["apiVersion"].as_str().unwrap_or_default();
                if api.starts_with("placement.dev/") {
                    check_example(&format!("docs/{file} block {i} ({kind})"), doc).unwrap_or_else(|e| panic!("{e}"));
                    checked += 1;
                }
            }
        }
        assert!(checked >= at_least, "docs/{file}: {checked} placement resources checked");
    }
}

#[test]
fn the_examples_mean_what_they_say() {
    let text = std::fs::read_to_string(examples_dir().join("poddistribution.yaml")).expect("readable");
    let r: PodDistribution = serde_yaml_ng::from_str(&text).expect("parses");
    let cfg = r.spec.to_core("shop").expect("valid");
    assert_eq!(cfg.target, placement_core::model::WorkloadRef::deployment("shop", "web"));
    assert_eq!(cfg.rule.apportionment.target(12), vec![10, 2], "base 2, then 4:1 over 10 pods");
    assert_eq!(cfg.max_pods, vec![None, Some(50)]);
    assert!(!cfg.rule.all_revisions);

    let text = std::fs::read_to_string(examples_dir().join("trafficweight-route53.yaml")).expect("readable");
    let r: TrafficWeight = serde_yaml_ng::from_str(&text).expect("parses");
    let policy = r.spec.to_core(8).expect("valid").compile().expect("compiles");
    let now: jiff::Timestamp = "2026-11-24T03:00:00Z".parse().expect("time");
    let metric = placement_core::tracking::parse_metric("3000").expect("number");
    let d = placement_core::tracking::step(&policy, &Default::default(), metric, 8, now);
    assert_eq!(d.apply, Some(16), "{}", d.reason);
    assert_eq!(policy.policy.range.max, 255);
    assert_eq!(policy.policy.cooldown_seconds, 300);

    let text = std::fs::read_to_string(examples_dir().join("rebalancepolicy.yaml")).expect("readable");
    let r: RebalancePolicy = serde_yaml_ng::from_str(&text).expect("parses");
    let p = r.spec.to_core().expect("valid");
    assert_eq!(p.max_evictions_per_namespace_per_hour, Some(20));
    assert_eq!((p.workload_backoff_seconds, p.node_backoff_seconds), (600, 300));
    assert!(p.dry_run);
}

#[test]
fn omitted_fields_take_their_defaults() {
    let zb: ZoneBalancerSpec = serde_yaml_ng::from_str("selector: {}").expect("parses");
    assert_eq!(zb.topology_key, "topology.kubernetes.io/zone");
    assert!(zb.zones.is_empty());
    let cfg = zb.to_core().expect("valid");
    assert_eq!(cfg.mode, crd::zone_balancer::ZoneMode::Webhook);
    assert_eq!(cfg.affinity, crd::zone_balancer::ZoneAffinity::Required);

    let pd: PodDistributionSpec = serde_yaml_ng::from_str(
        "targetRef: {kind: Deployment, name: web}\ngroups:\n- {name: a, nodeSelector: {matchLabels: {t: a}}, weight: 1}",
    )
    .expect("parses");
    assert!(pd.revision_scoped, "revisionScoped defaults to true");
    assert!(!pd.strict);
    assert_eq!(pd.fallback, crd::pod_distribution::FallbackMode::Next);
    assert_eq!(pd.enforcement, crd::pod_distribution::Enforcement::Required);

    // `spec: {}` is the core defaults, in dry-run.
    let rp: RebalancePolicySpec = serde_yaml_ng::from_str("{}").expect("parses");
    assert_eq!(rp, RebalancePolicySpec::default());
    assert!(rp.dry_run, "dry-run is the default");
    assert_eq!(rp.to_core().expect("valid"), placement_core::rebalance::RebalancePolicy::default());
    assert_eq!(rp.interval().map(|d| d.as_secs()), Ok(60));

    let tw: TrafficWeightSpec = serde_yaml_ng::from_str(
        "policy: {targetValue: 1000}\nmetric: {prometheus: {address: 'http://p:9090', query: up}}\n\
         target: {route53: {hostedZoneId: Z1, recordName: a.example.com, recordType: A, setIdentifier: a, baseSetIdentifier: b, region: us-east-1}}",
    )
    .expect("parses");
    assert_eq!((tw.interval.as_str(), tw.cooldown.as_str()), ("1m", "5m"));
    assert_eq!(tw.metric.prometheus.timeout, "30s");
    assert!(!tw.dry_run && !tw.disable_scale_in);
    let p = tw.to_core(8).expect("valid");
    assert_eq!(p.base_value, 8, "the base is the weight read from the target");
    assert_eq!((p.minimum, p.deadband, p.cooldown_seconds), (0, 0, 300));

    let slo: crd::WorkloadSLOSpec = serde_yaml_ng::from_str("selector: {matchLabels: {app: api}}").expect("parses");
    assert_eq!(slo.max_evictions_per_hour, 1);
    let core = slo.to_core("shop", "api").expect("valid");
    assert!(!core.allow_stateful);
}

/// The defaults the API server writes (schema `default`) are the ones serde applies.
#[test]
fn schema_defaults_match_serde_defaults() {
    let schema = schema_of(&RebalancePolicy::crd());
    let props = &schema["properties"]["spec"]["properties"];
    let serde_defaults = serde_json::to_value(RebalancePolicySpec::default()).expect("serializes");
    let mut checked = 0;
    for (name, value) in serde_defaults.as_object().expect("object") {
        if let Some(d) = props[name].get("default") {
            assert_eq!(d, value, "spec.{name}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
    assert_eq!(props["dryRun"]["default"], true);
    let zb = schema_of(&ZoneBalancer::crd());
    assert_eq!(zb["properties"]["spec"]["properties"]["topologyKey"]["default"], "topology.kubernetes.io/zone");
}

fn pd_error(yaml: &str) -> String {
    let spec: PodDistributionSpec = serde_yaml_ng::from_str(yaml).expect("parses");
    spec.to_core("shop").map(|_| ()).expect_err("invalid").to_string()
}

#[test]
fn invalid_distributions_name_the_field() {
    let head = "targetRef: {kind: Deployment, name: web}\ngroups:\n";
    let cases = [
        (
            "- {name: a, nodeSelector: {matchLabels: {t: a}}, weight: 1}\n- {name: b, nodeSelector: {matchLabels: {t: b}}, weight: 1, percent: 50}",
            "spec.groups[1].percent: set exactly one of weight or percent",
        ),
        ("- {name: a, nodeSelector: {matchLabels: {t: a}}}", "spec.groups[0].weight: required"),
        (
            "- {name: a, nodeSelector: {matchLabels: {t: a}}, weight: 0}\n- {name: b, nodeSelector: {matchLabels: {t: b}}, weight: 0}",
            "spec.groups: weights must sum to more than 0",
        ),
        (
            "- {name: a, nodeSelector: {matchLabels: {t: a}}, weight: 1, base: 1}\n- {name: b, nodeSelector: {matchLabels: {t: b}}, weight: 1, base: 2}",
            "spec.groups[1].base: only one group may have a base (groups[0] has one)",
        ),
        (
            "- {name: a, nodeSelector: {matchLabels: {t: a}}, percent: 50}\n- {name: b, nodeSelector: {matchLabels: {t: b}}, percent: 40}",
            "spec.groups: percents sum to 90, not 100",
        ),
        (
            "- {name: a, nodeSelector: {matchLabels: {t: a}}, percent: 50}\n- {name: b, nodeSelector: {matchLabels: {t: b}}, weight: 1}",
            "spec.groups[1].weight: use percent on every group or on none",
        ),
        (
            "- {name: a, nodeSelector: {matchLabels: {t: a}}, weight: 1}\n- {name: a, nodeSelector: {matchLabels: {t: b}}, weight: 1}",
            "spec.groups[1].name: \"a\" is also the name of groups[0]",
        ),
        ("- {name: a, nodeSelector: {}, weight: 1}", "spec.groups[0].nodeSelector.matchLabels: required"),
        (
            "- {name: a, nodeSelector: {matchExpressions: [{key: t, operator: Near, values: [x]}]}, weight: 1}",
            "spec.groups[0].nodeSelector.matchExpressions[0].operator: \"Near\" is not one of In, NotIn, Exists, DoesNotExist, Gt or Lt",
        ),
        (
            "- {name: a, nodeSelector: {matchExpressions: [{key: t, operator: Exists, values: [x]}]}, weight: 1}",
            "spec.groups[0].nodeSelector: matchExpressions[0] (key \"t\"): operator Exists takes no values",
        ),
        (
            "- {name: a, nodeSelector: {matchLabels: {t: a}}, weight: 20000}",
            "spec.groups[0].weight: 20000 is above 10000",
        ),
    ];
    for (groups, want) in cases {
        assert_eq!(pd_error(&format!("{head}{groups}")), want, "{groups}");
    }
    assert_eq!(
        pd_error(
            "targetRef: {kind: Deployment, name: Web_1}\ngroups:\n- {name: a, nodeSelector: {matchLabels: {t: a}}, weight: 1}"
        ),
        "spec.targetRef.name: \"Web_1\" is not a valid name (lowercase letters, digits, '-' and '.', at most 253 characters)"
    );
}

#[test]
fn invalid_specs_of_other_kinds_name_the_field() {
    let rp = |yaml: &str| {
        let s: RebalancePolicySpec = serde_yaml_ng::from_str(yaml).expect("parses");
        s.to_core().map(|_| ()).expect_err("invalid").to_string()
    };
    assert_eq!(rp("coldThreshold: 0.9"), "spec.coldThreshold: 0.9 must be below hotThreshold (0.8)");
    assert_eq!(rp("ewmaAlpha: 0"), "spec.ewmaAlpha: 0 must be in (0, 1]");
    assert_eq!(rp("interval: 5s"), "spec.interval: \"5s\" is shorter than 10s");
    assert!(rp("workloadBackoff: later").starts_with("spec.workloadBackoff: \"later\" is not a duration"));
    assert_eq!(
        rp("namespaces: [Shop]"),
        "spec.namespaces[0]: \"Shop\" is not a valid name (at most 63 lowercase letters, digits and '-')"
    );
    assert_eq!(
        rp("podSelector: {matchExpressions: [{key: app, operator: In}]}"),
        "spec.podSelector: matchExpressions[0] (key \"app\"): operator In needs at least one value"
    );

    let zb = |yaml: &str| {
        let s: ZoneBalancerSpec = serde_yaml_ng::from_str(yaml).expect("parses");
        s.to_core().map(|_| ()).expect_err("invalid").to_string()
    };
    assert_eq!(zb("selector: {}\nrebalanceThreshold: 2"), "spec.rebalanceThreshold: applies only to mode operator");
    assert_eq!(zb("selector: {}\nmode: operator\nstrict: true"), "spec.strict: applies only to mode webhook");
    assert_eq!(zb("selector: {}\nzones: [a, b, a]"), "spec.zones[2]: zone \"a\" is listed twice");
    assert!(
        zb("selector: {}\ntopologyKey: 'bad key'")
            .starts_with("spec.topologyKey: \"bad key\" is not a valid label key")
    );

    let tw_base = "policy: {targetValue: 1000}\nmetric: {prometheus: {address: 'http://p:9090', query: up}}\n";
    let r53 = "target: {route53: {hostedZoneId: Z1, recordName: a.example.com, recordType: A, setIdentifier: a, baseSetIdentifier: b, region: us-east-1}}\n";
    let tw = |extra: &str| {
        let s: TrafficWeightSpec = serde_yaml_ng::from_str(&format!("{tw_base}{extra}")).expect("parses");
        s.to_core(8).map(|_| ()).expect_err("invalid").to_string()
    };
    assert_eq!(tw("target: {}"), "spec.target.route53: required");
    assert_eq!(
        tw(
            "target: {route53: {hostedZoneId: Z1, recordName: a, recordType: A, setIdentifier: a, baseSetIdentifier: b, region: r}, httpRoute: {name: web, backendRefName: b, baseBackendRefName: c}}"
        ),
        "spec.target: set exactly one of route53 or httpRoute"
    );
    assert_eq!(
        tw(&format!("{r53}schedules: [{{start: '22:00', end: '06:00', timeZone: Mars/Olympus, value: 3}}]")),
        "spec.schedules[0].timeZone: unknown time zone \"Mars/Olympus\""
    );
    assert_eq!(
        tw(&format!("{r53}schedules: [{{start: '22:00', end: '06:00', value: 300}}]")),
        "spec.schedules[0].value: 300 is above the target's largest weight 255"
    );
    assert_eq!(
        tw(&format!("{r53}schedules: [{{start: '24:00', end: '06:00', value: 3}}]")),
        "spec.schedules[0].start: \"24:00\" is not HH:MM"
    );
    assert_eq!(
        tw(&format!("{r53}schedules: [{{start: '22:00', end: '06:00', weekdays: [Mon, Mon], value: 3}}]")),
        "spec.schedules[0].weekdays: Mon is listed twice"
    );
    assert_eq!(tw(&format!("{r53}cooldown: 5 minutes")).split(" is not").next(), Some("spec.cooldown: \"5 minutes\""));
    // Found by fuzzing: kube's duration parser panics on numbers too large for a Duration.
    assert_eq!(
        tw(&format!("{r53}cooldown: 333333333333333333333333333333335m")),
        "spec.cooldown: \"333333333333333333333333333333335m\" is too long for a duration"
    );
    let s: TrafficWeightSpec = serde_yaml_ng::from_str(&format!(
        "policy: {{targetValue: 0}}\nmetric: {{prometheus: {{address: 'http://p', query: up}}}}\n{r53}"
    ))
    .expect("parses");
    assert_eq!(
        s.to_core(8).map(|_| ()).expect_err("invalid").to_string(),
        "spec.policy.targetValue: 0 must be above 0"
    );
    let s: TrafficWeightSpec = serde_yaml_ng::from_str(&format!(
        "policy: {{targetValue: 1}}\nmetric: {{prometheus: {{address: 'ftp://p', query: up}}}}\n{r53}"
    ))
    .expect("parses");
    assert_eq!(
        s.to_core(8).map(|_| ()).expect_err("invalid").to_string(),
        "spec.metric.prometheus.address: \"ftp://p\" is not an http(s) URL"
    );

    let slo = |yaml: &str| {
        let s: crd::WorkloadSLOSpec = serde_yaml_ng::from_str(yaml).expect("parses");
        s.to_core("shop", "api").map(|_| ()).expect_err("invalid").to_string()
    };
    assert_eq!(slo("maxEvictionsPerHour: 2"), "spec.selector: required");
    assert_eq!(
        slo("targetRef: {kind: Deployment, name: api}"),
        "spec.targetRef: the workload's pod selector must be looked up first"
    );
    assert_eq!(slo("selector: {}\nminAvailable: 150%"), "spec.minAvailable: \"150%\" is above 100%");
    assert_eq!(slo("selector: {}\nminAvailable: -1"), "spec.minAvailable: -1 is negative");

    let nc: crd::NodeClassSpec =
        serde_yaml_ng::from_str("nodeSelector: {matchLabels: {a: b}}\nweight: 101").expect("parses");
    assert_eq!(nc.to_core("x").map(|_| ()).expect_err("invalid").to_string(), "spec.weight: 101 is above 100");
}

#[test]
fn unknown_enum_values_are_rejected_when_parsing() {
    assert!(serde_yaml_ng::from_str::<ZoneBalancerSpec>("selector: {}\nmode: sometimes").is_err());
    assert!(
        serde_yaml_ng::from_str::<PodDistributionSpec>(
            "targetRef: {kind: DaemonSet, name: x}\ngroups: [{name: a, nodeSelector: {matchLabels: {a: b}}, weight: 1}]"
        )
        .is_err()
    );
}

#[test]
fn workload_slo_combines_target_and_selector() {
    let s: crd::WorkloadSLOSpec = serde_yaml_ng::from_str(
        "targetRef: {kind: StatefulSet, name: db}\nselector: {matchLabels: {role: replica, app: other}}\nallowStatefulSet: true\nminAvailable: 50%",
    )
    .expect("parses");
    let target = placement_core::selector::LabelSelector::from_pairs([("app", "db")]);
    let core = s.to_core_with_target("data", "db", Some(&target)).expect("valid");
    assert!(core.allow_stateful);
    let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert!(!core.selector.matches(&labels(&[("app", "db"), ("role", "replica")])), "app=other conflicts with app=db");
    assert_eq!(s.min_available(), Ok(Some(crd::workload_slo::MinAvailable::Percent(50))));
    assert_eq!(crd::workload_slo::MinAvailable::Percent(50).resolve(3), 2);
    assert_eq!(s.target("data").ok().flatten().map(|w| w.to_string()), Some("StatefulSet/data/db".to_string()));
    let s: crd::WorkloadSLOSpec =
        serde_yaml_ng::from_str("targetRef: {kind: Deployment, name: api}\nselector: {matchLabels: {tier: web}}")
            .expect("parses");
    let core = s.to_core_with_target("shop", "api", Some(&target)).expect("valid");
    assert!(core.selector.matches(&labels(&[("app", "db"), ("tier", "web")])));
    assert!(!core.selector.matches(&labels(&[("app", "db")])));
}

#[test]
fn distribution_status_holds_the_ledger() {
    use placement_core::ledger::{Ledger, Reservation};
    use placement_core::model::{PodKey, WorkloadRef};
    let ts = |s: i64| jiff::Timestamp::from_second(s).expect("time");
    let mut ledger = Ledger::new();
    ledger.add(Reservation {
        id: "uid-1".into(),
        workload: WorkloadRef::deployment("shop", "web"),
        revision: Some("abc".into()),
        group: "spot".into(),
        pod: Some(PodKey { namespace: "shop".into(), name: "web-1".into() }),
        expires: ts(100),
    });
    ledger.add(Reservation {
        id: "uid-2".into(),
        workload: WorkloadRef::new(placement_core::model::WorkloadKind::StatefulSet, "shop", "db"),
        revision: None,
        group: "on-demand".into(),
        pod: None,
        expires: ts(100),
    });
    ledger.confirm("uid-0", ts(90));
    let mut status = crd::PodDistributionStatus::default();
    status.set_ledger_state(&ledger.state());
    let json = serde_json::to_value(&status).expect("serializes");
    assert_eq!(json["reservations"][0]["workload"]["kind"], "Deployment");
    assert_eq!(json["reservations"][0]["expires"], "1970-01-01T00:01:40Z");
    let back: crd::PodDistributionStatus = serde_json::from_value(json).expect("parses");
    assert_eq!(back.ledger_state(), ledger.state());

    use crd::SharedLedger;
    let mut zb =
        crd::ZoneBalancer::new("spread", serde_yaml_ng::from_str("selector: {}\nstrict: true").expect("parses"));
    assert_eq!(zb.shared_ledger(), Default::default(), "no status, no ledger");
    zb.set_shared_ledger(&ledger.state());
    let json = serde_json::to_value(&zb).expect("serializes");
    assert_eq!(json["status"]["confirmed"][0]["id"], "uid-0");
    let back: crd::ZoneBalancer = serde_json::from_value(json).expect("parses");
    assert_eq!(back.shared_ledger(), ledger.state());
}

#[test]
fn rebalance_status_holds_the_state_and_a_plan_summary() {
    use placement_core::model::{NodeBuilder, PodBuilder, Snapshot};
    use placement_core::rebalance::{PlanInput, observe, plan};
    let policy = placement_core::rebalance::RebalancePolicy {
        observations_to_enter: 1,
        source: placement_core::rebalance::UtilizationSource::Requests,
        ..Default::default()
    };
    let gib = 1 << 30;
    let mut pods = Vec::new();
    for i in 0..6 {
        pods.push(
            PodBuilder::new("shop", format!("web-{i}"))
                .deployment("web")
                .on_node("hot")
                .requests(1500, 5 * gib / 2)
                .build(),
        );
    }
    let nodes = vec![
        NodeBuilder::new("hot").allocatable(10_000, 16 * gib).build(),
        NodeBuilder::new("cold").allocatable(10_000, 16 * gib).build(),
    ];
    let mut snapshot = Snapshot::new(nodes, pods, vec![], vec![]);
    snapshot.recompute_requested();
    let now: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().expect("time");
    let state = observe(&policy, &Default::default(), &snapshot, now);
    let p = plan(&PlanInput { snapshot: &snapshot, policy: &policy, state: &state, slos: &[], classes: &[], now });
    let mut next = state.clone();
    next.record(p.records());
    let persisted = crd::rebalance_policy::PersistedState::from_core(&next);
    let json = serde_json::to_string(&persisted).expect("serializes");
    let back: crd::rebalance_policy::PersistedState = serde_json::from_str(&json).expect("parses");
    assert_eq!(back.to_core(), next);
    let summary = crd::rebalance_policy::PlanSummary::from_plan(&p, now);
    assert_eq!(summary.hot_nodes, vec!["hot".to_string()]);
    assert_eq!(summary.evictions_planned as usize, p.evictions.len());
    assert!(summary.evictions_planned > 0, "{}", summary.stop_reason);
    assert!(summary.dry_run);
    let status = crd::RebalancePolicyStatus { state: persisted, last_plan: Some(summary), ..Default::default() };
    let json = serde_json::to_value(&status).expect("serializes");
    assert!(json["lastPlan"]["sigmaAfter"].as_f64().is_some_and(|s| s < p.sigma_before));
}

#[test]
fn traffic_status_carries_the_cooldown_start() {
    use crd::StatusConditions;
    let text = std::fs::read_to_string(examples_dir().join("trafficweight-route53.yaml")).expect("readable");
    let r: TrafficWeight = serde_yaml_ng::from_str(&text).expect("parses");
    let policy = r.spec.to_core(8).expect("valid").compile().expect("compiles");
    let now: jiff::Timestamp = "2026-11-24T03:00:00Z".parse().expect("time");
    let metric = placement_core::tracking::parse_metric("3000").expect("number");
    let d = placement_core::tracking::step(&policy, &Default::default(), metric, 8, now);
    assert_eq!(d.apply, Some(16));
    let mut status = crd::TrafficWeightStatus {
        current_weight: d.apply,
        last_change: d.state.last_change.map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
        ..Default::default()
    };
    status.set_condition(crd::Condition::ready("weight 16", Some(1), now));
    let back: crd::TrafficWeightStatus =
        serde_json::from_value(serde_json::to_value(&status).expect("serializes")).expect("parses");
    assert_eq!(back.tracking_state().last_change, Some(now), "the cooldown survives a restart");
    assert!(back.is_ready());
}

/// Every property of a spec schema, with its path.
fn spec_properties(schema: &Value, path: String, out: &mut Vec<(String, Value)>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            let here = format!("{path}.{name}");
            out.push((here.clone(), p.clone()));
            spec_properties(p, here, out);
        }
    }
    if let Some(items) = schema.get("items") {
        spec_properties(items, format!("{path}[]"), out);
    }
}

/// "No spec crashes the operator" starts in the schema: every number in every spec has a `maximum`, and
/// every duration a CEL rule bounding it, so the API server refuses what `to_core` would.
#[test]
fn every_count_and_duration_of_every_spec_has_a_maximum_in_the_schema() {
    let mut missing = Vec::new();
    for crd in crd::all_crds() {
        let schema = schema_of(&crd);
        let mut props = Vec::new();
        spec_properties(&schema["properties"]["spec"], format!("{}.spec", crd.spec.names.kind), &mut props);
        for (path, p) in props {
            let is_number = matches!(p["type"].as_str(), Some("integer" | "number"));
            if is_number && p.get("maximum").is_none() {
                missing.push(format!("{path}: a number without maximum"));
            }
            let is_duration = p["pattern"].as_str().is_some_and(|pat| pat.contains("ns|us|ms|s|m|h"));
            let bounded = p["x-kubernetes-validations"].as_array().is_some_and(|rules| {
                rules.iter().any(|r| r["rule"].as_str().is_some_and(|r| r.contains("duration(self) <=")))
            });
            if is_duration && !bounded {
                missing.push(format!("{path}: a duration without a CEL maximum"));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

/// Each bound `to_core` checks, at the limit (accepted) and one past it (refused, naming the field).
#[test]
fn to_core_checks_every_bound_at_the_limit_and_one_past() {
    fn rebalance(yaml: &str) -> Result<(), CrdError> {
        serde_yaml_ng::from_str::<RebalancePolicySpec>(yaml).unwrap().to_core().map(drop)
    }
    fn distribution(yaml: &str) -> Result<(), CrdError> {
        serde_yaml_ng::from_str::<PodDistributionSpec>(yaml).unwrap().to_core("shop").map(drop)
    }
    fn traffic(extra: &str) -> Result<(), CrdError> {
        let yaml = format!(
            "{extra}\npolicy: {{targetValue: 100}}\nmetric: {{prometheus: {{address: 'http://p.monitoring.svc:9090', query: q}}}}\n\
             target: {{httpRoute: {{name: r, backendRefName: b, baseBackendRefName: a}}}}"
        );
        serde_yaml_ng::from_str::<TrafficWeightSpec>(&yaml).unwrap().to_core(8).map(drop)
    }
    let pd = |group: &str| {
        format!(
            "targetRef: {{kind: Deployment, name: web}}\ngroups: [{{name: a, nodeSelector: {{matchLabels: {{c: a}}}}, weight: 1, {group}}}]"
        )
    };
    type Check = Box<dyn Fn(&str) -> Result<(), CrdError>>;
    let cases: Vec<(&str, Check, &str, &str)> = vec![
        ("spec.interval", Box::new(rebalance), "interval: 24h", "interval: 24h0m1s"),
        ("spec.workloadBackoff", Box::new(rebalance), "workloadBackoff: 168h", "workloadBackoff: 168h0m1s"),
        ("spec.nodeBackoff", Box::new(rebalance), "nodeBackoff: 168h", "nodeBackoff: 999999999999h"),
        ("spec.observationsToEnter", Box::new(rebalance), "observationsToEnter: 100", "observationsToEnter: 101"),
        (
            "spec.maxEvictionsPerMinute",
            Box::new(rebalance),
            "maxEvictionsPerMinute: 1000",
            "maxEvictionsPerMinute: 1001",
        ),
        ("spec.maxEvictionsPerPlan", Box::new(rebalance), "maxEvictionsPerPlan: 1000", "maxEvictionsPerPlan: 1001"),
        (
            "spec.maxEvictionsPerNamespacePerHour",
            Box::new(rebalance),
            "maxEvictionsPerNamespacePerHour: 100000",
            "maxEvictionsPerNamespacePerHour: 100001",
        ),
        ("spec.groups[0].base", Box::new(move |g: &str| distribution(&pd(g))), "base: 10000", "base: 10001"),
        ("spec.groups[0].maxPods", Box::new(move |g: &str| distribution(&pd(g))), "maxPods: 100000", "maxPods: 100001"),
        ("spec.interval", Box::new(traffic), "interval: 24h", "interval: 25h"),
        ("spec.cooldown", Box::new(traffic), "cooldown: 24h", "cooldown: 24h0m0.5s"),
        ("spec.deadband", Box::new(traffic), "deadband: 1000000", "deadband: 1000001"),
    ];
    for (field, check, at, past) in cases {
        assert_eq!(check(at).map_err(|e| e.to_string()), Ok(()), "{field} at the limit: {at}");
        let e = check(past).expect_err(past).to_string();
        assert!(e.starts_with(&format!("{field}: ")) && e.contains("the most it may be"), "{past}: {e}");
    }
}
