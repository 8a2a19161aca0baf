//! Health of live Kubernetes objects, per API group and kind.
//!
//! The rules follow Argo CD: the built-in checks of gitops-engine (`pkg/health`) and the Lua
//! scripts of `resource_customizations/` for the kinds Argo CD ships them for (Rollout,
//! cert-manager Certificate, Flux, CronJob, PodDisruptionBudget, CustomResourceDefinition).
//! Kinds Argo CD has no rule for fall back to kstatus-style generic conditions
//! (`observedGeneration`, `Stalled`, `Reconciling`, `Ready`, `Available`); with none of those,
//! [`health_of`] returns `None` and the caller treats an existing object as Healthy
//! ([`health_of_live`] does that, and gives `Missing` for an object that does not exist).
//!
//! The rules are checked against every Argo CD test case in `shared/data/health/`
//! (`tests/health.rs`). Known deviations from a running Argo CD:
//! - An object with `metadata.deletionTimestamp` (and no Argo CD hook finalizer) is Progressing
//!   "Pending deletion", as in Argo CD, except CustomResourceDefinition and PodDisruptionBudget,
//!   whose own rules (as in their Lua scripts) report deletion with a more specific message
//!   ("CRD is terminating", "Pending deletion; blocked by finalizers: ..."). Same health, other
//!   message.
//! - `argoproj.io/Application` gives `None`, as gitops-engine does (Argo CD's app-of-apps health
//!   override is off by default); read a hub's Application health with [`application_health`].
//! - HPA `autoscaling/v2beta1` and `v2beta2` are Unknown ("unsupported HPA GVK"), as in current
//!   Argo CD (it dropped them); old gitops-engine called them Healthy.

use serde_json::Value;

/// Health of an object, as Argo CD names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Health {
    Healthy,
    Progressing,
    Degraded,
    Suspended,
    Missing,
    Unknown,
}

impl Health {
    /// The name as written in status files and by Argo CD ("Healthy", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Progressing => "Progressing",
            Health::Degraded => "Degraded",
            Health::Suspended => "Suspended",
            Health::Missing => "Missing",
            Health::Unknown => "Unknown",
        }
    }

    /// Parses an Argo CD health name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Health> {
        Some(match s {
            "Healthy" => Health::Healthy,
            "Progressing" => Health::Progressing,
            "Degraded" => Health::Degraded,
            "Suspended" => Health::Suspended,
            "Missing" => Health::Missing,
            "Unknown" => Health::Unknown,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A health and the message explaining it (empty where Argo CD gives none).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthStatus {
    pub health: Health,
    pub message: String,
}

impl HealthStatus {
    pub fn new(health: Health, message: impl Into<String>) -> Self {
        HealthStatus {
            health,
            message: message.into(),
        }
    }
}

fn hs(health: Health, message: impl Into<String>) -> Option<HealthStatus> {
    Some(HealthStatus::new(health, message))
}

const HOOK_FINALIZER: &str = "argocd.argoproj.io/hook-finalizer";
const IGNORE_RESTART_POLICY: &str = "argocd.argoproj.io/ignore-restart-policy";

/// Health of a live object (a `serde_json::Value` with apiVersion, kind, metadata, spec, status),
/// chosen by API group and kind, the way Argo CD (gitops-engine pkg/health and its
/// resource_customizations Lua scripts) and kstatus do. `None` where Argo CD returns nil
/// (no health for this kind): the caller then treats an existing object as Healthy.
pub fn health_of(object: &Value) -> Option<HealthStatus> {
    if !object.is_object() {
        return hs(Health::Unknown, "object is not a mapping");
    }
    let api_version = str_at(object, &["apiVersion"]);
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let kind = str_at(object, &["kind"]);
    let gvk = Gvk { group, version, kind };

    let own_deletion_rule = matches!(
        (group, kind),
        ("apiextensions.k8s.io", "CustomResourceDefinition") | ("policy", "PodDisruptionBudget")
    );
    if !own_deletion_rule && is_pending_deletion(object) {
        return hs(Health::Progressing, "Pending deletion");
    }

    match (group, kind) {
        ("apps", "Deployment") => Some(gvk.require(&["v1"]).unwrap_or_else(|| deployment(object))),
        ("apps", "StatefulSet") => Some(gvk.require(&["v1"]).unwrap_or_else(|| stateful_set(object))),
        ("apps", "ReplicaSet") => Some(gvk.require(&["v1"]).unwrap_or_else(|| replica_set(object))),
        ("apps", "DaemonSet") => Some(gvk.require(&["v1"]).unwrap_or_else(|| daemon_set(object))),
        ("extensions" | "networking.k8s.io", "Ingress") => Some(load_balanced(object)),
        ("", "Service") => Some(gvk.require(&["v1"]).unwrap_or_else(|| service(object))),
        ("", "PersistentVolumeClaim") => Some(gvk.require(&["v1"]).unwrap_or_else(|| pvc(object))),
        ("", "Pod") => Some(gvk.require(&["v1"]).unwrap_or_else(|| pod(object))),
        ("batch", "Job") => Some(gvk.require(&["v1"]).unwrap_or_else(|| job(object))),
        ("batch", "CronJob") => Some(cron_job(object)),
        ("autoscaling", "HorizontalPodAutoscaler") => Some(hpa(object, &gvk)),
        ("apiregistration.k8s.io", "APIService") => {
            Some(gvk.require(&["v1", "v1beta1"]).unwrap_or_else(|| api_service(object)))
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Some(crd(object)),
        ("policy", "PodDisruptionBudget") => Some(pdb(object)),
        ("argoproj.io", "Application") => None,
        ("argoproj.io", "Workflow") => Some(workflow(object)),
        ("argoproj.io", "Rollout") => Some(rollout(object)),
        ("cert-manager.io", "Certificate") => Some(certificate(object)),
        ("kustomize.toolkit.fluxcd.io", "Kustomization")
        | ("helm.toolkit.fluxcd.io", "HelmRelease")
        | ("source.toolkit.fluxcd.io", _) => Some(flux(object)),
        _ => generic(object),
    }
}

/// Health of an object that may be missing from the cluster: `Missing` when `None`, the
/// per-kind rule when there is one, else Healthy (an existing object with no health rules).
pub fn health_of_live(object: Option<&Value>) -> HealthStatus {
    match object {
        None => HealthStatus::new(Health::Missing, ""),
        Some(o) => health_of(o).unwrap_or_else(|| HealthStatus::new(Health::Healthy, "")),
    }
}

/// The health an Argo CD `Application` reports for itself (`status.health`), for reading an
/// Argo CD hub. `None` when the object has no `status.health.status`; Unknown for a value that
/// is not a health name.
pub fn application_health(application: &Value) -> Option<HealthStatus> {
    let status = get(application, &["status", "health", "status"])?.as_str()?;
    let message = str_at(application, &["status", "health", "message"]);
    Some(match Health::parse(status) {
        Some(h) => HealthStatus::new(h, message),
        None => HealthStatus::new(Health::Unknown, format!("unknown health status {status:?}")),
    })
}

// ---------------------------------------------------------------------------------------------
// Access helpers

struct Gvk<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

impl Gvk<'_> {
    /// Go's `GroupVersionKind.String()`.
    fn display(&self) -> String {
        format!("{}/{}, Kind={}", self.group, self.version, self.kind)
    }

    /// `Some(Unknown)` when the version is not one the rule supports (Argo CD converts to a typed
    /// object of a fixed version and errors otherwise).
    fn require(&self, versions: &[&str]) -> Option<HealthStatus> {
        if versions.contains(&self.version) {
            None
        } else {
            Some(HealthStatus::new(
                Health::Unknown,
                format!("unsupported {} GVK: {}", self.kind, self.display()),
            ))
        }
    }
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k)).filter(|v| !v.is_null())
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path).and_then(Value::as_i64)
}

fn int0(v: &Value, path: &[&str]) -> i64 {
    int_at(v, path).unwrap_or(0)
}

fn bool_at(v: &Value, path: &[&str]) -> bool {
    get(v, path).and_then(Value::as_bool).unwrap_or(false)
}

fn list_len(v: &Value, path: &[&str]) -> usize {
    get(v, path).and_then(Value::as_array).map_or(0, Vec::len)
}

/// `status.conditions` (empty when absent).
fn conditions(v: &Value) -> &[Value] {
    get(v, &["status", "conditions"])
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn field<'a>(c: &'a Value, name: &str) -> &'a str {
    c.get(name).and_then(Value::as_str).unwrap_or("")
}

fn find_condition<'a>(v: &'a Value, type_: &str) -> Option<&'a Value> {
    conditions(v).iter().find(|c| field(c, "type") == type_)
}

fn annotation<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    get(v, &["metadata", "annotations", name]).and_then(Value::as_str)
}

fn is_pending_deletion(v: &Value) -> bool {
    if get(v, &["metadata", "deletionTimestamp"]).is_none() {
        return false;
    }
    let finalizers = get(v, &["metadata", "finalizers"]).and_then(Value::as_array);
    !finalizers.is_some_and(|f| f.iter().any(|f| f.as_str() == Some(HOOK_FINALIZER)))
}

/// An Argo CD (or Helm) hook, as gitops-engine's `hook.IsHook` sees it.
fn is_hook(v: &Value) -> bool {
    annotation(v, "argocd.argoproj.io/hook").is_some()
        || annotation(v, "helm.sh/hook").is_some_and(|h| h.split(',').any(|h| h.trim() != "crd-install"))
}

// ---------------------------------------------------------------------------------------------
// Built-in rules (gitops-engine pkg/health)

fn deployment(o: &Value) -> HealthStatus {
    use Health::*;
    if bool_at(o, &["spec", "paused"]) {
        return HealthStatus::new(Suspended, "Deployment is paused");
    }
    if int0(o, &["metadata", "generation"]) > int0(o, &["status", "observedGeneration"]) {
        return HealthStatus::new(
            Progressing,
            "Waiting for rollout to finish: observed deployment generation less than desired generation",
        );
    }
    let name = str_at(o, &["metadata", "name"]);
    let replicas = int_at(o, &["spec", "replicas"]);
    let (status_replicas, updated, available) = (
        int0(o, &["status", "replicas"]),
        int0(o, &["status", "updatedReplicas"]),
        int0(o, &["status", "availableReplicas"]),
    );
    if find_condition(o, "Progressing").is_some_and(|c| field(c, "reason") == "ProgressDeadlineExceeded") {
        return HealthStatus::new(Degraded, format!("Deployment {name:?} exceeded its progress deadline"));
    }
    if let Some(want) = replicas.filter(|&r| updated < r) {
        return HealthStatus::new(
            Progressing,
            format!("Waiting for rollout to finish: {updated} out of {want} new replicas have been updated..."),
        );
    }
    if status_replicas > updated {
        return HealthStatus::new(
            Progressing,
            format!(
                "Waiting for rollout to finish: {} old replicas are pending termination...",
                status_replicas - updated
            ),
        );
    }
    if available < updated {
        return HealthStatus::new(
            Progressing,
            format!("Waiting for rollout to finish: {available} of {updated} updated replicas are available..."),
        );
    }
    HealthStatus::new(Healthy, "")
}

fn stateful_set(o: &Value) -> HealthStatus {
    use Health::*;
    let observed = int0(o, &["status", "observedGeneration"]);
    if observed == 0 || int0(o, &["metadata", "generation"]) > observed {
        return HealthStatus::new(Progressing, "Waiting for statefulset spec update to be observed...");
    }
    let replicas = int_at(o, &["spec", "replicas"]);
    let ready = int0(o, &["status", "readyReplicas"]);
    let updated = int0(o, &["status", "updatedReplicas"]);
    if let Some(r) = replicas.filter(|&r| ready < r) {
        return HealthStatus::new(Progressing, format!("Waiting for {} pods to be ready...", r - ready));
    }
    let strategy = str_at(o, &["spec", "updateStrategy", "type"]);
    if strategy == "RollingUpdate" && get(o, &["spec", "updateStrategy", "rollingUpdate"]).is_some() {
        let partition = int_at(o, &["spec", "updateStrategy", "rollingUpdate", "partition"]);
        if let (Some(r), Some(p)) = (replicas, partition)
            && updated < r - p
        {
            return HealthStatus::new(
                Progressing,
                format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                    r - p
                ),
            );
        }
        return HealthStatus::new(
            Healthy,
            format!("partitioned roll out complete: {updated} new pods have been updated..."),
        );
    }
    if strategy == "OnDelete" {
        return HealthStatus::new(Healthy, format!("statefulset has {ready} ready pods"));
    }
    let update_rev = str_at(o, &["status", "updateRevision"]);
    let current_rev = str_at(o, &["status", "currentRevision"]);
    if update_rev != current_rev {
        return HealthStatus::new(
            Progressing,
            format!("waiting for statefulset rolling update to complete {updated} pods at revision {update_rev}..."),
        );
    }
    let current = int0(o, &["status", "currentReplicas"]);
    HealthStatus::new(
        Healthy,
        format!("statefulset rolling update complete {current} pods at revision {current_rev}..."),
    )
}

fn replica_set(o: &Value) -> HealthStatus {
    use Health::*;
    if int0(o, &["metadata", "generation"]) > int0(o, &["status", "observedGeneration"]) {
        return HealthStatus::new(
            Progressing,
            "Waiting for rollout to finish: observed replica set generation less then desired generation",
        );
    }
    if let Some(c) = find_condition(o, "ReplicaFailure").filter(|c| field(c, "status") == "True") {
        return HealthStatus::new(Degraded, field(c, "message"));
    }
    let available = int0(o, &["status", "availableReplicas"]);
    if let Some(r) = int_at(o, &["spec", "replicas"]).filter(|&r| available < r) {
        return HealthStatus::new(
            Progressing,
            format!("Waiting for rollout to finish: {available} out of {r} new replicas are available..."),
        );
    }
    HealthStatus::new(Healthy, "")
}

fn daemon_set(o: &Value) -> HealthStatus {
    use Health::*;
    if int0(o, &["metadata", "generation"]) > int0(o, &["status", "observedGeneration"]) {
        return HealthStatus::new(
            Progressing,
            "Waiting for rollout to finish: observed daemon set generation less than desired generation",
        );
    }
    let name = str_at(o, &["metadata", "name"]);
    let updated = int0(o, &["status", "updatedNumberScheduled"]);
    let desired = int0(o, &["status", "desiredNumberScheduled"]);
    let available = int0(o, &["status", "numberAvailable"]);
    if str_at(o, &["spec", "updateStrategy", "type"]) == "OnDelete" {
        return HealthStatus::new(
            Healthy,
            format!("daemon set {updated} out of {desired} new pods have been updated"),
        );
    }
    if updated < desired {
        return HealthStatus::new(
            Progressing,
            format!(
                "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
            ),
        );
    }
    if available < desired {
        return HealthStatus::new(
            Progressing,
            format!(
                "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
            ),
        );
    }
    HealthStatus::new(Healthy, "")
}

/// Service of type LoadBalancer and Ingress: Healthy once the load balancer has an address.
fn load_balanced(o: &Value) -> HealthStatus {
    if list_len(o, &["status", "loadBalancer", "ingress"]) > 0 {
        HealthStatus::new(Health::Healthy, "")
    } else {
        HealthStatus::new(Health::Progressing, "")
    }
}

fn service(o: &Value) -> HealthStatus {
    if str_at(o, &["spec", "type"]) == "LoadBalancer" {
        load_balanced(o)
    } else {
        HealthStatus::new(Health::Healthy, "")
    }
}

fn pvc(o: &Value) -> HealthStatus {
    let health = match str_at(o, &["status", "phase"]) {
        "Lost" => Health::Degraded,
        "Pending" => Health::Progressing,
        "Bound" => Health::Healthy,
        _ => Health::Unknown,
    };
    HealthStatus::new(health, "")
}

fn pod(o: &Value) -> HealthStatus {
    use Health::*;
    let mut restart_policy = str_at(o, &["spec", "restartPolicy"]);
    // Pods that are not hooks can ask to be judged like long-running pods.
    if annotation(o, IGNORE_RESTART_POLICY) == Some("true") && !is_hook(o) {
        restart_policy = "Always";
    }
    let message = str_at(o, &["status", "message"]);
    let container_statuses = get(o, &["status", "containerStatuses"])
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let init_statuses = get(o, &["status", "initContainerStatuses"])
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);

    // Waiting on an error (CrashLoopBackOff, ImagePullBackOff, ErrImagePull, ...) is Degraded, but
    // only for restartPolicy Always: hook pods must not fail early.
    if restart_policy == "Always" {
        let messages: Vec<&str> = container_statuses
            .iter()
            .filter_map(|c| get(c, &["state", "waiting"]))
            .filter(|w| {
                let reason = field(w, "reason");
                reason.starts_with("Err") || reason.ends_with("Error") || reason.ends_with("BackOff")
            })
            .map(|w| field(w, "message"))
            .collect();
        if !messages.is_empty() {
            return HealthStatus::new(Degraded, messages.join(", "));
        }
    }

    let fail_message = |c: &Value| -> Option<String> {
        let t = get(c, &["state", "terminated"])?;
        let msg = field(t, "message");
        if !msg.is_empty() {
            return Some(msg.to_string());
        }
        if field(t, "reason") == "OOMKilled" {
            return Some("OOMKilled".to_string());
        }
        let code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
        (code != 0).then(|| format!("container {:?} failed with exit code {code}", field(c, "name")))
    };

    match str_at(o, &["status", "phase"]) {
        "Pending" => HealthStatus::new(Progressing, message),
        "Succeeded" => HealthStatus::new(Healthy, message),
        "Failed" => {
            if !message.is_empty() {
                return HealthStatus::new(Degraded, message);
            }
            let msg = init_statuses.iter().chain(container_statuses).find_map(fail_message);
            HealthStatus::new(Degraded, msg.unwrap_or_default())
        }
        "Running" => match restart_policy {
            "Always" => {
                let ready = find_condition(o, "Ready").is_some_and(|c| field(c, "status") == "True");
                if ready {
                    HealthStatus::new(Healthy, message)
                } else if container_statuses
                    .iter()
                    .any(|c| get(c, &["lastState", "terminated"]).is_some())
                {
                    HealthStatus::new(Degraded, message)
                } else {
                    HealthStatus::new(Progressing, message)
                }
            }
            // Finite pods (typically hooks) are Progressing until they end.
            "OnFailure" | "Never" => HealthStatus::new(Progressing, message),
            _ => HealthStatus::new(Unknown, message),
        },
        _ => HealthStatus::new(Unknown, message),
    }
}

fn job(o: &Value) -> HealthStatus {
    use Health::*;
    let (mut failed, mut complete, mut suspended) = (false, false, false);
    let (mut fail_msg, mut message) = ("", "");
    for c in conditions(o) {
        match field(c, "type") {
            "Failed" => {
                failed = true;
                complete = true;
                fail_msg = field(c, "message");
            }
            "Complete" => {
                complete = true;
                message = field(c, "message");
            }
            "Suspended" => {
                complete = true;
                message = field(c, "message");
                suspended |= field(c, "status") == "True";
            }
            _ => {}
        }
    }
    if !complete {
        HealthStatus::new(Progressing, message)
    } else if failed {
        HealthStatus::new(Degraded, fail_msg)
    } else if suspended {
        HealthStatus::new(Suspended, message)
    } else {
        HealthStatus::new(Healthy, message)
    }
}

fn hpa(o: &Value, gvk: &Gvk) -> HealthStatus {
    const WAITING: &str = "Waiting to Autoscale";
    match gvk.version {
        "v1" => {
            let Some(annotation) = annotation(o, "autoscaling.alpha.kubernetes.io/conditions") else {
                return HealthStatus::new(Health::Progressing, WAITING);
            };
            match serde_json::from_str::<Vec<Value>>(annotation) {
                Ok(conds) if conds.is_empty() => HealthStatus::new(Health::Progressing, WAITING),
                Ok(conds) => hpa_conditions(&conds),
                Err(e) => HealthStatus::new(
                    Health::Unknown,
                    format!("failed to convert conditions annotation to typed: {e}"),
                ),
            }
        }
        "v2" => hpa_conditions(conditions(o)),
        _ => HealthStatus::new(Health::Unknown, format!("unsupported HPA GVK: {}", gvk.display())),
    }
}

fn hpa_conditions(conds: &[Value]) -> HealthStatus {
    const DEGRADED: &[(&str, &str)] = &[
        ("AbleToScale", "FailedGetScale"),
        ("AbleToScale", "FailedUpdateScale"),
        ("ScalingActive", "FailedGetResourceMetric"),
        ("ScalingActive", "FailedGetObjectMetric"),
        ("ScalingActive", "FailedGetPodsMetric"),
        ("ScalingActive", "FailedGetExternalMetric"),
        ("ScalingActive", "FailedComputeMetricsReplicas"),
        ("ScalingActive", "InvalidSelector"),
    ];
    // Any failing condition wins over a healthy one, whatever the order.
    if let Some(c) = conds
        .iter()
        .find(|c| DEGRADED.contains(&(field(c, "type"), field(c, "reason"))))
    {
        return HealthStatus::new(Health::Degraded, field(c, "message"));
    }
    if let Some(c) = conds
        .iter()
        .find(|c| matches!(field(c, "type"), "AbleToScale" | "ScalingLimited") && field(c, "status") == "True")
    {
        return HealthStatus::new(Health::Healthy, field(c, "message"));
    }
    HealthStatus::new(Health::Progressing, "Waiting to Autoscale")
}

fn api_service(o: &Value) -> HealthStatus {
    match find_condition(o, "Available") {
        Some(c) => {
            let msg = format!("{}: {}", field(c, "reason"), field(c, "message"));
            let health = if field(c, "status") == "True" {
                Health::Healthy
            } else {
                Health::Progressing
            };
            HealthStatus::new(health, msg)
        }
        None => HealthStatus::new(Health::Progressing, "Waiting to be processed"),
    }
}

fn workflow(o: &Value) -> HealthStatus {
    let message = str_at(o, &["status", "message"]);
    let health = match str_at(o, &["status", "phase"]) {
        "" | "Pending" | "Running" => Health::Progressing,
        "Succeeded" => Health::Healthy,
        "Failed" | "Error" => Health::Degraded,
        _ => Health::Unknown,
    };
    HealthStatus::new(health, message)
}

// ---------------------------------------------------------------------------------------------
// Argo CD resource_customizations (Lua) rules

fn cron_job(o: &Value) -> HealthStatus {
    use Health::*;
    if bool_at(o, &["spec", "suspend"]) {
        return HealthStatus::new(Healthy, "CronJob is Suspended");
    }
    if get(o, &["status"]).is_none() {
        return HealthStatus::new(Progressing, "Waiting for CronJob");
    }
    let Some(last_schedule) = get(o, &["status", "lastScheduleTime"]).and_then(Value::as_str) else {
        return HealthStatus::new(Healthy, "CronJob has not been scheduled yet");
    };
    if list_len(o, &["status", "active"]) > 0 {
        return HealthStatus::new(
            Healthy,
            "The job is running. Its last execution may not have been successful",
        );
    }
    let Some(last_success) = get(o, &["status", "lastSuccessfulTime"]).and_then(Value::as_str) else {
        return HealthStatus::new(
            Healthy,
            "The CronJob never completed successfully. It may not be healthy",
        );
    };
    if time_key(last_success) < time_key(last_schedule) {
        return HealthStatus::new(Degraded, "CronJob has not completed its last execution successfully");
    }
    HealthStatus::new(Healthy, "CronJob has completed its last execution successfully")
}

/// Comparable key of an RFC 3339 timestamp: its digits up to the seconds (fractions and zone
/// ignored, as the Lua rule does; Kubernetes writes UTC `Z` times).
fn time_key(t: &str) -> String {
    t.chars().take(19).filter(char::is_ascii_digit).collect()
}

fn pdb(o: &Value) -> HealthStatus {
    use Health::*;
    if get(o, &["metadata", "deletionTimestamp"]).is_some() {
        let finalizers: Vec<&str> = get(o, &["metadata", "finalizers"])
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if finalizers.is_empty() {
            return HealthStatus::new(Progressing, "Pending deletion");
        }
        return HealthStatus::new(
            Progressing,
            format!("Pending deletion; blocked by finalizers: {}", finalizers.join(", ")),
        );
    }
    let mut result = HealthStatus::new(Progressing, "Waiting for status");
    for c in conditions(o) {
        let reason = field(c, "reason");
        if field(c, "status") == "False" && reason != "InsufficientPods" {
            return HealthStatus::new(Degraded, format!("PodDisruptionBudget has {reason}"));
        }
        result = HealthStatus::new(Healthy, format!("PodDisruptionBudget has {reason}"));
    }
    result
}

fn crd(o: &Value) -> HealthStatus {
    use Health::*;
    if get(o, &["metadata", "deletionTimestamp"]).is_some() {
        return HealthStatus::new(Progressing, "CRD is terminating");
    }
    let conds = conditions(o);
    if conds.is_empty() {
        return HealthStatus::new(Progressing, "Status conditions not found");
    }
    // Each condition keeps its own message.
    let mut terminating = None;
    let mut names_not_accepted = None;
    let mut violations = None;
    let (mut established, mut installing) = (false, false);
    for c in conds {
        match (field(c, "type"), field(c, "status")) {
            ("Terminating", "True") => terminating = Some(field(c, "message")),
            ("NamesAccepted", "False") => names_not_accepted = Some(field(c, "message")),
            ("Established", "True") => established = true,
            ("Established", "False") => installing = field(c, "reason") == "Installing",
            ("NonStructuralSchema", "True") => violations = Some(field(c, "message")),
            _ => {}
        }
    }
    if let Some(msg) = terminating {
        HealthStatus::new(Progressing, format!("CRD is terminating: {msg}"))
    } else if let Some(msg) = names_not_accepted {
        HealthStatus::new(Degraded, format!("CRD names have not been accepted: {msg}"))
    } else if installing && !established {
        HealthStatus::new(Progressing, "CRD is being installed")
    } else if !established {
        HealthStatus::new(Degraded, "CRD is not established")
    } else if let Some(msg) = violations {
        HealthStatus::new(Degraded, format!("Schema violations found: {msg}"))
    } else {
        HealthStatus::new(Healthy, "CRD is healthy")
    }
}

fn certificate(o: &Value) -> HealthStatus {
    let conds = conditions(o);
    // Issuing first, for a consistent answer whatever the order of the conditions.
    if let Some(c) = conds
        .iter()
        .find(|c| field(c, "type") == "Issuing" && field(c, "status") == "True")
    {
        return HealthStatus::new(Health::Progressing, field(c, "message"));
    }
    for c in conds.iter().filter(|c| field(c, "type") == "Ready") {
        match field(c, "status") {
            "False" => return HealthStatus::new(Health::Degraded, field(c, "message")),
            "True" => return HealthStatus::new(Health::Healthy, field(c, "message")),
            _ => {}
        }
    }
    HealthStatus::new(Health::Progressing, "Waiting for certificate")
}

/// Flux Kustomization, HelmRelease and source objects (Argo CD's Flux Lua rule).
fn flux(o: &Value) -> HealthStatus {
    use Health::*;
    if bool_at(o, &["spec", "suspend"]) {
        return HealthStatus::new(Suspended, format!("{} is suspended", str_at(o, &["kind"])));
    }
    if get(o, &["status", "conditions"]).is_none() {
        return HealthStatus::new(Progressing, "Status unknown");
    }
    let (mut progressing, mut succeeded) = (0, 0);
    let mut message = "";
    for c in conditions(o) {
        match (field(c, "type"), field(c, "status")) {
            ("Ready", status) => {
                match status {
                    "True" => succeeded += 1,
                    "Unknown" => progressing += 1,
                    _ => {}
                }
                message = field(c, "reason");
            }
            ("Reconciling", "True") => progressing += 1,
            _ => {}
        }
    }
    if progressing == 2 {
        HealthStatus::new(Progressing, message)
    } else if succeeded == 1 {
        HealthStatus::new(Healthy, message)
    } else {
        HealthStatus::new(Degraded, message)
    }
}

/// Argo Rollouts `Rollout` (Argo CD's Lua rule, v1.0+ phase/message and the older fields).
fn rollout(o: &Value) -> HealthStatus {
    use Health::*;
    const NOT_OBSERVED: &str = "Waiting for rollout spec update to be observed";
    let Some(observed) = get(o, &["status", "observedGeneration"]) else {
        return HealthStatus::new(Progressing, NOT_OBSERVED);
    };
    // Before v0.9 observedGeneration was a pod template hash, and may look numeric: only a number
    // not above metadata.generation is a generation.
    let observed = match observed {
        Value::String(s) => s.parse::<i64>().ok(),
        v => v.as_i64(),
    };
    let generation = int0(o, &["metadata", "generation"]);
    if observed.is_some_and(|g| g < generation) {
        return HealthStatus::new(Progressing, NOT_OBSERVED);
    }
    if get(o, &["spec", "workloadRef"]).is_some()
        && let Some(wanted) = annotation(o, "rollout.argoproj.io/workload-generation")
    {
        let seen = match get(o, &["status", "workloadObservedGeneration"]) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        if seen != wanted {
            return HealthStatus::new(Progressing, NOT_OBSERVED);
        }
    }
    // v1.0+ records its own phase and message.
    if let Some(phase) = get(o, &["status", "phase"]).and_then(Value::as_str) {
        let health = match phase {
            "Paused" => Some(Suspended),
            p => Health::parse(p),
        };
        let message = str_at(o, &["status", "message"]);
        return match health {
            Some(h) => HealthStatus::new(h, message),
            None => HealthStatus::new(Unknown, format!("unknown Rollout phase {phase:?}")),
        };
    }
    for c in conditions(o) {
        let (t, reason) = (field(c, "type"), field(c, "reason"));
        if t == "InvalidSpec" || (t == "Progressing" && matches!(reason, "RolloutAborted" | "ProgressDeadlineExceeded"))
        {
            return HealthStatus::new(Degraded, field(c, "message"));
        }
    }
    if list_len(o, &["status", "pauseConditions"]) > 0 || bool_at(o, &["spec", "paused"]) {
        return HealthStatus::new(Suspended, "Rollout is paused");
    }
    let Some(pod_hash) = get(o, &["status", "currentPodHash"]).and_then(Value::as_str) else {
        return HealthStatus::new(
            Progressing,
            "Waiting for rollout to finish: status has not been reconciled.",
        );
    };
    let desired = int_at(o, &["spec", "replicas"]).unwrap_or(1);
    let replicas = int0(o, &["status", "replicas"]);
    let updated = int0(o, &["status", "updatedReplicas"]);
    let available = int0(o, &["status", "availableReplicas"]);
    if updated < desired {
        return HealthStatus::new(
            Progressing,
            "Waiting for roll out to finish: More replicas need to be updated",
        );
    }
    if available < updated {
        return HealthStatus::new(
            Progressing,
            "Waiting for roll out to finish: updated replicas are still becoming available",
        );
    }
    // v0.8 moved .status.canary.stableRS to .status.stableRS.
    let stable_rs = get(o, &["status", "stableRS"])
        .or_else(|| get(o, &["status", "canary", "stableRS"]))
        .and_then(Value::as_str)
        .unwrap_or("");
    if get(o, &["spec", "strategy", "blueGreen"]).is_some() {
        if str_at(o, &["status", "blueGreen", "activeSelector"]) != pod_hash {
            return HealthStatus::new(Progressing, "active service cutover pending");
        }
        if !stable_rs.is_empty() && stable_rs != pod_hash {
            return HealthStatus::new(Progressing, "waiting for analysis to complete");
        }
    } else if get(o, &["spec", "strategy", "canary"]).is_some() {
        if replicas > updated {
            return HealthStatus::new(
                Progressing,
                "Waiting for roll out to finish: old replicas are pending termination",
            );
        }
        if stable_rs.is_empty() || stable_rs != pod_hash {
            return HealthStatus::new(Progressing, "Waiting for rollout to finish steps");
        }
    }
    HealthStatus::new(Healthy, "")
}

// ---------------------------------------------------------------------------------------------
// Generic rule (kstatus-style conditions) for kinds without a rule of their own

fn generic(o: &Value) -> Option<HealthStatus> {
    use Health::*;
    if let (Some(generation), Some(observed)) = (
        int_at(o, &["metadata", "generation"]),
        int_at(o, &["status", "observedGeneration"]),
    ) && observed < generation
    {
        return hs(Progressing, "Waiting for spec update to be observed");
    }
    let is_true = |t: &str| find_condition(o, t).filter(|c| field(c, "status") == "True");
    if let Some(c) = is_true("Stalled") {
        return hs(Degraded, condition_message(c));
    }
    if let Some(c) = is_true("Reconciling") {
        return hs(Progressing, condition_message(c));
    }
    let c = find_condition(o, "Ready").or_else(|| find_condition(o, "Available"))?;
    let health = match field(c, "status") {
        "True" => Healthy,
        "False" => Degraded,
        _ => Progressing,
    };
    hs(health, condition_message(c))
}

/// A condition's message, else its reason.
fn condition_message(c: &Value) -> &str {
    match field(c, "message") {
        "" => field(c, "reason"),
        m => m,
    }
}

/// Health from best to worst, as Argo CD orders it when it rolls objects up.
pub const HEALTH_ORDER: [Health; 6] = [
    Health::Healthy,
    Health::Suspended,
    Health::Progressing,
    Health::Missing,
    Health::Degraded,
    Health::Unknown,
];

/// Position of `h` in [`HEALTH_ORDER`]: higher is worse.
pub fn severity(h: Health) -> usize {
    HEALTH_ORDER.iter().position(|x| *x == h).unwrap_or(HEALTH_ORDER.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_is_argo_cd_order() {
        let mut all = vec![
            Health::Unknown,
            Health::Healthy,
            Health::Degraded,
            Health::Missing,
            Health::Progressing,
            Health::Suspended,
        ];
        all.sort_by_key(|h| severity(*h));
        assert_eq!(all, HEALTH_ORDER);
    }
    use serde_json::json;

    fn obj(api_version: &str, kind: &str, extra: Value) -> Value {
        let mut o = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "generation": 2}});
        if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                o.insert(k.clone(), v.clone());
            }
        }
        o
    }

    fn health(o: &Value) -> Option<Health> {
        health_of(o).map(|h| h.health)
    }

    #[test]
    fn generic_ready_and_available_conditions() {
        let ready = |status: &str| {
            obj(
                "example.com/v1",
                "Widget",
                json!({"status": {"conditions": [
                {"type": "Ready", "status": status, "reason": "R", "message": "m"}]}}),
            )
        };
        assert_eq!(health_of(&ready("True")), Some(HealthStatus::new(Health::Healthy, "m")));
        assert_eq!(health(&ready("False")), Some(Health::Degraded));
        assert_eq!(health(&ready("Unknown")), Some(Health::Progressing));

        let available = obj(
            "example.com/v1",
            "Widget",
            json!({"status": {"conditions": [
            {"type": "Available", "status": "False", "reason": "NoPods"}]}}),
        );
        assert_eq!(
            health_of(&available),
            Some(HealthStatus::new(Health::Degraded, "NoPods"))
        );

        // Ready wins over Available.
        let both = obj(
            "example.com/v1",
            "Widget",
            json!({"status": {"conditions": [
            {"type": "Available", "status": "False"}, {"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(health(&both), Some(Health::Healthy));
    }

    #[test]
    fn generic_kstatus_conditions_and_generation() {
        let stalled = obj(
            "example.com/v1",
            "Widget",
            json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "Stalled", "status": "True", "message": "stuck"}]}}),
        );
        assert_eq!(health_of(&stalled), Some(HealthStatus::new(Health::Degraded, "stuck")));
        let reconciling = obj(
            "example.com/v1",
            "Widget",
            json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "Reconciling", "status": "True"}]}}),
        );
        assert_eq!(health(&reconciling), Some(Health::Progressing));
        let stale = obj(
            "example.com/v1",
            "Widget",
            json!({"status": {"observedGeneration": 1, "conditions": [
            {"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(health(&stale), Some(Health::Progressing));
        let current = obj("example.com/v1", "Widget", json!({"status": {"observedGeneration": 2}}));
        assert_eq!(health_of(&current), None);
    }

    #[test]
    fn no_rule_is_none_and_healthy_when_live() {
        let cm = obj("v1", "ConfigMap", json!({"data": {"a": "b"}}));
        assert_eq!(health_of(&cm), None);
        assert_eq!(health_of_live(Some(&cm)), HealthStatus::new(Health::Healthy, ""));
        let other = obj(
            "example.com/v1",
            "Widget",
            json!({"status": {"conditions": [{"type": "Synced", "status": "False"}]}}),
        );
        assert_eq!(health_of(&other), None);
    }

    #[test]
    fn missing_and_unknown() {
        assert_eq!(health_of_live(None).health, Health::Missing);
        assert_eq!(health(&json!("not an object")), Some(Health::Unknown));
        assert_eq!(health(&json!(null)), Some(Health::Unknown));
        // Versions a built-in rule does not support are Unknown, as in Argo CD.
        let old = obj("extensions/v1beta1", "Deployment", json!({}));
        assert_eq!(health(&old), None, "extensions/Deployment has no rule");
        let hpa = obj("autoscaling/v2beta2", "HorizontalPodAutoscaler", json!({}));
        assert_eq!(
            health_of(&hpa),
            Some(HealthStatus::new(
                Health::Unknown,
                "unsupported HPA GVK: autoscaling/v2beta2, Kind=HorizontalPodAutoscaler"
            ))
        );
        let sts = obj("apps/v1beta2", "StatefulSet", json!({}));
        assert_eq!(health(&sts), Some(Health::Unknown));
        // A pod in a phase the rules do not know.
        let pod = obj(
            "v1",
            "Pod",
            json!({"spec": {"restartPolicy": "Always"}, "status": {"phase": "Weird"}}),
        );
        assert_eq!(health(&pod), Some(Health::Unknown));
        let pvc = obj("v1", "PersistentVolumeClaim", json!({"status": {}}));
        assert_eq!(health(&pvc), Some(Health::Unknown));
        // Bad HPA v1 conditions annotation.
        let hpa = obj(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            json!({"metadata": {"annotations": {
            "autoscaling.alpha.kubernetes.io/conditions": "not json"}}}),
        );
        assert_eq!(health(&hpa), Some(Health::Unknown));
    }

    #[test]
    fn pending_deletion() {
        let mut cm = obj("v1", "ConfigMap", json!({}));
        cm["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(
            health_of(&cm),
            Some(HealthStatus::new(Health::Progressing, "Pending deletion"))
        );
        cm["metadata"]["finalizers"] = json!([HOOK_FINALIZER]);
        assert_eq!(health_of(&cm), None);
    }

    #[test]
    fn application_health_reads_status() {
        let app = obj(
            "argoproj.io/v1alpha1",
            "Application",
            json!({"status": {"health": {"status": "Degraded", "message": "m"}}}),
        );
        assert_eq!(health_of(&app), None);
        assert_eq!(application_health(&app), Some(HealthStatus::new(Health::Degraded, "m")));
    }

    #[test]
    fn replica_set_and_workflow() {
        let rs = |available: i64, observed: i64| {
            obj(
                "apps/v1",
                "ReplicaSet",
                json!({"spec": {"replicas": 3},
                "status": {"observedGeneration": observed, "availableReplicas": available}}),
            )
        };
        assert_eq!(health(&rs(3, 2)), Some(Health::Healthy));
        assert_eq!(
            health_of(&rs(1, 2)).map(|h| h.message),
            Some("Waiting for rollout to finish: 1 out of 3 new replicas are available...".to_string())
        );
        assert_eq!(health(&rs(3, 1)), Some(Health::Progressing));
        let failed = obj(
            "apps/v1",
            "ReplicaSet",
            json!({"spec": {"replicas": 3}, "status": {"observedGeneration": 2,
            "conditions": [{"type": "ReplicaFailure", "status": "True", "message": "quota"}]}}),
        );
        assert_eq!(health_of(&failed), Some(HealthStatus::new(Health::Degraded, "quota")));
        let wf = obj(
            "argoproj.io/v1alpha1",
            "Workflow",
            json!({"status": {"phase": "Failed", "message": "boom"}}),
        );
        assert_eq!(health_of(&wf), Some(HealthStatus::new(Health::Degraded, "boom")));
    }

    #[test]
    fn health_names_round_trip() {
        for h in [
            Health::Healthy,
            Health::Progressing,
            Health::Degraded,
            Health::Suspended,
            Health::Missing,
            Health::Unknown,
        ] {
            assert_eq!(Health::parse(h.as_str()), Some(h));
            assert_eq!(serde_json::to_value(h).ok(), Some(json!(h.as_str())));
        }
    }
}
