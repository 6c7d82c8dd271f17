//! The local sandbox's web page in a real headless Chromium (Debian's `chromium` and
//! `chromedriver`, driven over WebDriver): send `/fargate connect web`, watch the card update
//! to the link while the bastion appears in the emulator, press End and watch it go; ask for
//! `api`, switch to the approver, press Approve; ask through the request form, and open Home.
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (`.ci/run` installs them; or set
//! FARGATE_CONNECT_CHROMIUM / FARGATE_CONNECT_CHROMEDRIVER). Without them the test is ignored
//! with that reason (`tests/build.rs`), unless FARGATE_CONNECT_REQUIRE_TOOLS is set.

use harness::app::TestApp;
use harness::sandbox_ui::{Ui, DEMO_POLICY};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: tokio::process::Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self._driver.id() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

impl Browser {
    async fn start() -> Self {
        let chromium = std::env::var("FARGATE_CONNECT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let driver = std::env::var("FARGATE_CONNECT_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        assert!(
            std::path::Path::new(&chromium).exists() && std::path::Path::new(&driver).exists(),
            "needs {chromium} and {driver}: `apt-get install chromium chromium-driver` (.ci/run does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = tokio::process::Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group, which the Chromium it starts joins: Drop ends them all,
            // also when a failing assertion unwinds before `close`.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        harness::wait_for("chromedriver to listen", Duration::from_secs(20), || async {
            http.get(format!("{base}/status")).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        let profile = harness::app::TempDir::new();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.0.display())
            ]}
        }}});
        let session: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let id = session["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_string();
        std::mem::forget(profile); // chromium may still hold it; the temp dir is cleaned with the OS's
        Self { http, base: format!("{base}/session/{id}"), _driver: child }
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        let answer: Value =
            self.http.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap().json().await.unwrap();
        assert!(answer["value"]["error"].is_null(), "WebDriver {path}: {answer}");
        answer["value"].clone()
    }

    async fn get(&self, path: &str) -> Value {
        let answer: Value = self.http.get(format!("{}{path}", self.base)).send().await.unwrap().json().await.unwrap();
        assert!(answer["value"]["error"].is_null(), "WebDriver {path}: {answer}");
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call("/url", json!({"url": url})).await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self.call("/element", json!({"using": "css selector", "value": css})).await;
        found[ELEMENT].as_str().unwrap().to_string()
    }

    /// A real click (the browser's own input events) on the first element matching `css`,
    /// found again if a refresh replaced it between finding and clicking.
    async fn click(&self, css: &str) {
        for _ in 0..10 {
            let element = self.find(css).await;
            let answer: Value = self
                .http
                .post(format!("{}/element/{element}/click", self.base))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match answer["value"]["error"].as_str() {
                None => return,
                Some("stale element reference") => continue,
                Some(_) => panic!("WebDriver click on {css}: {answer}"),
            }
        }
        panic!("{css} kept being replaced");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(&format!("/element/{element}/clear"), json!({})).await;
        self.call(&format!("/element/{element}/value"), json!({"text": text})).await;
    }

    async fn text(&self, css: &str) -> String {
        let value = self
            .call("/execute/sync", json!({"script": "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", "args": [css]}))
            .await;
        value.as_str().unwrap_or_default().to_string()
    }

    async fn wait_text(&self, css: &str, needle: &str) -> String {
        harness::wait_for(&format!("{needle:?} in {css}"), WAIT, || async {
            let text = self.text(css).await;
            text.contains(needle).then_some(text)
        })
        .await
    }

    async fn select_user(&self, user: &str) {
        self.click(&format!("#user option[value=\"{user}\"]")).await;
    }

    async fn close(&self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    fc_skip_browser,
    ignore = "SKIPPED: Chromium/ChromeDriver not found (apt-get install chromium chromium-driver)"
)]
async fn a_person_drives_the_sandbox_page_in_a_real_browser() {
    let t = TestApp::start_with_policy("default = \"2m\"\nmin = \"30s\"\nmax = \"2h\"", DEMO_POLICY).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page = format!("http://{}", listener.local_addr().unwrap());
    Ui::new(t.url.clone(), t.slack.base.clone(), t.slack.reader(), t.aws.clone()).serve(listener);
    let browser = Browser::start().await;
    browser.open(&page).await;
    browser.wait_text("h1", "fargate-connect sandbox").await;

    // Ask for web: the reply, then the card updating in place to the link.
    browser.type_into("#text", "/fargate connect web --for 2m --reason demo").await;
    browser.click("#send").await;
    browser.wait_text("#ephemeral", "Working on it").await;
    let card = browser.wait_text("#dm", "is ready until").await;
    assert!(card.contains("Session Manager console") && card.contains("start-session"), "{card}");
    assert!(card.contains("Extend") && card.contains("End now"), "{card}");
    let instances = browser.wait_text("#instances", "running").await;
    let id = t.ledger.open_requests(None).await.unwrap()[0].id.clone();
    assert!(instances.contains(&id), "{instances}");

    // End it with the card's button, which asks first (Slack's confirmation dialog): dismissed,
    // nothing happens; confirmed, the card says so and the bastion goes.
    browser.click("#dm button[data-action=\"end\"]").await;
    let asked = browser.get("/alert/text").await;
    assert!(asked.as_str().unwrap_or_default().contains("End"), "the dialog asks: {asked}");
    browser.call("/alert/dismiss", json!({})).await;
    assert_eq!(t.ledger.get(&id).await.unwrap().state(), worker::state::RequestState::Ready, "not ended");
    browser.click("#dm button[data-action=\"end\"]").await;
    browser.call("/alert/accept", json!({})).await;
    browser.wait_text("#dm", "has ended").await;
    harness::wait_for("the bastion to be terminated", WAIT, || async {
        let text = browser.text("#instances").await;
        (text.contains("terminated") || text.contains("shutting-down")).then_some(())
    })
    .await;

    // Ask for api (needs approval), then approve it as U0LEAD from #approvals.
    browser.type_into("#text", "/fargate connect api --reason \"check the queue\"").await;
    browser.click("#send").await;
    browser.wait_text("#ephemeral", "needs approval").await;
    browser.wait_text("#dm", "waiting for approval").await;
    browser.wait_text("#channels", "check the queue").await;
    browser.select_user("U0LEAD").await;
    browser.click("#channels button[data-action=\"approve\"]").await;
    browser.wait_text("#channels", "Approved by @U0LEAD").await;
    browser.select_user("U0SANDBOX").await;
    browser.wait_text("#dm", "is ready until").await;

    // The request form: `/fargate` alone opens it; a mistake is shown on its field; then it
    // asks, and says what happened.
    browser.type_into("#text", "/fargate").await;
    browser.click("#send").await;
    browser.wait_text("#modal", "Request a shell").await;
    // The container field lists the chosen service's running task's containers.
    browser.wait_text("#modal select[name=\"container\"]", "app").await;
    browser.click("#modal select[name=\"container\"] option[value=\"app\"]").await;
    browser.type_into("#modal input[name=\"duration\"]", "soon").await;
    browser.click("#form-submit").await;
    browser.wait_text("#modal .error[data-for=\"duration\"]", "soon").await;
    browser.type_into("#modal input[name=\"duration\"]", "2m").await;
    browser.click("#form-submit").await;
    let told = browser.wait_text("#modal", "Working on it").await;
    browser.click("#form-close").await;
    let id = told[told.find("fc-").unwrap()..][..11].to_string();
    assert_eq!(t.ledger.get(&id).await.unwrap().container.as_deref(), Some("app"), "the container chosen");

    // App Home: opened, it lists the request just made, with its buttons.
    browser.click("#open-home").await;
    browser.wait_text("#home", "Your requests").await;
    browser.wait_text("#home", &id).await;
    browser.close().await;
    t.stop().await;
}
