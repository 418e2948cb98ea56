//! The shop's AWS resources in moto, as the watchdog's and the agent's infrastructure code would
//! create them: secrets in SSM, the on-call SNS topic, checkout's Auto Scaling group and its
//! target group. (The alert-state table is made by `vigil-watchdog create-state-table`.)

use anyhow::Context;
use vigil_test_support::Moto;

/// The Slack bot token and the New Relic license key the stand-ins expect.
pub const SLACK_BOT_TOKEN: &str = vigil_test_support::slack::BOT_TOKEN;
pub const NEWRELIC_LICENSE: &str = "nr-demo-license-0123456789abcdef";

pub const CHECKOUT_GROUP: &str = "shop-checkout";

pub struct ShopResources {
    pub topic_arn: String,
    pub instances: Vec<String>,
}

pub async fn create(moto: &Moto) -> anyhow::Result<ShopResources> {
    let config = moto.sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&config);
    for (name, value) in [
        ("/vigil/slack/bot-token", SLACK_BOT_TOKEN),
        ("/vigil/newrelic-license", NEWRELIC_LICENSE),
    ] {
        ssm.put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .with_context(|| format!("SSM PutParameter {name}"))?;
    }
    let topic_arn = aws_sdk_sns::Client::new(&config)
        .create_topic()
        .name("shop-oncall")
        .send()
        .await
        .context("SNS CreateTopic shop-oncall")?
        .topic_arn
        .context("CreateTopic answered without an ARN")?;

    let asg = aws_sdk_autoscaling::Client::new(&config);
    asg.create_launch_configuration()
        .launch_configuration_name("shop-checkout-lc")
        .image_id("ami-12c6146b")
        .instance_type("t3.micro")
        .send()
        .await
        .context("Auto Scaling CreateLaunchConfiguration")?;
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(CHECKOUT_GROUP)
        .launch_configuration_name("shop-checkout-lc")
        .min_size(2)
        .max_size(4)
        .desired_capacity(2)
        .set_availability_zones(Some(vec!["us-east-1a".into(), "us-east-1b".into()]))
        .send()
        .await
        .context("Auto Scaling CreateAutoScalingGroup")?;
    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(CHECKOUT_GROUP)
        .send()
        .await
        .context("Auto Scaling DescribeAutoScalingGroups")?;
    let instances: Vec<String> = groups
        .auto_scaling_groups()
        .first()
        .map(|g| {
            g.instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();

    // The target group lives in the default VPC. The EC2 SDK crate is a very large build, so
    // the one EC2 call needed goes over moto's Query API directly.
    let vpcs = ec2_query(moto, "DescribeVpcs").await?;
    let vpc = xml_values(&vpcs, "vpcId")
        .into_iter()
        .next()
        .context("moto has no default VPC")?;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let tg = elb
        .create_target_group()
        .name(CHECKOUT_GROUP)
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .send()
        .await
        .context("ELBv2 CreateTargetGroup")?;
    let tg_arn = tg
        .target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .context("CreateTargetGroup answered without an ARN")?
        .to_owned();
    elb.register_targets()
        .target_group_arn(&tg_arn)
        .set_targets(Some(
            instances
                .iter()
                .map(|i| {
                    aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                        .id(i)
                        .port(8080)
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .context("ELBv2 RegisterTargets")?;
    Ok(ShopResources {
        topic_arn,
        instances,
    })
}

async fn ec2_query(moto: &Moto, action: &str) -> anyhow::Result<String> {
    reqwest::Client::new()
        .post(&moto.endpoint)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261122/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("Action={action}&Version=2016-11-15"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("EC2 {action}"))?
        .text()
        .await
        .with_context(|| format!("EC2 {action}"))
}

/// Every `<tag>value</tag>` in an XML text.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}
