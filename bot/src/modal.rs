//! The request modal. `/fargate` with no arguments, `/fargate connect` without a service and
//! the global shortcut open it (`views.open`, with the trigger Slack sent, valid three
//! seconds): the services this person may use (and whether each needs approval), the
//! container (listed from the service's running task as the person opens the field: the
//! form's one AWS read), the duration within the policy's bounds, the reason, break-glass where some
//! service allows it. Its submission goes through the same checks as the command
//! (`connect::connect`); a mistake or a refusal is shown on the field it is about, in the
//! modal, and nothing is recorded.

use crate::command::ConnectArgs;
use crate::connect::{connect, Asker, Field};
use crate::gate::AppState;
use crate::policy::Access;
use serde_json::{json, Value};
use worker::duration::HumanDuration;
use worker::ids::{ContainerName, ServiceName};

/// The modal's `callback_id`, and the global shortcut's (deploy/slack/manifest.yml).
pub const CALLBACK_ID: &str = "fargate_connect_request";

/// How long opening the form may take, of Slack's three seconds.
const OPEN_WITHIN: std::time::Duration = std::time::Duration::from_millis(2500);

/// Slack's limit on a static select's options.
const MAX_OPTIONS: usize = 100;

/// A service this person may ask for, as the select offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub service: String,
    pub cluster: String,
    pub approval: bool,
    pub break_glass: bool,
}

/// What the policy lets `user` ask for: the named services, and the clusters whose `*` entry
/// lets them name any (then the service is typed, not chosen).
async fn offers(state: &AppState, user: &str) -> Result<(Vec<Offer>, Vec<String>), String> {
    let mut offers = Vec::new();
    let mut any = Vec::new();
    for (rule, access) in state.access_per_rule(user).await? {
        if let Access::Allowed { approval, break_glass, .. } = access {
            if rule.name == "*" {
                any.push(rule.cluster.clone());
            } else {
                let (service, cluster) = (rule.name.clone(), rule.cluster.clone());
                offers.push(Offer { service, cluster, approval: approval.is_some(), break_glass });
            }
        }
    }
    Ok((offers, any))
}

fn plain(text: &str) -> Value {
    json!({"type": "plain_text", "text": text})
}

fn input(block: &str, label: &str, element: Value, optional: bool, hint: Option<&str>) -> Value {
    let mut b =
        json!({"type": "input", "block_id": block, "label": plain(label), "element": element, "optional": optional});
    if let Some(hint) = hint {
        b["hint"] = plain(hint);
    }
    b
}

/// The container field: the running task's containers, listed by Slack as the person opens
/// or types in it (`block_suggestion`, answered by `suggest`).
fn container_select() -> Value {
    json!({"type": "external_select", "action_id": "value", "min_query_length": 0,
           "placeholder": plain("the task's only or essential container")})
}

const CONTAINER_HINT: &str = "The containers of the service's running task; left empty, its only or essential one.";

/// How long listing the containers may take, of Slack's three seconds.
const SUGGEST_WITHIN: std::time::Duration = std::time::Duration::from_millis(2500);

/// Answers the container field's `block_suggestion`: the containers of the chosen service's
/// running task (sidecars left out) that match what was typed, when the person may use that
/// service; no options otherwise (nothing about a service is shown to someone it is not for).
pub async fn suggest(state: &AppState, payload: &Value) -> Value {
    let user = payload["user"]["id"].as_str().unwrap_or_default();
    let typed = payload["value"].as_str().unwrap_or_default().trim().to_lowercase();
    let values = &payload["view"]["state"]["values"];
    let (cluster, service) = service_of(values);
    let names = match ServiceName::parse(service) {
        Ok(service) => {
            let cluster = cluster.unwrap_or_else(|| state.policy.default_cluster.clone());
            let lookup = containers_for(state, user, &service, &cluster);
            tokio::time::timeout(SUGGEST_WITHIN, lookup).await.unwrap_or_else(|_| {
                tracing::warn!(%service, "listing the containers took too long");
                Vec::new()
            })
        }
        Err(_) => Vec::new(),
    };
    let options: Vec<Value> = names
        .iter()
        .filter(|n| n.to_lowercase().contains(&typed))
        .take(MAX_OPTIONS)
        .map(|n| json!({"text": plain(n), "value": n}))
        .collect();
    json!({"options": options})
}

async fn containers_for(state: &AppState, user: &str, service: &ServiceName, cluster: &str) -> Vec<String> {
    if !matches!(state.access(user, service.as_str(), cluster).await, Ok(Access::Allowed { .. })) {
        return Vec::new();
    }
    worker::aws::ecs::containers(&state.aws.ecs, cluster, service.as_str()).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, %service, "could not list the containers for the request form");
        Vec::new()
    })
}

/// The form's service: `(cluster, service)` when chosen from the list; when typed, the typed
/// name and the cluster chosen beside it (`None`: the default cluster).
fn service_of(values: &Value) -> (Option<String>, &str) {
    let chosen = values["service"]["value"]["selected_option"]["value"].as_str();
    // A cluster may be an ARN (`…:cluster/prod`); a service name never holds a `/`.
    match chosen.and_then(|v| v.rsplit_once('/')) {
        Some((cluster, service)) => (Some(cluster.to_string()), service),
        None => {
            let cluster = values["cluster"]["value"]["selected_option"]["value"].as_str().map(str::to_string);
            (cluster, values["service"]["value"]["value"].as_str().map(str::trim).unwrap_or_default())
        }
    }
}

fn text_input(placeholder: &str, multiline: bool, max_length: u32) -> Value {
    json!({"type": "plain_text_input", "action_id": "value", "multiline": multiline,
           "max_length": max_length, "placeholder": plain(placeholder)})
}

/// The modal for someone offered `offers` (typed names too when `any`), asked from `channel`.
/// `clusters`: where a typed service may be, when that is not only the default cluster (a
/// select of them follows the service; empty: the default cluster, no select).
pub fn view(
    offers: &[Offer],
    any: bool,
    clusters: &[String],
    time_box: (HumanDuration, HumanDuration),
    channel: &str,
) -> Value {
    let (default, max) = time_box;
    let typed = any || offers.is_empty() || offers.len() > MAX_OPTIONS;
    let service = if typed {
        input("service", "Service", text_input("e.g. web", false, 255), false, Some("The ECS service's name."))
    } else {
        let options: Vec<Value> = offers
            .iter()
            .map(|o| {
                let approval = if o.approval { " · needs approval" } else { "" };
                // Slack refuses an option text over 75 characters.
                let text: String = format!("{} in {}{approval}", o.service, o.cluster).chars().take(75).collect();
                json!({"text": plain(&text),
                       "value": format!("{}/{}", o.cluster, o.service)})
            })
            .collect();
        let select = json!({"type": "static_select", "action_id": "value", "placeholder": plain("Choose a service"), "options": options});
        input("service", "Service", select, false, None)
    };
    let mut blocks = vec![service];
    if typed && !clusters.is_empty() {
        // Slack refuses an option text over 75 characters (a cluster may be an ARN).
        let option = |c: &String| json!({"text": plain(&c.chars().take(75).collect::<String>()), "value": c});
        let options: Vec<Value> = clusters.iter().take(MAX_OPTIONS).map(option).collect();
        let select = json!({"type": "static_select", "action_id": "value", "options": options,
                            "initial_option": options[0].clone()});
        blocks.push(input("cluster", "Cluster", select, false, None));
    }
    blocks.extend([
        input("container", "Container", container_select(), true, Some(CONTAINER_HINT)),
        input(
            "duration",
            "For how long",
            text_input(&format!("{default} (at most {max})"), false, 16),
            true,
            Some("Like 30m, 1h or 1h30m. The time starts when your link is ready."),
        ),
        input(
            "reason",
            "Reason",
            text_input("e.g. INC-42: the queue is stuck", true, 500),
            true,
            Some("Shown to the approvers and kept in the audit history; needed for break-glass."),
        ),
    ]);
    if offers.iter().any(|o| o.break_glass) || any {
        let option = json!({"text": plain("Break-glass: skip the approval (everyone in the audit channel is told)"), "value": "yes"});
        let checkboxes = json!({"type": "checkboxes", "action_id": "value", "options": [option]});
        blocks.push(input("break_glass", "Emergency", checkboxes, true, None));
    }
    json!({
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": plain("Request a shell"),
        "submit": plain("Request"),
        "close": plain("Cancel"),
        "private_metadata": json!({"channel": channel}).to_string(),
        "blocks": blocks,
    })
}

/// Opens the modal for `user` with `trigger_id`; the error is what to tell them instead. The
/// trigger is good for three seconds, and the command or shortcut must be answered within
/// them too: all of it (the policy's user-group lookups, `views.open`) gets `OPEN_WITHIN`.
pub async fn open(state: &AppState, user: &str, trigger_id: &str, channel: &str) -> Result<(), String> {
    match tokio::time::timeout(OPEN_WITHIN, open_now(state, user, trigger_id, channel)).await {
        Ok(opened) => opened,
        Err(_) => {
            tracing::warn!(user, "opening the request form took too long");
            Err(UNAVAILABLE.to_string())
        }
    }
}

const UNAVAILABLE: &str = "I could not open the request form just now; `/fargate connect <service>` does the same.";

async fn open_now(state: &AppState, user: &str, trigger_id: &str, channel: &str) -> Result<(), String> {
    let (offers, any) = offers(state, user).await?;
    if offers.is_empty() && any.is_empty() {
        return Err("The policy lets you use no service yet; an admin can change that.".into());
    }
    // A typed service's cluster: chosen when it may be other than the default one.
    let mut clusters = any.clone();
    if offers.len() > MAX_OPTIONS {
        clusters.extend(offers.iter().map(|o| o.cluster.clone()));
    }
    let default = &state.policy.default_cluster;
    clusters.sort_by_key(|c| (c != default, c.clone()));
    clusters.dedup();
    if clusters.iter().all(|c| c == default) {
        clusters.clear();
    }
    let max = state.time_box.max;
    let view = view(&offers, !any.is_empty(), &clusters, (state.time_box.default.min(max), max), channel);
    let body = crate::views::open_body(trigger_id, view).map_err(|e| {
        tracing::error!(error = %e, "the request form is not a valid view");
        UNAVAILABLE.to_string()
    })?;
    state.slack.call("views.open", &body).await.map(|_| ()).map_err(|e| {
        tracing::warn!(error = %e, "views.open failed");
        UNAVAILABLE.to_string()
    })
}

fn block_id(field: Field) -> &'static str {
    match field {
        Field::Service => "service",
        Field::Duration => "duration",
        Field::BreakGlass => "break_glass",
    }
}

fn errors(block: &str, message: &str) -> Value {
    // Slack shows the text as is (no mrkdwn): drop the emphasis marks.
    let text: String = message.chars().filter(|c| !matches!(c, '*' | '`')).collect();
    json!({"response_action": "errors", "errors": {block: text}})
}

/// The request the form describes, or the field in error and why.
fn args_of(values: &Value) -> Result<ConnectArgs, Value> {
    let text = |block: &str| values[block]["value"]["value"].as_str().map(str::trim).filter(|s| !s.is_empty());
    let (cluster, service) = service_of(values);
    let service = ServiceName::parse(service).map_err(|e| errors("service", &e.to_string()))?;
    // Chosen from the task's list (or, from an older form, typed).
    let picked = values["container"]["value"]["selected_option"]["value"].as_str().map(str::trim);
    let container = match picked.filter(|c| !c.is_empty()).or_else(|| text("container")) {
        Some(c) => Some(ContainerName::parse(c).map_err(|e| errors("container", &e.to_string()))?),
        None => None,
    };
    let ttl = match text("duration") {
        Some(d) => Some(HumanDuration::parse(d).map_err(|e| errors("duration", &e.to_string()))?),
        None => None,
    };
    let break_glass = values["break_glass"]["value"]["selected_options"].as_array().is_some_and(|o| !o.is_empty());
    let reason = text("reason").map(str::to_string);
    if break_glass && reason.is_none() {
        return Err(errors("reason", "Break-glass needs a reason: it is told to the audit channel."));
    }
    Ok(ConnectArgs { service: Some(service), container, cluster, ttl, reason, task: None, break_glass })
}

/// Answers a submission of the modal: the field in error, or the modal replaced by what
/// happened (the same words the command answers with).
pub async fn submit(state: &AppState, payload: &Value) -> Value {
    let args = match args_of(&payload["view"]["state"]["values"]) {
        Ok(args) => args,
        Err(answer) => return answer,
    };
    let metadata: Value =
        payload["view"]["private_metadata"].as_str().and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
    let user = &payload["user"];
    let asker = Asker {
        user_id: user["id"].as_str().unwrap_or_default().to_string(),
        user_name: user["username"].as_str().or(user["name"].as_str()).unwrap_or_default().to_string(),
        team_id: user["team_id"].as_str().or(payload["team"]["id"].as_str()).unwrap_or_default().to_string(),
        channel_id: metadata["channel"].as_str().unwrap_or_default().to_string(),
        response_url: String::new(),
    };
    match connect(state, &asker, args).await {
        Ok(told) => json!({"response_action": "update", "view": {
            "type": "modal",
            "title": plain("Request a shell"),
            "close": plain("Close"),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": told}}],
        }}),
        Err(refusal) => errors(block_id(refusal.field), &refusal.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, Value)]) -> Value {
        Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), json!({"value": v}))).collect())
    }

    #[test]
    fn a_form_becomes_the_same_request_as_the_command() {
        let form = values(&[
            ("service", json!({"type": "static_select", "selected_option": {"value": "prod/web"}})),
            ("container", json!({"type": "plain_text_input", "value": " app "})),
            ("duration", json!({"type": "plain_text_input", "value": "45m"})),
            ("reason", json!({"type": "plain_text_input", "value": "INC-9"})),
            ("break_glass", json!({"type": "checkboxes", "selected_options": []})),
        ]);
        let args = args_of(&form).unwrap();
        assert_eq!(args.service.unwrap().as_str(), "web");
        assert_eq!(args.cluster.as_deref(), Some("prod"));
        assert_eq!(args.container.unwrap().as_str(), "app");
        assert_eq!(args.ttl, Some(HumanDuration::from_secs(45 * 60)));
        assert_eq!((args.reason.as_deref(), args.break_glass), (Some("INC-9"), false));
        // The container chosen from the task's list.
        let form = values(&[
            ("service", json!({"type": "static_select", "selected_option": {"value": "prod/web"}})),
            ("container", json!({"type": "external_select", "selected_option": {"value": "app"}})),
        ]);
        assert_eq!(args_of(&form).unwrap().container.unwrap().as_str(), "app");
    }

    #[test]
    fn mistakes_are_shown_on_their_field() {
        let typed = |service: &str, duration: &str| {
            values(&[
                ("service", json!({"type": "plain_text_input", "value": service})),
                ("duration", json!({"type": "plain_text_input", "value": duration})),
            ])
        };
        let error = |form: Value| {
            let answer = args_of(&form).unwrap_err();
            assert_eq!(answer["response_action"], "errors");
            answer["errors"].as_object().unwrap().keys().next().unwrap().clone()
        };
        assert_eq!(error(typed("web app", "")), "service");
        assert_eq!(error(typed("web", "soon")), "duration");
        let glass = values(&[
            ("service", json!({"type": "plain_text_input", "value": "web"})),
            ("break_glass", json!({"type": "checkboxes", "selected_options": [{"value": "yes"}]})),
        ]);
        assert_eq!(error(glass), "reason");
    }

    #[test]
    fn the_view_offers_what_the_policy_allows_and_break_glass_only_where_allowed() {
        let offer = |service: &str, approval, break_glass| Offer {
            service: service.into(),
            cluster: "prod".into(),
            approval,
            break_glass,
        };
        let bounds = (HumanDuration::from_secs(3600), HumanDuration::from_secs(8 * 3600));
        let view = view(&[offer("web", false, false), offer("api", true, false)], false, &[], bounds, "C1");
        let blocks = view["blocks"].as_array().unwrap();
        let options = blocks[0]["element"]["options"].as_array().unwrap();
        assert_eq!(options[1]["text"]["text"], "api in prod · needs approval");
        assert_eq!(options[1]["value"], "prod/api");
        assert!(blocks.iter().all(|b| b["block_id"] != "break_glass"));
        assert_eq!(view["private_metadata"], r#"{"channel":"C1"}"#);
        assert_eq!(view["callback_id"], CALLBACK_ID);
        let glass = super::view(&[offer("api", true, true)], false, &[], bounds, "C1");
        assert!(glass["blocks"].as_array().unwrap().iter().any(|b| b["block_id"] == "break_glass"));
        let typed = super::view(&[], true, &[], bounds, "C1");
        assert_eq!(typed["blocks"][0]["element"]["type"], "plain_text_input");
        assert!(typed["blocks"].as_array().unwrap().iter().all(|b| b["block_id"] != "cluster"));
        // A typed service that may be in another cluster than the default: the cluster is chosen.
        let clusters = ["prod".to_string(), "staging".to_string()];
        let typed_in = super::view(&[], true, &clusters, bounds, "C1");
        let cluster = &typed_in["blocks"][1];
        assert_eq!(cluster["block_id"], "cluster");
        assert_eq!(cluster["element"]["initial_option"]["value"], "prod");
        let form = values(&[
            ("service", json!({"type": "plain_text_input", "value": "web"})),
            ("cluster", json!({"type": "static_select", "selected_option": {"value": "staging"}})),
        ]);
        assert_eq!(args_of(&form).unwrap().cluster.as_deref(), Some("staging"));
        // Each fits slack-morphism's model of a view, field for field: nothing is lost on the way.
        for drawn in [view, glass, typed, typed_in] {
            assert_eq!(crate::views::open_body("T1", drawn.clone()).unwrap()["view"], drawn);
        }
    }
}
