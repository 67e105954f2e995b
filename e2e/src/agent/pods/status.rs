//! A worker's pod status, written as a kubelet writes it: phase, IPs, conditions and container
//! statuses (see the parent module's contract).

use super::*;

impl Worker {
    pub(super) fn phase(&self, terminating: bool) -> &'static str {
        if !self.init_done() {
            let failed_init = self
                .containers
                .iter()
                .any(|c| c.init && matches!(&c.state, State::Terminated(t) if t.exit_code != 0));
            return if failed_init { "Failed" } else { "Pending" };
        }
        let main: Vec<&ContainerRt> = self.containers.iter().filter(|c| !c.init).collect();
        let all_terminated = main.iter().all(|c| matches!(c.state, State::Terminated(_)));
        if all_terminated && (terminating || main.iter().all(|c| c.next_start.is_none())) {
            let all_ok = main
                .iter()
                .all(|c| matches!(&c.state, State::Terminated(t) if t.exit_code == 0));
            return if all_ok { "Succeeded" } else { "Failed" };
        }
        if main.iter().any(|c| c.has_run) {
            "Running"
        } else {
            "Pending"
        }
    }

    pub(super) fn state_json(s: &State) -> Value {
        match s {
            State::Waiting { reason, message } => {
                if message.is_empty() {
                    json!({"waiting": {"reason": reason}})
                } else {
                    json!({"waiting": {"reason": reason, "message": message}})
                }
            }
            State::Running { started_at, .. } => json!({"running": {"startedAt": started_at}}),
            State::Terminated(t) => Self::terminated_json(t),
        }
    }

    pub(super) fn terminated_json(t: &Terminated) -> Value {
        let mut v = json!({"terminated": {
            "exitCode": t.exit_code, "reason": t.reason,
            "startedAt": t.started_at, "finishedAt": t.finished_at,
            "containerID": t.container_id,
        }});
        if let Some(sig) = t.signal {
            v["terminated"]["signal"] = json!(sig);
        }
        v
    }

    pub(super) fn container_status(&self, c: &ContainerRt) -> Value {
        let image = c.spec.image.clone().unwrap_or_default();
        let binary = self
            .shared
            .config
            .images
            .lookup(&image)
            .map(|e| e.binary.display().to_string())
            .unwrap_or_else(|| image.clone());
        let mut v = json!({
            "name": c.spec.name,
            "image": image,
            "imageID": format!("aadb-e2e://{binary}"),
            "ready": c.ready && matches!(c.state, State::Running { .. }),
            "started": c.started && matches!(c.state, State::Running { .. }),
            "restartCount": c.restart_count,
            "state": Self::state_json(&c.state),
            "lastState": c.last.as_ref().map(Self::terminated_json).unwrap_or_else(|| json!({})),
        });
        if !c.container_id.is_empty() {
            v["containerID"] = json!(c.container_id);
        }
        v
    }

    pub(super) fn status(&self, terminating: bool) -> Value {
        let ip = self.ip.to_string();
        let host = self.host_ip.to_string();
        let main_ready = self
            .containers
            .iter()
            .filter(|c| !c.init)
            .all(|c| c.ready && matches!(c.state, State::Running { .. }));
        let containers_ready = main_ready && !terminating;
        let existing = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let gates_ok = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.as_ref())
            .is_none_or(|gates| {
                gates.iter().all(|g| {
                    existing
                        .iter()
                        .any(|c| c.type_ == g.condition_type && c.status == "True")
                })
            });
        let now = now_rfc3339();
        let ours: Vec<(&str, bool)> = vec![
            ("PodReadyToStartContainers", !terminating),
            ("Initialized", self.init_done()),
            ("ContainersReady", containers_ready),
            ("Ready", containers_ready && gates_ok),
        ];
        let mut conditions: Vec<Value> = Vec::new();
        for (t, ok) in &ours {
            let status = if *ok { "True" } else { "False" };
            let prev = existing.iter().find(|c| c.type_ == *t);
            let since = match prev {
                Some(p) if p.status == status => p
                    .last_transition_time
                    .as_ref()
                    .map(|x| x.0.to_string())
                    .unwrap_or_else(|| now.clone()),
                _ => now.clone(),
            };
            let mut c = json!({"type": t, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
            if !ok && (*t == "ContainersReady" || *t == "Ready") {
                c["reason"] = json!("ContainersNotReady");
            }
            conditions.push(c);
        }
        for c in &existing {
            if !ours.iter().any(|(t, _)| *t == c.type_) {
                conditions.push(serde_json::to_value(c).unwrap_or(Value::Null));
            }
        }
        let init: Vec<Value> = self
            .containers
            .iter()
            .filter(|c| c.init)
            .map(|c| self.container_status(c))
            .collect();
        let main: Vec<Value> = self
            .containers
            .iter()
            .filter(|c| !c.init)
            .map(|c| self.container_status(c))
            .collect();
        json!({
            "phase": self.phase(terminating),
            "hostIP": host,
            "hostIPs": [{"ip": host}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": self.start_time,
            "conditions": conditions,
            "initContainerStatuses": init,
            "containerStatuses": main,
        })
    }

    pub(super) async fn patch_status(&mut self, terminating: bool) {
        let status = self.status(terminating);
        // lastTransitionTime values are only refreshed on change, so comparing whole
        // documents is a fair change detector.
        if self.last_patch.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.ns());
        match api
            .patch_status(
                &self.name(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(p) => {
                self.last_ready_sent = pod_ready_condition(&p);
                self.last_patch = Some(status);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => self.gone = true,
            Err(e) => tracing::warn!(pod = %self.name(), "patch status: {e}"),
        }
    }
}
