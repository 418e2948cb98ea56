//! `vigil-agent iam-policy` prints a policy IAM accepts: the real binary on the shipped configs
//! (the package's default and the ECS sidecar example), each document created as a managed
//! policy in moto's IAM, which validates policy grammar (versions, actions, ARNs, conditions).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use vigil_test_support::{Moto, venv_bin, workspace_bin};

fn iam_policy(config: &Path) -> std::process::Output {
    Command::new(workspace_bin("vigil-agent"))
        .args([
            "iam-policy",
            "--region",
            "us-east-1",
            "--account-id",
            "123456789012",
            "--config",
        ])
        .arg(config)
        .output()
        .expect("run vigil-agent iam-policy")
}

#[test]
fn policies_of_the_shipped_configs_are_accepted_by_iam() {
    let moto = Moto::start();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for (name, config) in [
        ("package-default", "agent/debian/agent.toml"),
        ("ecs-sidecar", "examples/ecs/agent.toml"),
    ] {
        let out = iam_policy(&repo.join(config));
        assert!(
            out.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let policy: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON policy");
        assert_eq!(policy["Version"], "2012-10-17");
        let text = policy.to_string();
        assert!(text.contains("logs:PutLogEvents"), "{config}: {text}");
        assert!(
            !text.contains("\"Action\":\"*\"") && !text.contains("logs:*"),
            "{text}"
        );

        // moto's CreatePolicy refuses malformed documents (MalformedPolicyDocument).
        let mut py = Command::new(venv_bin("python"))
            .arg("-c")
            .arg(
                "import boto3, sys\n\
                 iam = boto3.client('iam', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                     aws_access_key_id='test', aws_secret_access_key='test')\n\
                 p = iam.create_policy(PolicyName=sys.argv[2], PolicyDocument=sys.stdin.read())\n\
                 print(p['Policy']['Arn'])",
            )
            .arg(&moto.endpoint)
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python (scripts/setup.sh)");
        py.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        let created = py.wait_with_output().unwrap();
        assert!(
            created.status.success(),
            "IAM refused the policy of {config}: {}\n{text}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    // The sidecar example names X-Ray and a metric namespace; the package default does not.
    let sidecar =
        String::from_utf8(iam_policy(&repo.join("examples/ecs/agent.toml")).stdout).unwrap();
    assert!(sidecar.contains("xray:PutTraceSegments") && sidecar.contains("Vigil/SpanMetrics"));
}

#[test]
fn an_invalid_config_gets_its_errors_and_no_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[sinks.logs]\ntype = \"cloudwatch_logs\"\ninputs = [\"nowhere\"]\n",
    )
    .unwrap();
    let out = iam_policy(&config);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent.toml:") && err.contains("sinks.logs"),
        "{err}"
    );
}
