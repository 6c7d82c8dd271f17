//! AWS adapters: one client set per process, built from the SDK's own config chain
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials…) with bounded retries and timeouts.
//! Each submodule wraps one service and speaks in our domain terms.

pub mod ec2;
pub mod ecs;
pub mod error;
pub mod exec_settings;
pub mod iam;
pub mod lockdown;
pub mod partition;
pub mod perimeter;
pub mod revoke;
pub mod ssm;
pub mod user_data;

pub use error::AwsError;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::time::Duration;

/// The tag keys on everything a request creates.
pub mod tags {
    pub const MANAGED: &str = "fargate-connect:managed";
    pub const REQUEST_ID: &str = "fargate-connect:request-id";
    pub const REQUESTER: &str = "fargate-connect:requester";
    pub const SERVICE: &str = "fargate-connect:service";
    pub const EXPIRES_AT: &str = "fargate-connect:expires-at";
}

/// IAM path of every per-request role and instance profile.
pub const IAM_PATH: &str = "/fargate-connect/";

/// The clients the worker uses, and the region they talk to.
#[derive(Clone, Debug)]
pub struct Aws {
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub ssm: aws_sdk_ssm::Client,
    /// Only for `doctor` (who am I).
    pub sts: aws_sdk_sts::Client,
    pub region: String,
}

impl Aws {
    /// Loads the SDK's default chain; `region` (from the config file) wins over the chain's.
    pub async fn from_env(region: Option<&str>) -> Result<Self, AwsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_string()));
        }
        let sdk = loader.load().await;
        Self::from_sdk_config(&sdk, &[])
    }

    /// Builds the clients from an explicit SDK config. `extra_headers` go on every request
    /// (tests use it for moto's `x-moto-account-id`; production passes none).
    pub fn from_sdk_config(sdk: &SdkConfig, extra_headers: &[(String, String)]) -> Result<Self, AwsError> {
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| AwsError::config("no AWS region: set aws.region in the config file or AWS_REGION"))?;
        let headers = ExtraHeaders(extra_headers.to_vec());
        let ec2 = aws_sdk_ec2::config::Builder::from(sdk).interceptor(headers.clone()).build();
        let iam = aws_sdk_iam::config::Builder::from(sdk).interceptor(headers.clone()).build();
        let ecs = aws_sdk_ecs::config::Builder::from(sdk).interceptor(headers.clone()).build();
        let ssm = aws_sdk_ssm::config::Builder::from(sdk).interceptor(headers.clone()).build();
        let sts = aws_sdk_sts::config::Builder::from(sdk).interceptor(headers).build();
        Ok(Self {
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
            iam: aws_sdk_iam::Client::from_conf(iam),
            ecs: aws_sdk_ecs::Client::from_conf(ecs),
            ssm: aws_sdk_ssm::Client::from_conf(ssm),
            sts: aws_sdk_sts::Client::from_conf(sts),
            region,
        })
    }
}

#[derive(Debug, Clone)]
struct ExtraHeaders(Vec<(String, String)>);

impl Intercept for ExtraHeaders {
    fn name(&self) -> &'static str {
        "ExtraHeaders"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        for (name, value) in &self.0 {
            context.request_mut().headers_mut().insert(name.clone(), value.clone());
        }
        Ok(())
    }
}
