//! The Web API's `views.*` bodies through slack-morphism's typed models: each view we draw is
//! read into the crate's `SlackView`, so a block or field that Slack's schema has no place for
//! fails here, naming what, rather than as Slack's `invalid_arguments`. The body sent is the
//! crate's `SlackApiViewsOpenRequest` / `SlackApiViewsPublishRequest`. The views themselves are
//! drawn as JSON beside the cards (`render`), which share their blocks; a unit test holds each
//! view to the model field for field, so nothing is dropped on the way.

use serde_json::Value;
use slack_morphism::prelude::{
    SlackApiViewsOpenRequest, SlackApiViewsPublishRequest, SlackTriggerId, SlackUserId, SlackView,
};

/// A view that does not fit Slack's schema.
#[derive(Debug, thiserror::Error)]
#[error("the view does not fit Slack's view schema: {0}")]
pub struct ViewError(serde_json::Error);

/// The view, as slack-morphism models it.
pub fn typed(view: Value) -> Result<SlackView, ViewError> {
    serde_json::from_value(view).map_err(ViewError)
}

/// The body of `views.open` for `view`, opened with `trigger_id`.
pub fn open_body(trigger_id: &str, view: Value) -> Result<Value, ViewError> {
    let request = SlackApiViewsOpenRequest::new(SlackTriggerId::new(trigger_id.to_string()), typed(view)?);
    serde_json::to_value(request).map_err(ViewError)
}

/// The body of `views.publish` for `user`'s Home.
pub fn publish_body(user: &str, view: Value) -> Result<Value, ViewError> {
    let request = SlackApiViewsPublishRequest::new(SlackUserId::new(user.to_string()), typed(view)?);
    serde_json::to_value(request).map_err(ViewError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_view_outside_the_schema_is_refused_with_a_reason() {
        let err = open_body("t", json!({"type": "modal", "blocks": []})).unwrap_err();
        assert!(err.to_string().contains("title"), "{err}");
        let err = publish_body("U1", json!({"type": "sheet", "blocks": []})).unwrap_err();
        assert!(err.to_string().contains("sheet"), "{err}");
        let body = publish_body("U1", json!({"type": "home", "blocks": []})).unwrap();
        assert_eq!(body, json!({"user_id": "U1", "view": {"type": "home", "blocks": []}}));
    }
}
