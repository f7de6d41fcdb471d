//! `placement-operator plan`: a one-shot rebalance plan, against a cluster (kubeconfig) or saved files
//! (`kubectl get nodes,pods,pdb -A -o yaml`, optionally with metrics, ReplicaSets, Deployments,
//! WorkloadSLOs, NodeClasses and the RebalancePolicy itself), printed as a table with reasons or as JSON.
//! It never evicts and never writes.
//!
//! Decisions made here, and why:
//!
//! * **Same code path as the controller**: the same gathering ([`crate::rebalancer::observe`]) and the
//!   same pure pass ([`crate::rebalancer::pass`]), with the policy's own mode, so the plan is the one
//!   the controller would make next.
//! * **History**: with the policy's status (always against a cluster; in files when the policy object
//!   carries one), the plan continues from the persisted state with one observation, exactly like the
//!   controller's next pass. Without it (or with `--fresh`), it assumes the usage seen now held for
//!   `observationsToEnter` observations, so hot nodes are hot at once; the report says which.
//! * **Bad input fails clearly**: unreadable files, YAML errors, objects without `kind`, fields of the
//!   wrong type and objects that cannot be converted are errors naming the file, the document, the item,
//!   the object and the field. Kinds the plan does not read (Services, ...) are counted in a note.

use crate::rebalancer::observe::{self, Inputs};
use crate::rebalancer::{pass, state};
use crate::simulate::render;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use placement_core::model::{WorkloadKind, WorkloadRef};
use placement_core::rebalance::{Plan, RebalanceState, UtilizationSource};
use placement_core::selector::LabelSelector;
use placement_kube::convert::{NodeMetrics, PodMetrics, SnapshotBuilder};
use placement_kube::crd::{NodeClass, RebalancePolicy, RebalancePolicySpec, WorkloadSLO, label_selector_to_core};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A file could not be read or parsed; the message names the file, document, item and field.
    #[error("{0}")]
    Input(String),
    /// The cluster could not be read.
    #[error(transparent)]
    Cluster(#[from] crate::Error),
}

/// What to plan from.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// The RebalancePolicy to plan for (the only one when unset; defaults when there is none).
    pub policy: Option<String>,
    /// Ignore the policy's persisted state.
    pub fresh: bool,
    /// Override the policy's `source`.
    pub source: Option<UtilizationSource>,
    /// Plan as of this time (now when unset).
    pub now: Option<Timestamp>,
}

/// The plan and how it was made.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    /// The policy's name, or `(defaults)`.
    pub policy: String,
    /// Where the objects came from.
    pub source: String,
    /// Observations taken in this plan (1 when continuing from the persisted state).
    pub observations: u32,
    /// The plan continues from the policy's persisted state (hysteresis, history).
    pub from_persisted_state: bool,
    pub notes: Vec<String>,
    pub plan: Plan,
}

/// The objects a plan reads.
#[derive(Default)]
struct Objects {
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    pdbs: Vec<PodDisruptionBudget>,
    replicasets: Vec<ReplicaSet>,
    deployments: Vec<Deployment>,
    statefulsets: Vec<StatefulSet>,
    node_metrics: Vec<NodeMetrics>,
    pod_metrics: Vec<PodMetrics>,
    slos: Vec<WorkloadSLO>,
    classes: Vec<NodeClass>,
    policies: Vec<RebalancePolicy>,
    claims: Vec<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    volumes: Vec<k8s_openapi::api::core::v1::PersistentVolume>,
    ignored: BTreeMap<String, usize>,
}

fn typed<T: DeserializeOwned>(v: Value, at: &str) -> Result<T, PlanError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        PlanError::Input(format!("{at}: field {path}: {}", e.into_inner()))
    })
}

impl Objects {
    fn add_text(&mut self, file: &str, text: &str) -> Result<(), PlanError> {
        for (d, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let v: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| PlanError::Input(format!("{file}: document {}: not valid YAML or JSON: {e}", d + 1)))?;
            if v.is_null() {
                continue;
            }
            let listed = v.get("kind").and_then(Value::as_str).and_then(|k| k.strip_suffix("List")).map(String::from);
            if let Some(item_kind) = listed {
                let items = v.get("items").and_then(Value::as_array).cloned().ok_or_else(|| {
                    PlanError::Input(format!("{file}: document {}: a List without an `items` array", d + 1))
                })?;
                for (i, mut item) in items.into_iter().enumerate() {
                    // Typed lists (`NodeMetricsList` from `kubectl get --raw`) leave `kind` out of their
                    // items; a plain `List` does not.
                    if let Some(o) = item.as_object_mut()
                        && !o.contains_key("kind")
                        && !item_kind.is_empty()
                    {
                        o.insert("kind".into(), Value::String(item_kind.clone()));
                    }
                    self.add(item, &format!("{file}: document {}, item {}", d + 1, i + 1))?;
                }
            } else {
                self.add(v, &format!("{file}: document {}", d + 1))?;
            }
        }
        Ok(())
    }

    fn add(&mut self, v: Value, at: &str) -> Result<(), PlanError> {
        if !v.is_object() {
            return Err(PlanError::Input(format!("{at}: expected a Kubernetes object, found {v}")));
        }
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| PlanError::Input(format!("{at}: an object without `kind`")))?
            .to_string();
        let meta = v.get("metadata");
        let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("<unnamed>");
        let at = match meta.and_then(|m| m.get("namespace")).and_then(Value::as_str) {
            Some(ns) => format!("{at} ({kind} {ns}/{name})"),
            None => format!("{at} ({kind} {name})"),
        };
        match kind.as_str() {
            "Node" => self.nodes.push(typed(v, &at)?),
            "Pod" => self.pods.push(typed(v, &at)?),
            "PodDisruptionBudget" => self.pdbs.push(typed(v, &at)?),
            "ReplicaSet" => self.replicasets.push(typed(v, &at)?),
            "Deployment" => self.deployments.push(typed(v, &at)?),
            "StatefulSet" => self.statefulsets.push(typed(v, &at)?),
            "NodeMetrics" => self.node_metrics.push(typed(v, &at)?),
            "PodMetrics" => self.pod_metrics.push(typed(v, &at)?),
            "WorkloadSLO" => self.slos.push(typed(v, &at)?),
            "NodeClass" => self.classes.push(typed(v, &at)?),
            "RebalancePolicy" => self.policies.push(typed(v, &at)?),
            "PersistentVolumeClaim" => self.claims.push(typed(v, &at)?),
            "PersistentVolume" => self.volumes.push(typed(v, &at)?),
            _ => *self.ignored.entry(kind).or_insert(0) += 1,
        }
        Ok(())
    }

    fn selectors(&self) -> BTreeMap<WorkloadRef, LabelSelector> {
        let mut out = BTreeMap::new();
        let mut add = |kind, ns: &Option<String>, name: &Option<String>, s: Option<&_>| {
            if let (Some(ns), Some(name), Some(s)) = (ns, name, s)
                && let Ok(core) = label_selector_to_core("spec.selector", s)
            {
                out.insert(WorkloadRef::new(kind, ns.clone(), name.clone()), core);
            }
        };
        for d in &self.deployments {
            add(
                WorkloadKind::Deployment,
                &d.metadata.namespace,
                &d.metadata.name,
                d.spec.as_ref().map(|s| &s.selector),
            );
        }
        for s in &self.statefulsets {
            add(
                WorkloadKind::StatefulSet,
                &s.metadata.namespace,
                &s.metadata.name,
                s.spec.as_ref().map(|s| &s.selector),
            );
        }
        out
    }
}

/// Reads saved objects from `files` (YAML or JSON, one or more documents, `List`s welcome).
fn read_files(files: &[PathBuf]) -> Result<Objects, PlanError> {
    let mut objects = Objects::default();
    for path in files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Input(format!("{name}: {e}")))?;
        objects.add_text(&name, &text)?;
    }
    if objects.nodes.is_empty() {
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        return Err(PlanError::Input(format!(
            "no Node in {}: save the cluster with `kubectl get nodes,pods,pdb -A -o yaml > cluster.yaml`",
            names.join(", ")
        )));
    }
    Ok(objects)
}

/// Lists what a plan reads from the cluster.
async fn read_cluster(client: &kube::Client, policy: Option<&str>) -> Result<Objects, PlanError> {
    async fn all<K>(client: &kube::Client, what: &str) -> Result<Vec<K>, PlanError>
    where
        K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::<K>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| PlanError::Cluster(crate::Error::kube(format!("listing {what}"), e)))
    }
    let mut o = Objects {
        nodes: all(client, "nodes").await?,
        pods: all(client, "pods").await?,
        pdbs: all(client, "PodDisruptionBudgets").await?,
        replicasets: all(client, "ReplicaSets").await?,
        deployments: all(client, "Deployments").await?,
        statefulsets: all(client, "StatefulSets").await?,
        ..Objects::default()
    };
    let (slos, classes) = observe::fetch_guard_rails(client).await?;
    o.slos = slos;
    o.classes = classes;
    // Every policy: the others' evictions count towards the cluster-wide budgets.
    o.policies = all(client, "RebalancePolicies").await?;
    if let Some(name) = policy
        && !o.policies.iter().any(|p| p.metadata.name.as_deref() == Some(name))
    {
        o.policies.push(
            Api::<RebalancePolicy>::all(client.clone())
                .get(name)
                .await
                .map_err(|e| PlanError::Cluster(crate::Error::kube(format!("reading RebalancePolicy {name}"), e)))?,
        );
    }
    o.claims = all(client, "PersistentVolumeClaims").await?;
    o.volumes = all(client, "PersistentVolumes").await?;
    Ok(o)
}

/// Plans from saved files.
pub fn plan_files(files: &[PathBuf], options: &PlanOptions) -> Result<PlanReport, PlanError> {
    let objects = read_files(files)?;
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    plan_objects(objects, &format!("files {}", names.join(", ")), options)
}

/// Plans against the cluster `client` talks to (metrics from metrics.k8s.io when the policy uses them).
pub async fn plan_cluster(client: &kube::Client, options: &PlanOptions) -> Result<PlanReport, PlanError> {
    let mut objects = read_cluster(client, options.policy.as_deref()).await?;
    let (_, spec) = choose_policy(&objects.policies, options.policy.as_deref())?;
    if options.source.unwrap_or(spec.source.to_core()) == UtilizationSource::Metrics {
        let (nodes, pods) = observe::fetch_metrics(client).await?;
        objects.node_metrics = nodes;
        objects.pod_metrics = pods;
    }
    plan_objects(objects, "the cluster", options)
}

fn choose_policy<'a>(
    policies: &'a [RebalancePolicy],
    name: Option<&str>,
) -> Result<(Option<&'a RebalancePolicy>, RebalancePolicySpec), PlanError> {
    match name {
        Some(n) => policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(n))
            .map(|p| (Some(p), p.spec.clone()))
            .ok_or_else(|| PlanError::Input(format!("no RebalancePolicy named {n}"))),
        None => match policies {
            [] => Ok((None, RebalancePolicySpec::default())),
            [p] => Ok((Some(p), p.spec.clone())),
            many => {
                let names: Vec<&str> = many.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
                Err(PlanError::Input(format!(
                    "several RebalancePolicies ({}): choose one with --policy",
                    names.join(", ")
                )))
            }
        },
    }
}

fn plan_objects(objects: Objects, source: &str, options: &PlanOptions) -> Result<PlanReport, PlanError> {
    let (policy, spec) = choose_policy(&objects.policies, options.policy.as_deref())?;
    let policy_name = policy.and_then(|p| p.metadata.name.clone()).unwrap_or_else(|| "(defaults)".into());
    let mut core = spec.to_core().map_err(|e| PlanError::Input(format!("RebalancePolicy {policy_name}: {e}")))?;
    if let Some(s) = options.source {
        core.source = s;
    }
    let (snapshot, errors) = SnapshotBuilder::new()
        .nodes(&objects.nodes)
        .pods(&objects.pods)
        .pdbs(&objects.pdbs)
        .replicasets(&objects.replicasets)
        .deployments(&objects.deployments)
        .statefulsets(&objects.statefulsets)
        .build();
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        return Err(PlanError::Input(format!("cannot read {} object(s):\n{}", errors.len(), list.join("\n"))));
    }
    let mut inputs = Inputs { snapshot, ..Inputs::default() };
    let claims = placement_kube::convert::volumes::ClaimLocality::new(&objects.claims, &objects.volumes);
    observe::resolve_claims(&mut inputs, Ok(Some(claims)));
    if !options.fresh {
        inputs.cluster_history = observe::others_history(&objects.policies, &policy_name);
    }
    if policy.is_none() {
        inputs.note("no RebalancePolicy given: planning with every field at its default");
    }
    if core.source == UtilizationSource::Metrics {
        if objects.node_metrics.is_empty() {
            inputs
                .note("no node metrics: nothing can be scored with source metrics (add metrics, or --source requests)");
        }
        observe::attach_usage(&mut inputs, &objects.node_metrics, &objects.pod_metrics);
    }
    observe::add_slos(&mut inputs, &objects.slos, &objects.selectors());
    observe::add_classes(&mut inputs, &objects.classes);
    if !objects.ignored.is_empty() {
        let kinds: Vec<String> = objects.ignored.iter().map(|(k, n)| format!("{n} {k}")).collect();
        inputs.note(format!("not read by the plan: {}", kinds.join(", ")));
    }

    let persisted = policy.and_then(|p| p.status.as_ref()).filter(|s| s.state.last_observed.is_some());
    let (state, observations, from_persisted_state) = match persisted {
        Some(s) if !options.fresh => (state::load(&s.state, core.dry_run), 1, true),
        _ => (RebalanceState::default(), core.observations_to_enter, false),
    };
    if !from_persisted_state {
        inputs.note(format!(
            "no persisted state: assuming the usage seen now held for {observations} observation(s) (observationsToEnter)"
        ));
    }
    let now = pass::now_seconds(options.now.unwrap_or_else(Timestamp::now));
    let result = pass::run(&core, &state, &inputs, now, observations);
    Ok(PlanReport {
        policy: policy_name,
        source: source.to_string(),
        observations,
        from_persisted_state,
        notes: inputs.notes,
        plan: result.plan,
    })
}

impl PlanReport {
    /// The plan as plain-text tables.
    pub fn render(&self) -> String {
        let plan = &self.plan;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "RebalancePolicy {} ({}), from {}; nothing is evicted by this command",
            self.policy,
            if plan.dry_run { "dry-run" } else { "live" },
            self.source
        );
        let _ = writeln!(
            out,
            "{} observation(s){}",
            self.observations,
            if self.from_persisted_state { " after the persisted state" } else { "" }
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out.push_str(&render::heading("Node scores"));
        let t = crate::simulate::rebalance::node_scores(plan, ["node", "score now", "score after plan", "state"]);
        let _ = writeln!(out, "{t}");
        out.push_str(&render::heading("Evictions"));
        let _ = writeln!(
            out,
            "sigma {:.4} -> {:.4}; {} eviction(s); stopped because: {}",
            plan.sigma_before,
            plan.sigma_after,
            plan.evictions.len(),
            plan.stop
        );
        let mut t = render::table(["pod", "workload", "from", "to", "why"]);
        for e in &plan.evictions {
            let w = e.workload.as_ref().map_or_else(|| "-".to_string(), |w| format!("{} {}", w.kind, w.name));
            t.add_row(vec![e.pod.to_string(), w, e.from.clone(), e.to.clone(), e.reason.clone()]);
        }
        let _ = writeln!(out, "{t}");
        out.push_str(&render::heading("Not evicted (candidates on hot nodes)"));
        let mut t = render::table(["pod", "node", "stopped by", "why"]);
        for s in &plan.skipped {
            t.add_row(vec![s.pod.to_string(), s.node.clone(), s.reason.metric_label().into(), s.why.clone()]);
        }
        let _ = writeln!(out, "{t}");
        out
    }
}

/// `placement-operator plan` arguments.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Saved objects to plan from (YAML or JSON, repeatable), e.g. the output of
    /// `kubectl get nodes,pods,pdb,rs,deploy,sts,workloadslos,nodeclasses,rebalancepolicies -A -o yaml`.
    /// Without it, the cluster of the kubeconfig is read.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Vec<PathBuf>,
    /// Saved metrics (NodeMetrics / PodMetrics, e.g. `kubectl get --raw /apis/metrics.k8s.io/v1beta1/nodes`),
    /// repeatable; only with --snapshot.
    #[arg(long, value_name = "FILE")]
    pub metrics: Vec<PathBuf>,
    /// The RebalancePolicy to plan for (needed when there are several).
    #[arg(long)]
    pub policy: Option<String>,
    /// Ignore the policy's persisted state (hysteresis, eviction history).
    #[arg(long)]
    pub fresh: bool,
    /// Use this utilization source instead of the policy's.
    #[arg(long, value_enum)]
    pub source: Option<SourceArg>,
    /// Plan as of this time (RFC 3339), for reproducible output.
    #[arg(long)]
    pub now: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    pub context: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SourceArg {
    Metrics,
    Requests,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

async fn cluster_client(args: &PlanArgs) -> Result<kube::Client, PlanError> {
    let fail = |e: String| PlanError::Input(format!("cannot configure a client: {e}"));
    let options = kube::config::KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await.map_err(|e| fail(e.to_string()))?
        }
        None if args.context.is_some() => {
            kube::Config::from_kubeconfig(&options).await.map_err(|e| fail(e.to_string()))?
        }
        None => kube::Config::infer().await.map_err(|e| fail(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| fail(e.to_string()))
}

/// Runs the command: the report on stdout, errors on stderr; exit code 2 for bad input, 1 for a
/// cluster that could not be read.
pub fn main(args: PlanArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let now = match args.now.as_deref().map(str::parse::<Timestamp>).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --now: {e}");
            return ExitCode::from(2);
        }
    };
    let options = PlanOptions {
        policy: args.policy.clone(),
        fresh: args.fresh,
        source: args.source.map(|s| match s {
            SourceArg::Metrics => UtilizationSource::Metrics,
            SourceArg::Requests => UtilizationSource::Requests,
        }),
        now,
    };
    let result = if args.snapshot.is_empty() {
        if !args.metrics.is_empty() {
            eprintln!("error: --metrics needs --snapshot (against a cluster, metrics come from metrics.k8s.io)");
            return ExitCode::from(2);
        }
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        runtime.block_on(async {
            let client = cluster_client(&args).await?;
            plan_cluster(&client, &options).await
        })
    } else {
        let files: Vec<PathBuf> = args.snapshot.iter().chain(&args.metrics).cloned().collect();
        plan_files(&files, &options)
    };
    match result {
        Ok(report) => {
            match args.format {
                OutputFormat::Table => print!("{}", report.render()),
                OutputFormat::Json => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("error: cannot encode the plan: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            ExitCode::SUCCESS
        }
        Err(e @ PlanError::Input(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
