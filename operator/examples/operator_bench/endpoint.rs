//! Throughput at a region endpoint (through the proxies) against the shard-node it reaches,
//! measured directly, in the same run: a 1 region × 1 shard × 1 replica database with two
//! proxies; `redis-benchmark` (SET and GET, `-c 50 -r 100000`, `BENCH_ENDPOINT_REQUESTS`
//! requests, default 100000) without pipelining and with `-P 16`, at the endpoint and at the
//! primary pod's own address, one after the other. The ratio is endpoint / direct.

use super::{
    create_namespace, database_pods, delete_database, delete_namespace, env_number, is_primary,
    ready_endpoint, zones, Metric,
};
use aadb_e2e::LocalCluster;
use anyhow::{anyhow, Context, Result};
use serde_json::json;

/// One measured command at one pipeline depth.
struct Row {
    test: String,
    pipeline: u32,
    endpoint: f64,
    direct: f64,
}

pub(super) struct EndpointThroughput {
    rows: Vec<Row>,
    requests: u64,
}

impl EndpointThroughput {
    pub(super) fn print(&self) {
        println!(
            "throughput at the region endpoint (2 proxies) vs the shard-node directly, {} requests, -c 50 -r 100000:",
            self.requests
        );
        for r in &self.rows {
            println!(
                "  {:<4} -P {:<2}  endpoint {:>9.0} rps  direct {:>9.0} rps  ratio {:.2}",
                r.test,
                r.pipeline,
                r.endpoint,
                r.direct,
                r.endpoint / r.direct
            );
        }
    }

    pub(super) fn results(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        for r in &self.rows {
            let name = format!("endpoint_{}_p{}", r.test.to_lowercase(), r.pipeline);
            out.push((format!("{name}_rps"), format!("{:.0}", r.endpoint), "rps"));
            out.push((
                format!("{name}_direct_rps"),
                format!("{:.0}", r.direct),
                "rps",
            ));
            out.push((
                format!("{name}_ratio"),
                format!("{:.2}", r.endpoint / r.direct),
                "x",
            ));
        }
        out
    }
}

pub(super) async fn endpoint_bench(c: &LocalCluster) -> Result<EndpointThroughput> {
    let requests = env_number("BENCH_ENDPOINT_REQUESTS", 100_000)?;
    let ns = "endpoint-bench";
    let region = c.name().to_string();
    create_namespace(c, ns).await?;
    let spec = json!({"shards": 1, "replicasPerShard": 1, "image": "shard-node:dev",
                      "proxy": {"replicas": 2},
                      "participants": [{"name": region, "zones": zones(&region)}]});
    let (_, endpoint) = ready_endpoint(c, ns, "endpoint database", spec).await?;
    let (credentials, _) = endpoint
        .rsplit_once('@')
        .ok_or_else(|| anyhow!("endpoint {endpoint} has no credentials"))?;
    let primary = database_pods(c, ns)
        .await
        .into_iter()
        .find(is_primary)
        .and_then(|p| p.status.and_then(|s| s.pod_ip))
        .ok_or_else(|| anyhow!("the primary pod has no address"))?;
    let direct = format!("{credentials}@{primary}:{}", aadb_crd::SHARD_NODE_PORT);
    let mut rows = Vec::new();
    for pipeline in [1u32, 16] {
        let at_endpoint = redis_benchmark(&endpoint, pipeline, requests).await?;
        let at_node = redis_benchmark(&direct, pipeline, requests).await?;
        for (test, rps) in at_endpoint {
            let direct = at_node
                .iter()
                .find(|(t, _)| *t == test)
                .map(|(_, r)| *r)
                .ok_or_else(|| anyhow!("no direct figure for {test}"))?;
            rows.push(Row {
                test,
                pipeline,
                endpoint: rps,
                direct,
            });
        }
    }
    delete_database(c, ns).await?;
    delete_namespace(c, ns).await;
    Ok(EndpointThroughput { rows, requests })
}

/// `redis-benchmark -t set,get` at `target` (`user:password@host:port`); requests per second
/// per test.
async fn redis_benchmark(target: &str, pipeline: u32, requests: u64) -> Result<Vec<(String, f64)>> {
    let (credentials, address) = target
        .rsplit_once('@')
        .ok_or_else(|| anyhow!("{target} is not user:password@host:port"))?;
    let (user, password) = credentials
        .split_once(':')
        .ok_or_else(|| anyhow!("credentials are not user:password"))?;
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{address} is not host:port"))?;
    let args: Vec<String> = [
        "-h", host, "--user", user, "-a", password, "-p", port, "-t", "set,get", "-c", "50", "-r",
        "100000", "--csv",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "-n".to_string(),
        requests.to_string(),
        "-P".to_string(),
        pipeline.to_string(),
    ])
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-benchmark")
            .args(&args)
            .output()
    })
    .await
    .context("redis-benchmark task")?
    .context("running redis-benchmark (install redis-tools)")?;
    if !out.status.success() {
        anyhow::bail!(
            "redis-benchmark at {address} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(String, f64)> = text
        .lines()
        .filter_map(|line| {
            let mut cols = line.split(',').map(|c| c.trim_matches('"'));
            let test = cols.next()?.to_string();
            let rps = cols.next()?.parse::<f64>().ok()?;
            Some((test, rps))
        })
        .collect();
    if rows.len() != 2 {
        anyhow::bail!("redis-benchmark at {address} printed no figures: {text}");
    }
    Ok(rows)
}
