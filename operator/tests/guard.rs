//! What the operator refuses to do on a database's behalf, on one local cluster: run a
//! program or read a file named by a kubeconfig Secret, place a participant in another
//! namespace (unless started with `--allow-foreign-namespaces`), read a Secret outside the
//! database's namespace, and take over an object someone else created under a name it would
//! use; and its pods run under the "restricted" Pod Security Standard.
//!
//! Every test has its own namespaces and an operator watching only its own namespace.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

fn h() -> &'static Harness {
    harness("guard", 1, 16)
}

/// An operator of the test cluster watching only `namespace`, with `extra` arguments.
fn operator_for(h: &Harness, tag: &str, namespace: &str, extra: &[&str]) -> Operator {
    let mut args = vec!["--watch-namespace", namespace];
    args.extend_from_slice(extra);
    Operator::start(&h.dir, tag, h.clusters[0].kubeconfig_path(), &args)
}

/// A database named `name` with one shard-node per shard, `participants` as given.
fn database(name: &str, participants: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"metadata": {"name": name}, "spec": {
        "image": "shard-node:dev", "replicasPerShard": 0, "participants": participants
    }})
}

fn east() -> serde_json::Value {
    serde_json::json!({"name": "east", "zones": ["east-a", "east-b", "east-c"]})
}

/// Waits until the database reports `SpecValid=False` for its current generation; returns
/// the condition's message.
async fn wait_invalid(c: &aadb_e2e::LocalCluster, ns: &str, name: &str) -> String {
    eventually(
        &format!("{ns}/{name} SpecValid=False"),
        Duration::from_secs(30),
        || async {
            let db = get_db(c, ns, name).await?;
            let st = db.status.as_ref()?;
            let valid = condition(&db, "SpecValid")?;
            (st.observed_generation == db.metadata.generation
                && valid.status == "False"
                && st.phase.as_deref() == Some("Invalid"))
            .then(|| valid.message.clone())
        },
    )
    .await
}

/// StatefulSets in `ns` labelled as database `db`'s.
async fn stateful_sets(c: &aadb_e2e::LocalCluster, ns: &str, db: &str) -> Vec<StatefulSet> {
    Api::<StatefulSet>::namespaced(c.client(), ns)
        .list(&ListParams::default().labels(&format!("aadb.dev/database={db}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// A kubeconfig Secret whose user runs a program is refused as a spec problem naming the
/// field, and the program never runs.
#[test]
fn a_kubeconfig_that_runs_a_program_is_refused() {
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = namespace(c, "guard-exec").await;
        let _op = operator_for(h, "exec", &ns, &[]);
        let marker = h.dir.join("exec-ran");
        let _ = std::fs::remove_file(&marker);
        let kubeconfig = format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: west
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: west
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /bin/sh
      args: ["-c", "touch {}"]
contexts:
- name: west
  context: {{cluster: west, user: west}}
current-context: west
"#,
            marker.display()
        );
        secret(c, &ns, "west-kubeconfig", "kubeconfig", &kubeconfig).await;
        let west = serde_json::json!({"name": "west", "zones": ["west-a"],
            "cluster": {"kubeconfigSecretRef": {"name": "west-kubeconfig"}}});
        apply_db(
            c,
            &ns,
            database("db", serde_json::json!([east(), west.clone()])),
        )
        .await
        .expect("apply database");
        let message = wait_invalid(c, &ns, "db").await;
        for needle in [
            "kubeconfig Secret guard-exec/west-kubeconfig is refused",
            "user \"west\" uses exec",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
        assert!(
            stateful_sets(c, &ns, "db").await.is_empty(),
            "objects of a refused spec"
        );

        // A kubeconfig reading a token from a file is refused the same way once the Secret
        // changes.
        secret(
            c,
            &ns,
            "west-kubeconfig",
            "kubeconfig",
            "apiVersion: v1\nkind: Config\nclusters:\n- name: west\n  cluster: {server: \"https://127.0.0.1:1\", certificate-authority: /etc/ssl/certs/ca-certificates.crt}\nusers:\n- name: west\n  user: {tokenFile: /etc/hostname}\ncontexts:\n- name: west\n  context: {cluster: west, user: west}\ncurrent-context: west\n",
        )
        .await;
        // The operator does not watch Secrets: a change of the spec makes it look again now.
        let mut changed = database("db", serde_json::json!([east(), west]));
        changed["spec"]["maxmemory"] = "100mb".into();
        apply_db(c, &ns, changed).await.expect("apply database");
        let message = eventually(
            "the file-reading kubeconfig refused",
            Duration::from_secs(30),
            || async {
                let db = get_db(c, &ns, "db").await?;
                let valid = condition(&db, "SpecValid")?;
                (valid.status == "False" && valid.message.contains("tokenFile"))
                    .then(|| valid.message.clone())
            },
        )
        .await;
        assert!(
            message.contains("cluster \"west\" uses certificate-authority (a file path)"),
            "{message:?}"
        );
        assert!(
            !marker.exists(),
            "the kubeconfig's exec command ran: {}",
            marker.display()
        );
    });
}

/// A participant in another namespace is refused unless the operator allows it; allowed, its
/// objects go there.
#[test]
fn participants_stay_in_the_database_namespace_unless_allowed() {
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = namespace(c, "guard-home").await;
        let mut op = operator_for(h, "home", &ns, &[]);
        let mut away = east();
        away["namespace"] = "guard-away".into();
        apply_db(c, &ns, database("db", serde_json::json!([away])))
            .await
            .expect("apply database");
        let message = wait_invalid(c, &ns, "db").await;
        for needle in [
            "participant \"east\" has namespace \"guard-away\"",
            "the database's namespace \"guard-home\"",
            "--allow-foreign-namespaces",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
        let namespaces: Api<Namespace> = Api::all(c.client());
        assert!(
            namespaces
                .get_opt("guard-away")
                .await
                .expect("get namespace")
                .is_none(),
            "the refused participant's namespace was created"
        );

        // The same spec with the operator allowing foreign namespaces.
        op.kill();
        let _op = operator_for(h, "home-allowed", &ns, &["--allow-foreign-namespaces"]);
        eventually(
            "the participant's StatefulSet in guard-away",
            Duration::from_secs(60),
            || async { (!stateful_sets(c, "guard-away", "db").await.is_empty()).then_some(()) },
        )
        .await;
        let db = eventually("SpecValid=True", Duration::from_secs(30), || async {
            let db = get_db(c, &ns, "db").await?;
            (condition(&db, "SpecValid")?.status == "True").then_some(db)
        })
        .await;
        assert!(stateful_sets(c, &ns, "db").await.is_empty(), "{db:?}");
    });
}

/// The password Secret is read from the database's namespace only: one of the same name in
/// another namespace is not used.
#[test]
fn the_password_secret_comes_from_the_database_namespace() {
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = namespace(c, "guard-pw").await;
        let other = namespace(c, "guard-pw-other").await;
        secret(c, &other, "app-password", "password", "from-elsewhere").await;
        let _op = operator_for(h, "pw", &ns, &[]);
        apply_db(
            c,
            &ns,
            serde_json::json!({"metadata": {"name": "db"}, "spec": {
                "image": "shard-node:dev", "replicasPerShard": 0,
                "auth": {"passwordSecretRef": {"name": "app-password"}},
                "participants": [east()]}}),
        )
        .await
        .expect("apply database");
        let message = eventually(
            "the missing password Secret reported",
            Duration::from_secs(60),
            || async {
                let db = get_db(c, &ns, "db").await?;
                let ready = condition(&db, "Ready")?;
                ready
                    .message
                    .contains("password Secret guard-pw/app-password")
                    .then(|| ready.message.clone())
            },
        )
        .await;
        assert!(!message.contains(&other), "{message:?}");
        // Created where it belongs, it is used.
        secret(c, &ns, "app-password", "password", "from-home").await;
        wait_ready(c, &ns, "db", Duration::from_secs(90)).await;
        let svc: Api<Service> = Api::namespaced(c.client(), &ns);
        assert!(svc.get_opt("db-east").await.expect("get").is_some());
    });
}

/// A Service someone else created under the name of a region's endpoint is left unchanged:
/// the database reports the conflict (condition and Event) instead of taking it over, and
/// deleting the database leaves it in place.
#[test]
fn an_object_someone_else_created_is_not_taken_over() {
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = namespace(c, "guard-conflict").await;
        let services: Api<Service> = Api::namespaced(c.client(), &ns);
        let theirs: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db-east", "annotations": {"owner": "someone-else"}},
            "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 1234}]}
        }))
        .expect("service object");
        services
            .create(&PostParams::default(), &theirs)
            .await
            .expect("create the Service");
        let _op = operator_for(h, "conflict", &ns, &[]);
        apply_db(c, &ns, database("db", serde_json::json!([east()])))
            .await
            .expect("apply database");
        let message = eventually(
            "ObjectsOwned=False with reason ObjectConflict",
            Duration::from_secs(60),
            || async {
                let db = get_db(c, &ns, "db").await?;
                let owned = condition(&db, "ObjectsOwned")?;
                (owned.status == "False" && owned.reason == "ObjectConflict")
                    .then(|| owned.message.clone())
            },
        )
        .await;
        assert!(
            message.contains("Service guard-conflict/db-east exists and is not this database's"),
            "{message:?}"
        );
        let ready = condition(&get_db(c, &ns, "db").await.expect("database"), "Ready")
            .cloned()
            .expect("Ready condition");
        assert_eq!(ready.status, "False", "{ready:?}");
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.client(), &ns);
        eventually(
            "an ObjectConflict Event",
            Duration::from_secs(30),
            || async {
                let list = events.list(&ListParams::default()).await.ok()?;
                list.items
                    .iter()
                    .any(|e| {
                        e.reason.as_deref() == Some("ObjectConflict")
                            && e.type_.as_deref() == Some("Warning")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("db")
                    })
                    .then_some(())
            },
        )
        .await;
        // The database's own objects beside it are applied.
        eventually(
            "the database's StatefulSet",
            Duration::from_secs(30),
            || async { (!stateful_sets(c, &ns, "db").await.is_empty()).then_some(()) },
        )
        .await;

        let unchanged = |svc: &Service| {
            let spec = svc.spec.as_ref().expect("spec");
            assert_eq!(
                spec.selector,
                Some([("app".to_string(), "theirs".to_string())].into()),
                "{svc:?}"
            );
            assert_eq!(
                spec.ports.as_ref().map(|p| p[0].port),
                Some(1234),
                "{svc:?}"
            );
            assert_eq!(
                svc.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("owner"))
                    .map(String::as_str),
                Some("someone-else")
            );
            assert!(svc.metadata.labels.is_none(), "{svc:?}");
            let managers: Vec<_> = svc
                .metadata
                .managed_fields
                .iter()
                .flatten()
                .filter_map(|m| m.manager.clone())
                .collect();
            assert!(
                !managers.iter().any(|m| m == "aadb-operator"),
                "{managers:?}"
            );
        };
        unchanged(
            &services
                .get("db-east")
                .await
                .expect("the Service is still there"),
        );

        // Deleting the database leaves someone else's Service in place.
        Api::<aadb_crd::ActiveActiveDatabase>::namespaced(c.client(), &ns)
            .delete("db", &DeleteParams::default())
            .await
            .expect("delete database");
        eventually("the database gone", Duration::from_secs(60), || async {
            get_db(c, &ns, "db").await.is_none().then_some(())
        })
        .await;
        unchanged(&services.get("db-east").await.expect("the Service survives"));
    });
}

/// In a namespace enforcing the "restricted" Pod Security Standard, where the API server
/// refuses a pod that does not meet it, a database with replicas and proxies becomes Ready,
/// and none of its pods mounts a service-account token.
#[test]
fn pods_run_where_the_restricted_standard_is_enforced() {
    let h = h();
    run(h, |h| async move {
        let c = &h.clusters[0];
        let ns = "guard-restricted";
        let api: Api<Namespace> = Api::all(c.client());
        let object =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest"}}}))
            .expect("namespace object");
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create the restricted namespace: {e}"),
        }
        // The standard is enforced here: a pod without a security context is refused.
        let bare: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bare"},
            "spec": {"containers": [{"name": "c", "image": "shard-node:dev"}]}
        }))
        .expect("pod object");
        let refused = Api::<Pod>::namespaced(c.client(), ns)
            .create(&PostParams::default(), &bare)
            .await
            .expect_err("a pod that does not meet the restricted standard is refused");
        assert!(refused.to_string().contains("PodSecurity"), "{refused}");

        let _op = operator_for(h, "restricted", ns, &[]);
        let mut db = database("db", serde_json::json!([east()]));
        db["spec"]["replicasPerShard"] = 1.into();
        db["spec"]["proxy"] = serde_json::json!({"replicas": 2});
        apply_db(c, ns, db).await.expect("apply database");
        wait_ready(c, ns, "db", Duration::from_secs(120)).await;
        let all: Vec<Pod> = pods(c, ns, "db")
            .await
            .into_iter()
            .chain(proxy_pods(c, ns, "db").await)
            .collect();
        assert_eq!(all.len(), 4, "two shard-nodes and two proxies");
        for pod in &all {
            let spec = pod.spec.as_ref().expect("pod spec");
            assert_eq!(spec.automount_service_account_token, Some(false));
            let mounts_token = spec
                .containers
                .iter()
                .flat_map(|c| c.volume_mounts.iter().flatten())
                .any(|m| m.mount_path.starts_with("/var/run/secrets/kubernetes.io"));
            assert!(!mounts_token, "{:?} mounts a token", pod.metadata.name);
        }
    });
}
