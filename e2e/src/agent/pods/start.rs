//! Starting a container: resolving its command, arguments, environment and volumes from the
//! API, the service-account kubeconfig, and the process itself (see the parent module's
//! contract).

use super::*;

impl Worker {
    pub(super) async fn lookup(&self) -> Lookup {
        let mut l = Lookup::default();
        let ns = self.ns();
        let mut cms = HashSet::new();
        let mut secrets = HashSet::new();
        for c in &self.containers {
            for f in c.spec.env_from.iter().flatten() {
                if let Some(r) = &f.config_map_ref {
                    cms.insert(r.name.clone());
                }
                if let Some(r) = &f.secret_ref {
                    secrets.insert(r.name.clone());
                }
            }
            for e in c.spec.env.iter().flatten() {
                if let Some(v) = &e.value_from {
                    if let Some(r) = &v.config_map_key_ref {
                        cms.insert(r.name.clone());
                    }
                    if let Some(r) = &v.secret_key_ref {
                        secrets.insert(r.name.clone());
                    }
                }
            }
        }
        let cm_api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &ns);
        for n in cms {
            if let Ok(Some(cm)) = cm_api.get_opt(&n).await {
                l.config_maps.insert(n, cm.data.unwrap_or_default());
            }
        }
        let s_api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &ns);
        for n in secrets {
            if let Ok(Some(s)) = s_api.get_opt(&n).await {
                let data = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                l.secrets.insert(n, data);
            }
        }
        l
    }

    pub(super) fn fail_start(&mut self, idx: usize, reason: &str, message: String) {
        tracing::warn!(pod = %self.name(), "{reason}: {message}");
        if let Some(c) = self.containers.get_mut(idx) {
            c.state = State::Waiting {
                reason: reason.into(),
                message,
            };
            c.next_start = Some(Instant::now() + c.backoff);
            c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// A process cannot see the service account files at the fixed path Kubernetes clients
    /// read in a cluster: when the container mounts them there (and sets no `KUBECONFIG`),
    /// writes a kubeconfig that names the same API server address, CA and token file, for
    /// `KUBECONFIG`. None when the container has no such mount.
    pub(super) fn service_account_kubeconfig(
        &self,
        container: &str,
        mounts: &[(String, PathBuf)],
        env: &[(String, String)],
    ) -> Option<Result<PathBuf, String>> {
        let (_, dir) = mounts
            .iter()
            .find(|(m, _)| m.trim_end_matches('/') == SERVICE_ACCOUNT_DIR)?;
        if env.iter().any(|(k, _)| k == "KUBECONFIG") {
            return None;
        }
        let cfg = &self.shared.config;
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "in-cluster", "cluster": {
                "server": format!("https://{}:{}", cfg.api_host, cfg.api_port),
                "certificate-authority": dir.join("ca.crt"),
            }}],
            "users": [{"name": "service-account", "user": {"tokenFile": dir.join("token")}}],
            "contexts": [{"name": "in-cluster", "context": {
                "cluster": "in-cluster", "user": "service-account", "namespace": self.ns(),
            }}],
            "current-context": "in-cluster",
        });
        let path = self.dir.join(format!("{container}.kubeconfig"));
        Some(
            std::fs::write(&path, kubeconfig.to_string())
                .map(|()| path.clone())
                .map_err(|e| format!("write {}: {e}", path.display())),
        )
    }

    pub(super) async fn start(&mut self, idx: usize) {
        let pod = self.pod.clone();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: self.ip.to_string(),
            host_ip: self.host_ip.to_string(),
        };
        let volumes = match volumes::prepare(&self.shared, &pod, &self.dir, &facts).await {
            Ok(v) => v,
            Err(m) => return self.fail_start(idx, "CreateContainerConfigError", m),
        };
        let spec = self.containers[idx].spec.clone();
        let mounts = match volumes::mounts(&spec, &volumes) {
            Ok(m) => m,
            Err(m) => return self.fail_start(idx, "CreateContainerConfigError", m),
        };
        let lookup = self.lookup().await;
        let mut env = match resolve_env(&spec, &facts, &lookup) {
            Ok(e) => e,
            Err(m) => return self.fail_start(idx, "CreateContainerConfigError", m),
        };
        for (_, v) in env.iter_mut() {
            *v = rewrite_path(v, &mounts);
        }
        let cfg = &self.shared.config;
        let mut full_env: Vec<(String, String)> = vec![
            ("PATH".into(), self.shared.path_env.clone()),
            ("HOME".into(), self.dir.display().to_string()),
            ("HOSTNAME".into(), self.name()),
            ("KUBERNETES_SERVICE_HOST".into(), cfg.api_host.clone()),
            ("KUBERNETES_SERVICE_PORT".into(), cfg.api_port.to_string()),
        ];
        full_env.retain(|(k, _)| !env.iter().any(|(k2, _)| k2 == k));
        full_env.extend(env.iter().cloned());
        if let Some(kubeconfig) = self.service_account_kubeconfig(&spec.name, &mounts, &env) {
            match kubeconfig {
                Ok(path) => full_env.push(("KUBECONFIG".into(), path.display().to_string())),
                Err(m) => return self.fail_start(idx, "CreateContainerConfigError", m),
            }
        }
        let image = spec.image.clone().unwrap_or_default();
        let command = spec.command.clone().unwrap_or_default();
        let (entry, rest) = match cfg.images.resolve(&image, &command, &self.shared.path_env) {
            Ok(x) => x,
            Err(m) => return self.fail_start(idx, "ErrImagePull", m),
        };
        if !entry.program.is_file() {
            let m = format!(
                "{} (image {image:?}) does not exist; build it first",
                entry.program.display()
            );
            return self.fail_start(idx, "ErrImagePull", m);
        }
        let args: Vec<String> = entry
            .args
            .iter()
            .cloned()
            .chain(resolve_args(
                &rest,
                spec.args.as_deref().unwrap_or(&[]),
                &full_env,
                &mounts,
            ))
            .collect();
        // On the shared host every pod would bind the same wildcard address: each gets its own
        // loopback address instead, where a pod network would give it its own namespace.
        let (args, full_env) = if self.podnet.is_none() {
            let own = |v: &String| v.replace("0.0.0.0", &self.ip.to_string());
            (
                args.iter().map(own).collect::<Vec<_>>(),
                full_env
                    .iter()
                    .map(|(k, v)| (k.clone(), own(v)))
                    .collect::<Vec<_>>(),
            )
        } else {
            (args, full_env)
        };
        let cwd = spec
            .working_dir
            .as_deref()
            .map(|w| PathBuf::from(rewrite_path(w, &mounts)))
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| self.dir.clone());
        let log_path =
            cfg.dir
                .join("logs")
                .join(format!("{}_{}_{}.log", self.ns(), self.name(), spec.name));
        let log = match std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
        {
            Ok(f) => f,
            Err(e) => return self.fail_start(idx, "RunContainerError", format!("log: {e}")),
        };
        let log2 = match log.try_clone() {
            Ok(f) => f,
            Err(e) => return self.fail_start(idx, "RunContainerError", format!("log: {e}")),
        };
        // A parent-death signal too, so that pods never outlive the agent's process; with pod
        // networking the process enters the pod's network namespace (`ip netns exec` execs in
        // place, so the pid stays the container's).
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if std::path::Path::new(SETPRIV).is_file() {
            argv.extend(["--pdeathsig", "KILL", "--"].map(std::ffi::OsString::from));
        }
        if let Some(p) = &self.podnet {
            argv.extend(
                crate::net::ClusterNet::exec_prefix(p.namespace())
                    .into_iter()
                    .map(std::ffi::OsString::from),
            );
        }
        argv.push(entry.program.clone().into_os_string());
        let mut cmd = if std::path::Path::new(SETPRIV).is_file() {
            tokio::process::Command::new(SETPRIV)
        } else {
            tokio::process::Command::new(argv.remove(0))
        };
        cmd.args(&argv);
        cmd.args(&args)
            .env_clear()
            .envs(full_env.iter().map(|(k, v)| (k, v)))
            .current_dir(&cwd)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return self.fail_start(
                    idx,
                    "RunContainerError",
                    format!("start {}: {e}", entry.program.display()),
                )
            }
        };
        let Some(pid) = child.id() else {
            return self.fail_start(idx, "RunContainerError", "process exited at once".into());
        };
        let c = &mut self.containers[idx];
        if c.has_run {
            c.restart_count += 1;
        }
        c.has_run = true;
        c.gen += 1;
        let gen = c.gen;
        c.container_id = format!("aadb-e2e://{}-{pid}", self.uid);
        c.state = State::Running {
            pid,
            started_at: now_rfc3339(),
            since: Instant::now(),
        };
        c.started = false;
        c.ready = false;
        c.next_start = None;
        lock(&self.pids).insert(spec.name.clone(), pid);
        let tx = self.ev_tx.clone();
        c.waiter = Some(AbortOnDrop(tokio::spawn(async move {
            let guard = GroupGuard(pid);
            let status = child.wait().await;
            std::mem::forget(guard);
            let (code, signal) = match status {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    (s.code(), s.signal())
                }
                Err(_) => (None, Some(9)),
            };
            // Take the rest of the group with it.
            let _ = signal_group(pid, Signal::SIGKILL);
            let _ = tx
                .send(Ev::Exited {
                    idx,
                    gen,
                    code,
                    signal,
                })
                .await;
        })));
        if !c.init {
            let ctx = ProbeContext {
                pod_ip: IpAddr::V4(self.ip),
                container: spec.clone(),
                env: full_env,
                mounts,
                cwd,
                images: cfg.images.clone(),
                path_env: self.shared.path_env.clone(),
                netns: self.podnet.as_ref().map(|p| p.namespace().to_string()),
            };
            let wtx = self.ev_tx.clone();
            c.prober = Some(AbortOnDrop(tokio::spawn(async move {
                let (ptx, mut prx) = mpsc::channel(8);
                let forward = async {
                    while let Some(ev) = prx.recv().await {
                        if wtx.send(Ev::Probe { idx, gen, ev }).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::join!(probes::run(ctx, ptx), forward);
            })));
        }
    }
}
