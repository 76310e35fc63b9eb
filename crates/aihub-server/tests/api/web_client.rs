//! A browser for the dashboard's HTTP tests: a cookie jar, no automatic redirects, form posts,
//! sign-up and sign-in through the pages, and small readers of the HTML it gets back.

use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};

use crate::helpers::{PASSWORD, TestApp};

/// A browser: a cookie jar, no automatic redirects (tests look at each hop).
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    pub base: String,
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            client,
            jar,
            base: app.url(""),
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// The page's HTML, after checking its status.
    pub async fn page(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.text().await.unwrap()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// The session token the jar holds: the same token the JSON API accepts as a bearer.
    pub fn session_token(&self) -> String {
        let url = self.base.parse().unwrap();
        let cookies = self.jar.cookies(&url).unwrap();
        cookies
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix("aihub_session="))
            .unwrap()
            .to_owned()
    }

    pub async fn sign_up(&self, email: &str, name: &str) {
        let html = self.page("/signup").await;
        let csrf = field(&html, "csrf");
        let r = self
            .post(
                "/signup",
                &[
                    ("csrf", &csrf),
                    ("email", email),
                    ("name", name),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/login?created=1");
    }

    pub async fn sign_in(&self, email: &str) {
        let html = self.page("/login").await;
        let csrf = field(&html, "csrf");
        let r = self
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("email", email),
                    ("password", PASSWORD),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/");
    }
}

/// The `value` of the input called `name` (the first one).
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let len = html[start..].find('"').unwrap();
    html[start..start + len].to_owned()
}

/// The text of the element with `id` (up to the next tag).
pub fn text_of(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"))
        + marker.len();
    let len = html[start..].find('<').unwrap();
    html[start..start + len].to_owned()
}

pub fn location(r: &Response) -> String {
    r.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// The API key shown on a page, if any.
pub fn secret_in(html: &str) -> Option<String> {
    let start = html.find("sk-aihub-")?;
    let secret: String = html[start..]
        .chars()
        .take_while(char::is_ascii_alphanumeric_or_dash)
        .collect();
    Some(secret)
}

pub trait KeyChar {
    fn is_ascii_alphanumeric_or_dash(&self) -> bool;
}

impl KeyChar for char {
    fn is_ascii_alphanumeric_or_dash(&self) -> bool {
        self.is_ascii_alphanumeric() || *self == '-'
    }
}
