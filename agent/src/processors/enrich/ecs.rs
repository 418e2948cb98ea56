//! Task attributes from the ECS task metadata endpoint v4, for the agent running as a sidecar
//! (ECS on EC2 or Fargate). ECS sets `ECS_CONTAINER_METADATA_URI_V4` in every container of a
//! task; `${URI}` describes this container and `${URI}/task` the task.

use std::time::Duration;

use serde::Deserialize;

/// The variable ECS sets in each container.
pub const URI_VAR: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// The fields of `${URI}/task` we use (AWS documents many more).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Task {
    cluster: Option<String>,
    #[serde(rename = "TaskARN")]
    task_arn: Option<String>,
    family: Option<String>,
    revision: Option<String>,
    availability_zone: Option<String>,
    launch_type: Option<String>,
}

/// The fields of `${URI}` (this container) we use.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Container {
    name: Option<String>,
}

/// Task and container attributes; empty outside ECS (no variable), and when the endpoint does
/// not answer within `timeout` or answers something else than the documented shape.
pub async fn metadata(uri: Option<String>, timeout: Duration) -> Vec<(&'static str, String)> {
    let Some(uri) = uri.filter(|u| !u.is_empty()) else {
        return Vec::new();
    };
    let uri = uri.trim_end_matches('/').to_owned();
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "ECS task metadata: no HTTP client");
            return Vec::new();
        }
    };
    let query = async {
        let task: Task = client
            .get(format!("{uri}/task"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let container: Container = client
            .get(&uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<_, reqwest::Error>((task, container))
    };
    let (task, container) = match tokio::time::timeout(timeout, query).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "ECS task metadata not available: host attributes only");
            return Vec::new();
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "ECS task metadata did not answer in time: host attributes only"
            );
            return Vec::new();
        }
    };
    [
        ("ecs_cluster", task.cluster),
        ("ecs_task_arn", task.task_arn),
        ("ecs_task_family", task.family),
        ("ecs_task_revision", task.revision),
        ("ecs_launch_type", task.launch_type),
        ("availability_zone", task.availability_zone),
        ("ecs_container_name", container.name),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
    .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::Router;
    use axum::routing::get;

    use super::*;

    // The shape AWS documents for the task metadata endpoint v4 (Fargate example, shortened).
    const TASK: &str = r#"{
        "Cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/shop",
        "TaskARN": "arn:aws:ecs:us-west-2:111122223333:task/shop/158d1c8083dd49d6b527399fd6414f5c",
        "Family": "checkout",
        "Revision": "7",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 0.25, "Memory": 512},
        "PullStartedAt": "2026-12-01T19:58:12.239012447Z",
        "AvailabilityZone": "us-west-2d",
        "LaunchType": "FARGATE",
        "Containers": [{"DockerId": "abc", "Name": "checkout", "Image": "shop/checkout:1.4"}],
        "ClockDrift": {"ClockErrorBound": 0.5, "ReferenceTimestamp": "2026-12-01T19:58:12Z", "ClockSynchronizationStatus": "SYNCHRONIZED"},
        "EphemeralStorageMetrics": {"Utilized": 261, "Reserved": 20496}
    }"#;
    const CONTAINER: &str = r#"{
        "DockerId": "cd189a933e5849daa93386466019ab50-2495160603",
        "Name": "vigil-agent",
        "DockerName": "vigil-agent",
        "Image": "vigil/agent:0.1.0",
        "Labels": {"com.amazonaws.ecs.task-definition-family": "checkout"},
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 2},
        "Type": "NORMAL",
        "ContainerARN": "arn:aws:ecs:us-west-2:111122223333:container/shop/158d/vigil",
        "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.0.108"]}]
    }"#;

    /// A stand-in of the endpoint at `/v4/<id>` on a free port; returns its URI.
    async fn endpoint(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{addr}/v4/cd189a933e5849daa93386466019ab50-2495160603")
    }

    #[tokio::test]
    async fn task_and_container_attributes_from_the_v4_endpoint() {
        let uri = endpoint(
            Router::new()
                .route("/v4/{id}/task", get(|| async { TASK }))
                .route("/v4/{id}", get(|| async { CONTAINER })),
        )
        .await;
        let found = metadata(Some(uri), Duration::from_secs(2)).await;
        assert_eq!(
            found,
            vec![
                (
                    "ecs_cluster",
                    "arn:aws:ecs:us-west-2:111122223333:cluster/shop".to_owned()
                ),
                (
                    "ecs_task_arn",
                    "arn:aws:ecs:us-west-2:111122223333:task/shop/158d1c8083dd49d6b527399fd6414f5c"
                        .to_owned()
                ),
                ("ecs_task_family", "checkout".to_owned()),
                ("ecs_task_revision", "7".to_owned()),
                ("ecs_launch_type", "FARGATE".to_owned()),
                ("availability_zone", "us-west-2d".to_owned()),
                ("ecs_container_name", "vigil-agent".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn absent_outside_ecs() {
        assert!(metadata(None, Duration::from_secs(1)).await.is_empty());
        assert!(
            metadata(Some(String::new()), Duration::from_secs(1))
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_endpoint_that_never_answers_costs_only_the_timeout() {
        // Accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let start = Instant::now();
        let found = metadata(
            Some(format!("http://{addr}/v4/x")),
            Duration::from_millis(300),
        )
        .await;
        assert!(found.is_empty());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn an_unexpected_answer_adds_nothing() {
        let uri =
            endpoint(Router::new().route("/v4/{id}/task", get(|| async { "not json" }))).await;
        assert!(metadata(Some(uri), Duration::from_secs(2)).await.is_empty());
    }
}
