//! The two jobs: provision (preflight → IAM → spot → SSM online → ready) and teardown (revoke
//! the role → terminate → end sessions → after IAM settles, sweep again → delete profile and
//! role → ended). Each step is idempotent and looks
//! at AWS before acting, so a job that is retried, or picked up again after a crash, continues
//! where the last one stopped and never launches twice.

use crate::aws::ec2::{self, LaunchError, LaunchSpec, Subnet};
use crate::aws::ecs::{self, Wanted};
use crate::aws::exec_settings;
use crate::aws::iam::{self, RoleSpec};
use crate::aws::partition::Partition;
use crate::aws::perimeter::Perimeter;
use crate::aws::revoke;
use crate::aws::ssm;
use crate::aws::user_data::{self, BastionScript, READY_PROBE};
use crate::aws::{Aws, AwsError};
use crate::config::{AwsSettings, WorkerSettings};
use crate::events::{Check, LaunchInfo, Outcome};
use crate::ledger::{now_ms, Job, Ledger, LedgerError, Request};
use crate::state::RequestState;
use crate::tag_watch;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify};

/// How a job step failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt later (throttling, timeouts, a dead connection…).
    #[error("{0}")]
    Retry(String),
    /// Will not get better by waiting; the text is shown to the person.
    #[error("{0}")]
    Fatal(String),
    /// Preflight found something to fix; nothing was spent.
    #[error("{reason}")]
    Refused { reason: String, checks: Vec<Check> },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<AwsError> for JobError {
    fn from(e: AwsError) -> Self {
        if e.retryable {
            JobError::Retry(e.to_string())
        } else {
            JobError::Fatal(e.to_string())
        }
    }
}

/// Where bastions go, looked up once per process.
#[derive(Default)]
struct PlacementCache {
    placements: Option<Vec<(Subnet, String)>>,
    /// Instance type → AMI of its architecture.
    amis: Option<Vec<(String, String)>>,
}

pub struct Provisioner {
    pub ledger: Ledger,
    pub aws: Aws,
    pub settings: AwsSettings,
    pub worker: WorkerSettings,
    cache: Mutex<PlacementCache>,
    preflight: ecs::PreflightCache,
    spot_prices: Mutex<HashMap<(String, String), (std::time::Instant, f64)>>,
    /// Woken whenever a job may have written to the outbox, so notices go out at once.
    pub notices: Arc<Notify>,
}

/// What a job's run left to do.
#[derive(Debug)]
pub enum Step {
    Done,
    /// Waiting for something outside (the bastion becoming ready, an extension confirmed):
    /// run again after `after`, from `progress`, without holding a worker slot meanwhile.
    Later {
        after: Duration,
        progress: String,
    },
}

/// How far a bastion has got towards ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Readiness {
    /// Launched; EC2 may not even know the id yet.
    Launching,
    /// Running; its SSM agent has not registered yet.
    Running,
    /// Online in SSM; the readiness probe (its command id, once sent) has not passed yet.
    Online(Option<String>),
    /// `connect` and the plugin are in place.
    Usable,
}

/// A provision job's progress while its bastion becomes ready: kept in the job's row between
/// two looks (`Step::Later`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    stage: Readiness,
    /// When the bastion was launched (UTC ms); `worker.ready_timeout` counts from here.
    since: i64,
    /// The pause before the next look; doubles up to 10 s.
    delay_ms: u64,
}

/// An extension's progress: the command that moves the bastion's deadline, until it confirms.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Moving {
    command_id: String,
    deadline: i64,
    /// When to stop waiting for the bastion's answer (UTC ms).
    give_up_at: i64,
    delay_ms: u64,
}

impl Readiness {
    /// How far along: a look that moves this up is progress, whatever the clock says.
    fn rank(&self) -> u8 {
        match self {
            Readiness::Launching => 0,
            Readiness::Running => 1,
            Readiness::Online(_) => 2,
            Readiness::Usable => 3,
        }
    }

    fn waiting_for(&self) -> &'static str {
        match self {
            Readiness::Launching => "running",
            Readiness::Running => "online in Session Manager",
            Readiness::Online(_) | Readiness::Usable => "set up (connect and the Session Manager plugin)",
        }
    }
}

/// How long an extension waits for the bastion to confirm its new deadline.
const COMMAND_WAIT: Duration = Duration::from_secs(90);

/// Spot prices move slowly; an estimate an hour old is good enough for the card.
const SPOT_PRICE_TTL: Duration = Duration::from_secs(3600);

/// `arn:aws:ecs:r:a:task/cluster/id` → `arn:aws:ecs:r:a:cluster/cluster`.
pub fn cluster_arn_of_task(task_arn: &str) -> Option<String> {
    let (prefix, resource) = task_arn.split_once(":task/")?;
    let cluster = resource.split('/').next()?;
    Some(format!("{prefix}:cluster/{cluster}"))
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

impl Provisioner {
    pub fn new(ledger: Ledger, aws: Aws, settings: AwsSettings, worker: WorkerSettings) -> Self {
        Self {
            ledger,
            aws,
            settings,
            worker,
            cache: Mutex::new(PlacementCache::default()),
            preflight: ecs::PreflightCache::default(),
            spot_prices: Mutex::default(),
            notices: Arc::default(),
        }
    }

    /// Shares `notices` with whoever delivers the outbox.
    pub fn with_notices(mut self, notices: Arc<Notify>) -> Self {
        self.notices = notices;
        self
    }

    /// One run of a provision job. Its `attempts` count from 1 (a first attempt cannot have
    /// launched anything yet, so it skips the lookup by tag); with `progress`, the bastion
    /// exists and this run only looks whether it is ready yet. Before each step that creates
    /// something (the role, the instance) and after the launch, the request's state is read
    /// again: ended meanwhile, what exists is handed to teardown.
    pub async fn provision(&self, job: &Job) -> Result<Step, JobError> {
        let request_id = job.request_id.as_str();
        let attempt = job.attempts;
        let mut request = self.ledger.get(request_id).await?;
        match request.state() {
            RequestState::Requested | RequestState::Approved => {
                let from = request.state();
                let detail = json!({"service": request.service, "cluster": request.cluster});
                if !self.ledger.transition(request_id, from, RequestState::Provisioning, "provisioning", detail).await?
                {
                    return Ok(Step::Done); // someone else moved it
                }
                self.notices.notify_one(); // the requester's card is queued
            }
            RequestState::Provisioning => {}
            state => {
                // Ended (or failed) after an earlier run of this job created something: its
                // teardown may have looked before that, so ask for one more.
                let earlier_run = attempt > 1 || job.progress.is_some();
                if (earlier_run && !state.is_open()) || state == RequestState::Ending {
                    self.ledger.ensure_teardown(request_id).await?;
                }
                return Ok(Step::Done); // cancelled, failed or already further along
            }
        }

        // A later look while the bastion becomes ready.
        if let (Some(progress), Some(instance_id)) = (job.progress.as_deref(), request.instance_id.clone()) {
            let waiting = serde_json::from_str(progress).unwrap_or_else(|e| {
                tracing::warn!(request_id, error = %e, "unreadable readiness progress; starting the wait again");
                self.start_waiting(&request)
            });
            return self.ready_pass(request_id, &instance_id, waiting).await;
        }

        // 1. Preflight, before any money is spent.
        if request.task_arn.is_none() {
            let wanted = Wanted {
                cluster: &request.cluster,
                service: &request.service,
                container: request.container.as_deref(),
                task: request.requested_task.as_deref(),
            };
            let clients =
                ecs::Clients { ecs: &self.aws.ecs, iam: &self.aws.iam, ssm: &self.aws.ssm, settings: &self.settings };
            let report = ecs::preflight(&clients, &self.preflight, &wanted).await?;
            let Some(target) = report.target.clone().filter(|_| !report.failed()) else {
                return Err(JobError::Refused { reason: report.reason(), checks: report.checks });
            };
            let warnings: Vec<Check> = report.checks.iter().filter(|c| c.outcome == Outcome::Warn).cloned().collect();
            let detail = json!({"task_arn": target.task_arn, "container": target.container, "checks": report.checks});
            self.ledger.set_target(request_id, &target.task_arn, &target.container, &warnings, detail).await?;
            self.notices.notify_one(); // the card shows each step
            request = self.ledger.get(request_id).await?;
        }
        let task_arn = request.task_arn.clone().unwrap_or_default();
        let container = request.container.clone().unwrap_or_default();
        let cluster_arn = cluster_arn_of_task(&task_arn).unwrap_or_else(|| request.cluster.clone());

        // 2. The per-request role and instance profile; not for a request ended meanwhile
        // (its teardown may have run already and would miss a role created now).
        if !self.still_provisioning(request_id).await? {
            return Ok(Step::Done);
        }
        let exec_through_vpc_endpoint = self.exec_through_vpc_endpoint().await?;
        let profile_arn = iam::ensure_role(
            &self.aws.iam,
            &RoleSpec {
                request_id,
                requester: &request.requester_id,
                service: &request.service,
                cluster_arn: &cluster_arn,
                task_arn: &task_arn,
                container: &container,
                permissions_boundary: self.settings.permissions_boundary_arn.as_deref(),
                grants: Perimeter {
                    in_vpc: self.settings.credential_perimeter,
                    exec_through_vpc_endpoint,
                    egress_cidrs: &self.settings.bastion_egress_cidrs,
                    vpc_endpoint_ids: &self.settings.allowed_vpc_endpoint_ids,
                }
                .statements()
                .into_iter()
                .chain(exec_settings::grant_statements(&self.settings, &cluster_arn))
                .collect(),
            },
        )
        .await?;
        if request.role_name.is_none() {
            let name = iam::role_name(request_id);
            let detail = json!({"role": name, "instance_profile": profile_arn});
            self.ledger.set_role(request_id, &name, detail).await?;
            self.notices.notify_one();
        }

        // 3. The bastion: found by tag if an earlier attempt launched it, else launched now.
        let earlier = if attempt > 1 || request.instance_id.is_some() {
            ec2::find_by_request(&self.aws.ec2, request_id).await?
        } else {
            None
        };
        let bastion = match earlier {
            Some(found) => {
                if request.instance_id.as_deref() != Some(found.instance_id.as_str()) {
                    let detail = json!({"instance_id": found.instance_id, "instance_type": found.instance_type, "found_by_tag": true});
                    let launch = self.launch_info(&found, request.ttl_secs).await;
                    self.ledger
                        .set_instance(request_id, &found.instance_id, &launch, "instance_launched", detail)
                        .await?;
                }
                found
            }
            None => match &request.instance_id {
                // Launched by an earlier attempt but not listed by tag: a lookup by filter may
                // leave out an instance EC2 does not show yet (eventual consistency), so ask for
                // it by id; only a stopped one is gone.
                Some(known) => match ec2::instance_state(&self.aws.ec2, known).await?.as_deref() {
                    None | Some("pending") | Some("running") => ec2::Bastion {
                        instance_id: known.clone(),
                        instance_type: request.instance_type.clone().unwrap_or_default(),
                        ..Default::default()
                    },
                    Some(state) => {
                        return Err(JobError::Fatal(format!("the bastion {known} is {state} before it was ready")))
                    }
                },
                None => {
                    // Nothing launched for a request ended meanwhile; the role made above may
                    // postdate its teardown, so tear down once more.
                    if !self.still_provisioning(request_id).await? {
                        self.ledger.ensure_teardown(request_id).await?;
                        return Ok(Step::Done);
                    }
                    self.launch(&request, &task_arn, &container, &profile_arn).await?
                }
            },
        };

        // Ended or cancelled while we were creating things: hand what exists to teardown
        // (which may already have run and missed the instance launched just now).
        if !self.still_provisioning(request_id).await? {
            self.ledger.ensure_teardown(request_id).await?;
            return Ok(Step::Done);
        }

        // 4. Ready = running, online in SSM and usable, within a bound: a first look now, the
        // next ones as later runs of this job.
        let request = self.ledger.get(request_id).await?;
        self.ready_pass(request_id, &bastion.instance_id, self.start_waiting(&request)).await
    }

    async fn still_provisioning(&self, request_id: &str) -> Result<bool, JobError> {
        Ok(self.ledger.get(request_id).await?.state() == RequestState::Provisioning)
    }

    /// The wait for readiness, from its first look. It counts from the launch (so a retried
    /// job, which starts the wait again, is not given more time).
    fn start_waiting(&self, request: &Request) -> Waiting {
        Waiting {
            stage: Readiness::Launching,
            since: request.launched_at().unwrap_or_else(now_ms),
            delay_ms: self.worker.ready_poll_ms.max(10),
        }
    }

    async fn launch(
        &self,
        request: &Request,
        task_arn: &str,
        container: &str,
        profile_arn: &str,
    ) -> Result<ec2::Bastion, JobError> {
        let (placements, amis) = self.placements().await?;
        // The bastion's own deadline: the longest it can wait to be ready, plus its time box,
        // plus a grace. The bot normally ends it long before. Fixed by the first attempt, so a
        // retry sends EC2 the same user data and tags with the same ClientToken.
        let hard_stop_secs =
            self.worker.ready_timeout.as_secs() + request.ttl_secs as u64 + self.worker.shutdown_grace.as_secs();
        let hard_stop_ms = self.ledger.hard_stop(&request.id, now_ms() + hard_stop_secs as i64 * 1000).await?;
        let partition = Partition::of_arn(task_arn).unwrap_or_else(|| Partition::of_region(&self.aws.region));
        let plugin_url = match (&self.settings.session_manager_plugin_url, partition.plugin_url()) {
            (Some(configured), _) => configured.as_str(),
            (None, Some(aws)) => aws,
            (None, None) => {
                return Err(JobError::Fatal(format!(
                    "AWS publishes the Session Manager plugin nowhere a bastion in {} can reach: set \
                     aws.session_manager_plugin_url to a mirror",
                    partition.name()
                )))
            }
        };
        let script = BastionScript {
            request_id: &request.id,
            service: &request.service,
            region: &self.aws.region,
            cluster: &request.cluster,
            task_arn,
            container,
            deadline_epoch: user_data::deadline_secs(hard_stop_ms),
            plugin_url,
            run_as_user: self.settings.session_run_as_user.as_deref(),
            plugin_sha256: &self.settings.session_manager_plugin_sha256,
        }
        .render();
        let expires = rfc3339(hard_stop_ms);
        let spec = LaunchSpec {
            request_id: &request.id,
            requester: &request.requester_id,
            service: &request.service,
            expires_at: &expires,
            amis: &amis,
            instance_profile_arn: profile_arn,
            user_data: &script,
            instance_types: &self.settings.instance_types,
            placements: &placements,
            on_demand_fallback: self.settings.on_demand_fallback,
        };
        let bastion = ec2::launch(&self.aws.ec2, &spec).await.map_err(|e| match e {
            LaunchError::NoCapacity(last) => JobError::Fatal(format!(
                "no spot capacity for {} in any configured subnet{} ({last})",
                self.settings.instance_types.join(", "),
                if self.settings.on_demand_fallback { ", nor on-demand" } else { "" }
            )),
            LaunchError::Aws(aws) => JobError::from(aws),
        })?;
        let launch = self.launch_info(&bastion, request.ttl_secs).await;
        let ami = amis.iter().find(|(t, _)| *t == bastion.instance_type).map(|(_, a)| a.clone());
        let detail = json!({
            "instance_id": bastion.instance_id, "instance_type": bastion.instance_type,
            "spot": bastion.spot, "ami": ami, "subnet_id": bastion.subnet_id,
            "availability_zone": bastion.availability_zone, "shutdown_at": expires,
            "estimated_cost_usd": launch.estimated_cost_usd, "price_source": launch.price_source,
        });
        self.ledger.set_instance(&request.id, &bastion.instance_id, &launch, "instance_launched", detail).await?;
        self.notices.notify_one();
        Ok(bastion)
    }

    /// The spot price for the type in the zone, looked up at most once per `SPOT_PRICE_TTL`.
    async fn spot_price(&self, instance_type: &str, zone: &str) -> Result<Option<f64>, AwsError> {
        let key = (instance_type.to_string(), zone.to_string());
        if let Some((at, price)) = self.spot_prices.lock().await.get(&key) {
            if at.elapsed() < SPOT_PRICE_TTL {
                return Ok(Some(*price));
            }
        }
        let price = ec2::spot_price(&self.aws.ec2, instance_type, zone).await?;
        if let Some(price) = price {
            self.spot_prices.lock().await.insert(key, (std::time::Instant::now(), price));
        }
        Ok(price)
    }

    /// What was used and what the time box will roughly cost (best effort: a price lookup
    /// that fails leaves the estimate out).
    async fn launch_info(&self, bastion: &ec2::Bastion, ttl_secs: i64) -> LaunchInfo {
        let hours = ttl_secs as f64 / 3600.0;
        let (hourly, source) = if bastion.spot {
            match self.spot_price(&bastion.instance_type, &bastion.availability_zone).await {
                Ok(Some(price)) => (Some(price), Some("spot price history")),
                Ok(None) => (None, None),
                Err(e) => {
                    tracing::warn!(error = %e, "spot price lookup failed");
                    (None, None)
                }
            }
        } else {
            (ec2::on_demand_price(&bastion.instance_type), Some("on-demand list price (us-east-1)"))
        };
        LaunchInfo {
            instance_type: bastion.instance_type.clone(),
            spot: bastion.spot,
            subnet_id: bastion.subnet_id.clone(),
            availability_zone: bastion.availability_zone.clone(),
            estimated_cost_usd: hourly.map(|h| (h * hours * 10_000.0).round() / 10_000.0),
            price_source: hourly.and(source).map(str::to_string),
            launched_at: Some(now_ms()),
        }
    }

    /// Whether the role gets the exec-through-an-endpoint rule: as configured, or (unset) where
    /// an `ecs` endpoint serves every VPC bastions launch into. Demanded and missing: refused,
    /// as the rule would refuse every `connect` (AccessDenied).
    async fn exec_through_vpc_endpoint(&self) -> Result<bool, JobError> {
        if self.settings.exec_through_vpc_endpoint == Some(false) {
            return Ok(false);
        }
        let (placements, _) = self.placements().await?;
        let mut vpcs: Vec<&str> = placements.iter().map(|(s, _)| s.vpc_id.as_str()).collect();
        vpcs.sort_unstable();
        vpcs.dedup();
        let mut missing = Vec::new();
        for vpc in vpcs {
            if !ec2::ecs_endpoint_serves(&self.aws.ec2, vpc, &self.aws.region).await? {
                missing.push(vpc.to_string());
            }
        }
        if missing.is_empty() {
            return Ok(true);
        }
        if self.settings.exec_through_vpc_endpoint == Some(true) {
            let detail = format!(
                "aws.exec_through_vpc_endpoint is true, but no ecs interface endpoint with private DNS serves {}: \
                 every connect would be refused (AccessDenied on ecs:ExecuteCommand)",
                missing.join(", ")
            );
            let check = Check {
                name: "ecs endpoint".into(),
                outcome: Outcome::Fail,
                detail: detail.clone(),
                fix: Some(
                    "make the endpoint (the module's create_vpc_endpoints), or unset aws.exec_through_vpc_endpoint"
                        .into(),
                ),
            };
            return Err(JobError::Refused { reason: detail, checks: vec![check] });
        }
        Ok(false)
    }

    async fn placements(&self) -> Result<(Vec<(Subnet, String)>, Vec<(String, String)>), JobError> {
        let mut cache = self.cache.lock().await;
        if cache.placements.is_none() {
            let subnets = ec2::subnets(&self.aws.ec2, &self.settings.subnets).await?;
            let mut groups: HashMap<String, String> = HashMap::new();
            let mut placements = Vec::with_capacity(subnets.len());
            for subnet in subnets {
                let group = match (&self.settings.security_group_id, groups.get(&subnet.vpc_id)) {
                    (Some(configured), _) if !configured.is_empty() => configured.clone(),
                    (_, Some(found)) => found.clone(),
                    _ => {
                        let id = ec2::ensure_security_group(&self.aws.ec2, &subnet.vpc_id).await?;
                        groups.insert(subnet.vpc_id.clone(), id.clone());
                        id
                    }
                };
                placements.push((subnet, group));
            }
            cache.placements = Some(placements);
        }
        if cache.amis.is_none() {
            let mut by_arch: HashMap<String, String> = HashMap::new();
            let mut amis = Vec::new();
            for instance_type in &self.settings.instance_types {
                let arch = ec2::architecture(&self.aws.ec2, instance_type).await?;
                let ami = match by_arch.get(&arch) {
                    Some(ami) => ami.clone(),
                    None => {
                        let parameter = self.settings.ami_parameter.replace("{arch}", &arch);
                        let ami = ssm::ami_from_parameter(&self.aws.ssm, &parameter).await?;
                        by_arch.insert(arch, ami.clone());
                        ami
                    }
                };
                amis.push((instance_type.clone(), ami));
            }
            cache.amis = Some(amis);
        }
        Ok((cache.placements.clone().unwrap_or_default(), cache.amis.clone().unwrap_or_default()))
    }

    /// One look at the bastion. Ready = running, online in SSM, and usable: the readiness probe
    /// (Run Command) finds the marker the user data writes last, so the person never gets a
    /// link to a bastion whose `connect` or plugin is not there yet. Not yet: look again after
    /// a pause (1×, 2×, 4× `worker.ready_poll_ms`, at most 10 s), up to `worker.ready_timeout`
    /// after the launch. Ready: the time box starts (`mark_ready`).
    async fn ready_pass(&self, request_id: &str, instance_id: &str, mut waiting: Waiting) -> Result<Step, JobError> {
        let before = waiting.stage.rank();
        waiting.stage = self.readiness_step(instance_id, waiting.stage).await?;
        if waiting.stage == Readiness::Usable {
            // The instance's expires-at tag keeps the bastion's own hard stop; the ledger holds
            // the time box.
            if self
                .ledger
                .mark_ready(request_id, &self.aws.region, self.worker.untold_limit.as_secs() as i64 * 1000)
                .await?
                .is_none()
            {
                // Ended while we waited: teardown again, in case it ran before the launch.
                self.ledger.ensure_teardown(request_id).await?;
            }
            return Ok(Step::Done);
        }
        let delay = Duration::from_millis(waiting.delay_ms.max(10));
        let timeout = self.worker.ready_timeout.as_duration();
        // Past the bound, a look that found no progress ends the wait (one that did, e.g. the
        // first look after the bot was down a while, earns the next look).
        let past = now_ms() + delay.as_millis() as i64 > waiting.since + timeout.as_millis() as i64;
        // A probe still on its way is let finish (Run Command bounds it): after a long outage
        // the first look past the bound sends it, the next ones wait for its answer.
        let probing = matches!(waiting.stage, Readiness::Online(Some(_)));
        if past && waiting.stage.rank() <= before && !probing {
            return Err(JobError::Fatal(format!(
                "the bastion {instance_id} was not {} within {}",
                waiting.stage.waiting_for(),
                self.worker.ready_timeout
            )));
        }
        waiting.delay_ms = (delay * 2).min(Duration::from_secs(10)).as_millis() as u64;
        let progress = serde_json::to_string(&waiting).map_err(|e| JobError::Fatal(e.to_string()))?;
        Ok(Step::Later { after: delay, progress })
    }

    /// One look at the bastion: moves `stage` on as far as AWS says it has got.
    async fn readiness_step(&self, instance_id: &str, mut stage: Readiness) -> Result<Readiness, JobError> {
        if stage == Readiness::Launching {
            match ec2::instance_state(&self.aws.ec2, instance_id).await?.as_deref() {
                Some("running") => stage = Readiness::Running,
                // Not visible yet (eventual consistency), or still starting.
                None | Some("pending") => return Ok(stage),
                Some(other) => {
                    return Err(JobError::Fatal(format!("the bastion {instance_id} is {other} before it was ready")))
                }
            }
        }
        if stage == Readiness::Running {
            if !ssm::is_online(&self.aws.ssm, instance_id).await? {
                return Ok(stage);
            }
            stage = Readiness::Online(None);
        }
        if let Readiness::Online(probe) = &stage {
            let Some(command_id) = probe else {
                let comment = format!("fargate-connect: is {instance_id} ready");
                let id = ssm::run_command(&self.aws.ssm, instance_id, READY_PROBE, &comment, 30).await?;
                return Ok(Readiness::Online(Some(id)));
            };
            return Ok(match ssm::command_outcome(&self.aws.ssm, command_id, instance_id).await? {
                ssm::CommandOutcome::Succeeded => Readiness::Usable,
                ssm::CommandOutcome::Pending => stage,
                ssm::CommandOutcome::Failed(why) => {
                    // Cloud-init is still at work: probe again at the next look.
                    tracing::debug!(instance_id, %why, "bastion not usable yet");
                    Readiness::Online(None)
                }
            });
        }
        Ok(stage)
    }

    /// After an extension: moves the bastion's own deadline to the new expiry plus the grace,
    /// and waits (as later runs, holding no slot) for the bastion to confirm it; a failed
    /// command is retried, then reported. An extension while one is moving runs the job again
    /// once this one is done (a new generation), with the newest expiry.
    pub async fn reschedule_shutdown(&self, job: &Job) -> Result<Step, JobError> {
        let request_id = job.request_id.as_str();
        let request = self.ledger.get(request_id).await?;
        let (RequestState::Ready, Some(instance_id), Some(expires_at)) =
            (request.state(), request.instance_id.as_deref(), request.expires_at)
        else {
            return Ok(Step::Done); // ended meanwhile: teardown takes it from here
        };
        let moving = match job.progress.as_deref().and_then(|p| serde_json::from_str::<Moving>(p).ok()) {
            Some(moving) => moving,
            None => {
                let deadline_ms = expires_at + self.worker.shutdown_grace.as_secs() as i64 * 1000;
                let deadline = user_data::deadline_secs(deadline_ms);
                let comment = format!("fargate-connect {request_id}: extend");
                let command = user_data::move_deadline_command(deadline);
                let command_id = ssm::run_command(&self.aws.ssm, instance_id, &command, &comment, 60).await?;
                Moving { command_id, deadline, give_up_at: now_ms() + COMMAND_WAIT.as_millis() as i64, delay_ms: 250 }
            }
        };
        match ssm::command_outcome(&self.aws.ssm, &moving.command_id, instance_id).await? {
            ssm::CommandOutcome::Succeeded => {
                let detail = json!({"command_id": moving.command_id, "deadline": rfc3339(moving.deadline * 1000)});
                self.ledger.record_step(request_id, "shutdown_rescheduled", detail).await?;
                Ok(Step::Done)
            }
            ssm::CommandOutcome::Failed(why) => {
                Err(JobError::Retry(format!("moving the bastion's deadline failed: {why}")))
            }
            ssm::CommandOutcome::Pending if now_ms() + moving.delay_ms as i64 > moving.give_up_at => {
                Err(JobError::Retry(format!(
                    "the bastion did not confirm its new deadline within {}s",
                    COMMAND_WAIT.as_secs()
                )))
            }
            ssm::CommandOutcome::Pending => {
                let after = Duration::from_millis(moving.delay_ms);
                let next = Moving { delay_ms: (moving.delay_ms * 2).min(5000), ..moving };
                let progress = serde_json::to_string(&next).map_err(|e| JobError::Fatal(e.to_string()))?;
                Ok(Step::Later { after, progress })
            }
        }
    }

    /// Ends the access, then removes what is left, in two passes of one job:
    /// 1. revokes the role's credentials (`revoke`), terminates the instance, and ends every
    ///    session on the bastion or opened with the role;
    /// 2. `worker.revoke_settle_ms` later (IAM's changes take effect eventually, so a session
    ///    may still have opened in between) sweeps again, deletes profile and role, records it.
    ///
    /// A failing sweep is recorded and does not keep the role: deleting it is what ends the
    /// access for good.
    pub async fn teardown(&self, job: &Job) -> Result<Step, JobError> {
        let request_id = job.request_id.as_str();
        let request = self.ledger.get(request_id).await?;
        let instance = request.instance_id.as_deref();
        let first = job.progress.as_deref().and_then(|p| serde_json::from_str::<Revoked>(p).ok());
        let Some(first) = first else {
            let revoked = revoke::revoke(&self.aws.iam, request_id, &rfc3339(now_ms())).await?;
            // Whose it was, as its tags say now (a retagged bastion goes to the audit channel).
            match tag_watch::check(&self.aws.ec2, &request).await {
                Ok(tags) => {
                    tag_watch::record(&self.ledger, &request, &tags, "teardown").await?;
                }
                Err(e) => tracing::warn!(request_id, error = %e, "could not read the bastion's tags at teardown"),
            }
            // The instance next: its going away is what ends the sessions on it.
            let terminated = ec2::terminate_request(&self.aws.ec2, request_id, instance, request.launched_at()).await?;
            let sweep = revoke::sweep_sessions(&self.aws.ssm, request_id, instance).await;
            let progress = Revoked { revoked, terminated, sessions: sweep.ended, sweep_error: sweep.error };
            let progress = serde_json::to_string(&progress).map_err(|e| JobError::Fatal(e.to_string()))?;
            return Ok(Step::Later { after: Duration::from_millis(self.worker.revoke_settle_ms), progress });
        };
        let sweep = revoke::sweep_sessions(&self.aws.ssm, request_id, instance).await;
        let role_deleted = iam::delete_role(&self.aws.iam, request_id).await?;
        let sweep_errors: Vec<String> = first.sweep_error.into_iter().chain(sweep.error).collect();
        for error in &sweep_errors {
            tracing::warn!(request_id, %error, "a session sweep failed; the role is deleted all the same");
        }
        let detail = json!({
            "terminated": first.terminated, "role_deleted": role_deleted, "revoked": first.revoked,
            "sessions_ended": first.sessions + sweep.ended, "sessions_ended_late": sweep.ended,
            "sweep_errors": sweep_errors,
        });
        self.ledger.mark_torn_down(request_id, detail).await?;
        Ok(Step::Done)
    }
}

/// A teardown's first pass, kept as the job's progress for the second.
#[derive(Serialize, Deserialize)]
struct Revoked {
    revoked: bool,
    terminated: Vec<String>,
    sessions: usize,
    sweep_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_arn_from_task_arn() {
        assert_eq!(
            cluster_arn_of_task("arn:aws:ecs:eu-west-1:123:task/prod/abc").as_deref(),
            Some("arn:aws:ecs:eu-west-1:123:cluster/prod")
        );
        assert_eq!(cluster_arn_of_task("nonsense"), None);
    }
}
