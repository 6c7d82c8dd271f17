//! One test's world: its own moto account (seeded), its own SQLite database, its own Slack
//! stand-in, and the real bot process parts running in this test's runtime on port 0. Slack's
//! requests reach the bot over the test's `Transport`: signed HTTP posts, or envelopes over the
//! Socket Mode connections the bot opened to the stand-in.
//!
//! The bot signs its AWS calls with its own key, and the emulator holds them to the module's
//! bot policy (`crate::iam`), as AWS would; it is configured as the module's outputs say: the
//! seeded bastion security group and permissions boundary. A test fails when it ends if the
//! policy refused any of the bot's calls, naming them.

use crate::seed::{aws_for, bot_aws_for, seed, Seeded};
use crate::signed::{command_body_with_trigger, command_payload, now, post_signed_as, SIGNING_SECRET};
use crate::slack::SlackStandIn;
use bot::app::RunningApp;
use bot::config::{parse_file, Config, Secret};
use std::path::PathBuf;
use worker::aws::Aws;
use worker::ledger::Ledger;

/// How Slack's requests reach the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Signed POSTs to its listener.
    Http,
    /// Envelopes over the WebSocket connections it opened (no listener, no signing secret).
    Socket,
}

/// Which database holds the test's ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file in the test's directory (the default).
    Sqlite,
    /// A database of its own on the harness's PostgreSQL server (`crate::postgres`).
    Postgres,
}

tokio::task_local! {
    /// The ledger the tests started in this task use (`on_postgres`); SQLite when unset.
    static LEDGER_DB: Db;
}

/// Runs `test` with every `TestApp` it starts on a PostgreSQL ledger.
pub async fn on_postgres<F: std::future::Future>(test: F) -> F::Output {
    LEDGER_DB.scope(Db::Postgres, test).await
}

/// The ledger the current test runs on.
pub fn test_db() -> Db {
    LEDGER_DB.try_with(|db| *db).unwrap_or(Db::Sqlite)
}

/// A new, empty ledger's URL for one test: a file in `dir`, or a database of its own.
pub async fn new_ledger_url(dir: &TempDir) -> String {
    match test_db() {
        Db::Sqlite => format!("sqlite://{}/ledger.db", dir.0.display()),
        Db::Postgres => crate::postgres::new_database().await,
    }
}

/// Slack's content type for slash commands and interactions.
const FORM: &str = "application/x-www-form-urlencoded";

pub struct TestApp {
    pub app: Option<RunningApp>,
    /// The bot's HTTP listener for Slack (empty in Socket Mode, which has none).
    pub url: String,
    pub transport: Transport,
    /// The operators' listener (`/metrics`, `/readyz`).
    pub ops_url: String,
    pub ledger: Ledger,
    pub slack: SlackStandIn,
    /// The harness's clients: seeding, planting and inspecting, never held to the bot's policy.
    pub aws: Aws,
    /// The bot's clients (signed with the bot's key, held to the bot's policy).
    pub bot_aws: Aws,
    pub account: String,
    pub seeded: Seeded,
    pub config: Config,
    pub dir: TempDir,
    responses: std::sync::atomic::AtomicU32,
    /// AWS calls made while seeding, which are not the bot's.
    seed_calls: usize,
    /// Whether the bot's refused calls were checked already (by `stop`).
    denials_checked: bool,
    /// Further replicas on the same ledger, account and Slack stand-in (`start_replica`).
    pub replicas: Vec<RunningApp>,
    /// In Socket Mode, each running process's app-level token (the first one's, then the
    /// replicas' in order), so that a killed one's can be revoked in the stand-in.
    app_tokens: std::collections::VecDeque<String>,
}

/// A directory removed when the test ends.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("fargate-connect-test-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The config a test runs with; `extra` is appended TOML (later keys win per section).
pub fn test_config(db_url: &str, slack_api: &str, extra_time_box: &str) -> Config {
    test_config_with(db_url, slack_api, extra_time_box, OPEN_POLICY)
}

/// Every service of the default cluster, for everyone, without approval.
pub const OPEN_POLICY: &str = "[policy]\n[[policy.services]]\nname = \"*\"\nallow = [\"*\"]\n";

/// The test config with `extra` TOML appended after `[worker]` (a `[policy]` section, say).
pub fn test_config_with(db_url: &str, slack_api: &str, extra_time_box: &str, extra: &str) -> Config {
    let text = format!(
        r#"
[server]
bind = "127.0.0.1:0"
[database]
url = "{db_url}"
[slack]
api_base_url = "{slack_api}"
response_url_hosts = ["127.0.0.1"]
[aws]
region = "eu-west-1"
cluster = "prod"
instance_types = ["t3.micro", "t3a.micro"]
[time_box]
{extra_time_box}
[limits]
live_bastions = 1000
open_per_person = 100
per_person_per_hour = 10000
[worker]
poll_interval_ms = 50
lease_ms = 5000
ready_poll_ms = 50
revoke_settle_ms = 200
ready_timeout = "30s"
{extra}
"#
    );
    let file = parse_file(&text, "test.toml").expect("test config parses");
    Config::from_parts(file, Secret::new(SIGNING_SECRET), Secret::new("xoxb-test-token")).expect("test config is valid")
}

impl TestApp {
    /// Time box: default 2s, min 1s, max 1h.
    pub async fn start() -> Self {
        Self::start_with("default = \"2s\"\nmin = \"1s\"\nmax = \"1h\"").await
    }

    pub async fn start_with(time_box: &str) -> Self {
        Self::start_custom(time_box, |_| {}).await
    }

    /// Starts with the config changed by `adjust` first.
    pub async fn start_custom(time_box: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(time_box, OPEN_POLICY, adjust).await
    }

    /// Starts with `policy` (a `[policy]` section in TOML) instead of the open one.
    pub async fn start_with_policy(time_box: &str, policy: &str) -> Self {
        Self::start_full(time_box, policy, |_| {}).await
    }

    pub async fn start_full(time_box: &str, policy: &str, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_over(Transport::Http, time_box, policy, adjust).await
    }

    /// Starts with the policy given, Slack's requests coming over `transport`.
    pub async fn start_over(
        transport: Transport,
        time_box: &str,
        policy: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        bot::install_crypto_provider();
        let account = crate::moto::new_account();
        let aws = aws_for(&account);
        let seeded = seed(&aws).await;
        let bot_aws = bot_aws_for(&account);
        crate::iam::enforce_bot_policy(&account, &seeded.bastion_security_group_id).await;
        let seed_calls = crate::moto::calls(&account).await.len();
        let slack = SlackStandIn::start().await;
        let dir = TempDir::new();
        let db_url = new_ledger_url(&dir).await;
        let mut config = test_config_with(&db_url, &slack.api_base(), time_box, policy);
        // As the module's outputs configure it: its group (the policy lets the bot launch into
        // no other, nor create one) and its boundary (the bot may create roles only with it).
        config.aws.security_group_id = Some(seeded.bastion_security_group_id.clone());
        config.aws.permissions_boundary_arn = Some(seeded.permissions_boundary_arn.clone());
        if transport == Transport::Socket {
            config.slack.mode = bot::config::SlackMode::Socket;
            config.signing_secret = None;
            config.app_token = Some(Secret::new(APP_TOKEN));
            config.slack.socket_retry_after = worker::duration::HumanDuration::from_secs(1);
        }
        adjust(&mut config);
        let mut app_tokens = std::collections::VecDeque::new();
        let app = spawn(&config, &bot_aws, &slack, &mut app_tokens).await;
        let url = app.addr.map(|addr| format!("http://{addr}")).unwrap_or_default();
        let ops_url = format!("http://{}", app.ops_addr);
        let ledger = app.ledger.clone();
        Self {
            app: Some(app),
            url,
            transport,
            ops_url,
            ledger,
            slack,
            aws,
            bot_aws,
            account,
            seeded,
            config,
            dir,
            responses: 0.into(),
            seed_calls,
            denials_checked: false,
            replicas: Vec::new(),
            app_tokens,
        }
    }

    /// Sends `/fargate <text>` as `user` (signed now, or as an envelope); returns the status and
    /// the reply's JSON (`Null` when there is none).
    pub async fn command(&self, user: &str, text: &str) -> (u16, serde_json::Value) {
        let n = self.responses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let response_url = self.slack.response_url(n);
        let trigger = "13345224609.738474920.8088930838d88f008e0";
        let body = command_body_with_trigger(text, user, &response_url, trigger);
        let payload = command_payload(text, user, &response_url, trigger);
        self.send("/slack/commands", body, FORM, "slash_commands", payload).await
    }

    /// Clicks button `action` (approve, deny, extend, end) for `request_id` as `user`; returns
    /// the HTTP status (200 for an acknowledged envelope).
    pub async fn click(&self, user: &str, action: &str, request_id: &str) -> u16 {
        let n = self.responses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.interact(&crate::signed::click_payload(user, action, request_id, &self.slack.response_url(n))).await.0
    }

    /// Sends an interaction's payload (a click, a form submission, a shortcut) over the test's
    /// transport; returns the status and the acknowledgement's body (`Null` when empty).
    pub async fn interact(&self, payload: &serde_json::Value) -> (u16, serde_json::Value) {
        let body = crate::signed::interaction_body(payload);
        self.send("/slack/interactions", body, FORM, "interactive", payload.clone()).await
    }

    /// Sends an Events API envelope (`event_callback`, …) over the test's transport; returns
    /// the status and the answer's body (`Null` when empty).
    pub async fn event(&self, envelope: &serde_json::Value) -> (u16, serde_json::Value) {
        self.send("/slack/events", envelope.to_string(), "application/json", "events_api", envelope.clone()).await
    }

    /// One of Slack's requests over the test's transport: `body` signed now and posted to
    /// `path` as `content_type`, or `payload` in a Socket Mode envelope of `kind`. Returns the
    /// status (200 for an acknowledged envelope) and the answer's JSON (`Null` when none).
    async fn send(
        &self,
        path: &str,
        body: String,
        content_type: &str,
        kind: &str,
        payload: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        match self.transport {
            Transport::Http => {
                let url = format!("{}{path}", self.url);
                let response = post_signed_as(&url, &body, SIGNING_SECRET, &now().to_string(), content_type).await;
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(serde_json::Value::Null))
            }
            Transport::Socket => (200, self.slack.socket.send(kind, payload).await["payload"].clone()),
        }
    }

    /// The text of the reply to `/fargate <text>` as `user`.
    pub async fn reply(&self, user: &str, text: &str) -> String {
        let (status, json) = self.command(user, text).await;
        assert_eq!(status, 200, "{json}");
        json["text"].as_str().unwrap_or_default().to_string()
    }

    /// Waits until the requester of `id` was told it is ready (the direct message delivered):
    /// its time box starts then, so its expiry is final only from then on.
    pub async fn wait_until_told(&self, id: &str) -> worker::ledger::Request {
        crate::wait_for(
            &format!("{id}'s requester to be told it is ready"),
            std::time::Duration::from_secs(60),
            || async {
                let request = self.ledger.get(id).await.unwrap();
                request.told_at.is_some().then_some(request)
            },
        )
        .await
    }

    /// Waits until `id` is in `state`.
    pub async fn wait_for_state(&self, id: &str, state: worker::state::RequestState, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.ledger.get(id).await.unwrap().state();
            if now == state {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let kinds = self.audit_kinds(id).await;
                type JobRow = (String, i64, Option<String>, Option<i64>, i64);
                let jobs: Vec<JobRow> = sqlx::query_as(
                    "SELECT kind, attempts, last_error, lease_until - $2, run_at - $2 FROM jobs WHERE request_id = $1",
                )
                .bind(id)
                .bind(worker::ledger::now_ms())
                .fetch_all(self.ledger.pool())
                .await
                .unwrap_or_default();
                panic!("{id} is {now}, not {state}, after {timeout:?}; audit {kinds:?}; jobs (kind, attempts, error, lease left ms, due in ms) {jobs:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The AWS calls the bot made (seen at the emulator), as (service, action), in order.
    pub async fn bot_calls(&self) -> Vec<(String, String)> {
        crate::moto::calls(&self.account).await.split_off(self.seed_calls)
    }

    /// How many times the bot called `action`.
    pub async fn calls_of(&self, action: &str) -> usize {
        self.bot_calls().await.iter().filter(|(_, a)| a == action).count()
    }

    /// How many instances the bot launched: `RunInstances` calls that EC2 answered with success
    /// (a call refused while a new instance profile propagates launches nothing).
    pub async fn launches(&self) -> usize {
        crate::moto::calls_detailed(&self.account)
            .await
            .split_off(self.seed_calls)
            .iter()
            .filter(|c| c["action"] == "RunInstances" && c["status"] == 200)
            .count()
    }

    /// Launches an instance with `tags` behind the bot's back (what a crash, a bug or a person
    /// may leave), for the reaper's tests. Returns its id.
    pub async fn plant_instance(&self, tags: &[(&str, &str)]) -> String {
        let ami = self
            .aws
            .ssm
            .get_parameter()
            .name("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
            .send()
            .await
            .unwrap()
            .parameter()
            .unwrap()
            .value()
            .unwrap()
            .to_string();
        let mut tag_spec =
            aws_sdk_ec2::types::TagSpecification::builder().resource_type(aws_sdk_ec2::types::ResourceType::Instance);
        for (k, v) in tags {
            tag_spec = tag_spec.tags(aws_sdk_ec2::types::Tag::builder().key(*k).value(*v).build());
        }
        let out = self
            .aws
            .ec2
            .run_instances()
            .image_id(ami)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .tag_specifications(tag_spec.build())
            .send()
            .await
            .unwrap();
        out.instances()[0].instance_id().unwrap().to_string()
    }

    /// The instance's state name (`running`, `terminated`, …), or `None` while EC2 does not show it.
    pub async fn instance_state(&self, instance_id: &str) -> Option<String> {
        let out = self.aws.ec2.describe_instances().instance_ids(instance_id).send().await.ok()?;
        out.reservations().iter().flat_map(|r| r.instances()).find_map(|i| i.state()?.name()).map(|n| n.as_str().into())
    }

    /// Every instance ever launched for the request (any state), found by its tag.
    pub async fn instances_of(&self, request_id: &str) -> Vec<aws_sdk_ec2::types::Instance> {
        let tag = aws_sdk_ec2::types::Filter::builder()
            .name(format!("tag:{}", worker::aws::tags::REQUEST_ID))
            .values(request_id)
            .build();
        let out = self.aws.ec2.describe_instances().filters(tag).send().await.unwrap();
        out.reservations().iter().flat_map(|r| r.instances()).cloned().collect()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(self.ledger.pool()).await.unwrap()
    }

    /// Stops the process abruptly, like a crash: in-flight jobs keep their leases.
    pub fn crash(&mut self) {
        if let Some(app) = self.app.take() {
            app.abort();
            // A dead process's connections close with it and it opens no more (its socket
            // tasks here would live on and reconnect).
            if let Some(token) = self.app_tokens.pop_front() {
                self.slack.socket.revoke(&token);
            }
        }
    }

    /// Starts the process again on the same database, account and Slack stand-in.
    pub async fn restart(&mut self) {
        self.crash();
        // A dead process's SQLite locks go with it; here the crashed parts live on in this
        // process, so close their connections (rolling back whatever they had open) as the
        // OS would.
        self.ledger.pool().close().await;
        let mut token = std::collections::VecDeque::new();
        let app = spawn(&self.config, &self.bot_aws, &self.slack, &mut token).await;
        if let Some(token) = token.pop_front() {
            self.app_tokens.push_front(token);
        }
        self.url = app.addr.map(|addr| format!("http://{addr}")).unwrap_or_default();
        self.ops_url = format!("http://{}", app.ops_addr);
        self.ledger = app.ledger.clone();
        self.app = Some(app);
    }

    /// Starts another replica of the bot on the same config (a PostgreSQL ledger: replicas of
    /// one SQLite file are not a thing), serving and running the loops beside the first.
    pub async fn start_replica(&mut self) {
        assert_eq!(test_db(), Db::Postgres, "replicas share a PostgreSQL ledger");
        let app = spawn(&self.config, &self.bot_aws, &self.slack, &mut self.app_tokens).await;
        self.replicas.push(app);
    }

    /// Kills the first replica abruptly, as `kill -9` would (its tasks stop where they are and
    /// its database connections close, ending its transactions and advisory locks, but its
    /// job leases stay), and carries on with the next: `url`, `ops_url` and `ledger` are then
    /// the survivor's.
    pub async fn kill_and_fail_over(&mut self) {
        assert!(!self.replicas.is_empty(), "start_replica first");
        self.crash();
        self.ledger.pool().close().await;
        let survivor = self.replicas.remove(0);
        self.url = survivor.addr.map(|addr| format!("http://{addr}")).unwrap_or_default();
        self.ops_url = format!("http://{}", survivor.ops_addr);
        self.ledger = survivor.ledger.clone();
        self.app = Some(survivor);
    }

    /// The audit kinds of a request, in order.
    pub async fn audit_kinds(&self, id: &str) -> Vec<String> {
        self.ledger.audit_for(id).await.unwrap().into_iter().map(|e| e.kind).collect()
    }

    /// Waits until the request's audit history has `kind`.
    pub async fn wait_for_audit(&self, id: &str, kind: &str, timeout: std::time::Duration) {
        crate::wait_for(&format!("audit event {kind} of {id}"), timeout, || async {
            self.audit_kinds(id).await.iter().any(|k| k == kind).then_some(())
        })
        .await
    }

    /// Sends `/fargate connect …` and returns the request id from the reply.
    pub async fn connect(&self, user: &str, text: &str) -> String {
        let (status, reply) = self.command(user, text).await;
        assert_eq!(status, 200);
        let text = reply["text"].as_str().unwrap_or_default();
        let start = text.find("fc-").unwrap_or_else(|| panic!("no request id in {text}"));
        text[start..start + 11].to_string()
    }

    /// Shuts the bot down, then fails the test if the bot's policy refused any of its calls.
    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        for replica in std::mem::take(&mut self.replicas) {
            replica.shutdown().await;
        }
        self.denials_checked = true;
        crate::iam::assert_nothing_denied(&self.account).await;
    }
}

impl Drop for TestApp {
    /// A test that ends without `stop` is checked here: the policy refused none of the bot's
    /// calls. A test that failed otherwise (a wait that timed out, say) shows the refusals too:
    /// they are often why.
    fn drop(&mut self) {
        if self.denials_checked {
            return;
        }
        self.denials_checked = true;
        if let Some(report) = crate::iam::denial_report_blocking(&self.account) {
            if std::thread::panicking() {
                eprintln!("{report}");
            } else {
                panic!("{report}");
            }
        }
    }
}

/// The app-level token the tests' Socket Mode bots use, with a number per process after it.
pub const APP_TOKEN: &str = "xapp-1-A0001-test";

/// Starts the bot's parts for `config`: with a listener for Slack in HTTP mode; in Socket Mode
/// without one, with a token of its own (pushed onto `tokens`), returning once all its
/// connections to the stand-in are open.
async fn spawn(
    config: &Config,
    bot_aws: &Aws,
    slack: &SlackStandIn,
    tokens: &mut std::collections::VecDeque<String>,
) -> RunningApp {
    static PROCESSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let socket = config.slack.mode == bot::config::SlackMode::Socket;
    let mut config = config.clone();
    if socket {
        let n = PROCESSES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let token = format!("{APP_TOKEN}-{n}");
        config.app_token = Some(Secret::new(&token));
        tokens.push_back(token);
    }
    let config = &config;
    let listeners = if socket {
        bot::app::Listeners::ops_only().await.unwrap()
    } else {
        bot::app::Listeners::loopback().await.unwrap()
    };
    let before = slack.socket.links().len();
    let app = bot::app::spawn(config.clone(), bot_aws.clone(), listeners).await.expect("the app starts");
    if socket {
        assert!(app.addr.is_none(), "Socket Mode listens for nothing from Slack");
        let wanted = before + config.slack.socket_connections as usize;
        slack.socket.wait_for_links(wanted, std::time::Duration::from_secs(30)).await;
    }
    app
}
