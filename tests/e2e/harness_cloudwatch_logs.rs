//! The harness itself: moto starts on a free port, answers the real CloudWatch Logs protocol
//! through the AWS SDK for Rust, and two servers run side by side without clashing.

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use vigil_test_support::Moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_event_round_trips_through_moto() {
    let moto = Moto::start();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);

    logs.create_log_group()
        .log_group_name("/shop/test/checkout")
        .send()
        .await
        .expect("create group");
    logs.create_log_stream()
        .log_group_name("/shop/test/checkout")
        .log_stream_name("i-0123456789")
        .send()
        .await
        .expect("create stream");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    logs.put_log_events()
        .log_group_name("/shop/test/checkout")
        .log_stream_name("i-0123456789")
        .log_events(
            InputLogEvent::builder()
                .timestamp(now)
                .message("order 42 paid")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("put events");

    let got = logs
        .get_log_events()
        .log_group_name("/shop/test/checkout")
        .log_stream_name("i-0123456789")
        .start_from_head(true)
        .send()
        .await
        .expect("get events");
    let events = got.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message(), Some("order 42 paid"));
    assert_eq!(events[0].timestamp(), Some(now));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_are_isolated_and_reset_clears_state() {
    let a = Moto::start();
    let b = Moto::start();
    assert_ne!(a.endpoint, b.endpoint);
    let la = aws_sdk_cloudwatchlogs::Client::new(&a.sdk_config().await);
    let lb = aws_sdk_cloudwatchlogs::Client::new(&b.sdk_config().await);
    la.create_log_group()
        .log_group_name("only-in-a")
        .send()
        .await
        .unwrap();

    let names =
        |out: aws_sdk_cloudwatchlogs::operation::describe_log_groups::DescribeLogGroupsOutput| {
            out.log_groups()
                .iter()
                .filter_map(|g| g.log_group_name().map(str::to_owned))
                .collect::<Vec<_>>()
        };
    assert_eq!(
        names(la.describe_log_groups().send().await.unwrap()),
        ["only-in-a"]
    );
    assert!(names(lb.describe_log_groups().send().await.unwrap()).is_empty());

    a.reset();
    assert!(names(la.describe_log_groups().send().await.unwrap()).is_empty());
}
