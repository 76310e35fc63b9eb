//! The management API's surface as the code declares it, for tests that must cover every route:
//! the routes are read from `src/routes/*.rs` (so a new route is walked without anyone adding it
//! here), the endpoint table from docs/permissions.md, and a digest of every table tells whether
//! a call changed anything.

use std::collections::BTreeMap;
use std::path::Path;

use aihub_store::{PoolRef, Store};
use reqwest::Method;
use sha2::{Digest, Sha256};

/// One method on one management route, e.g. `PATCH /api/v1/orgs/{org_id}/keys/{key_id}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: String,
    pub path: String,
}

impl Route {
    pub fn method(&self) -> Method {
        Method::from_bytes(self.method.as_bytes()).unwrap()
    }

    /// Whether the route changes state (everything but GET).
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }

    /// The `{placeholder}` names in the path, in order.
    pub fn placeholders(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = self.path.as_str();
        while let Some(start) = rest.find('{') {
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            out.push(rest[start + 1..start + end].to_owned());
            rest = &rest[start + end + 1..];
        }
        out
    }

    /// The path with every placeholder replaced from `ids`; panics naming a missing one.
    pub fn fill(&self, ids: &BTreeMap<String, String>) -> String {
        let mut path = self.path.clone();
        for p in self.placeholders() {
            let value = ids.get(&p).unwrap_or_else(|| {
                panic!("no fixture for {{{p}}} in {} {}", self.method, self.path)
            });
            path = path.replace(&format!("{{{p}}}"), value);
        }
        path
    }

    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

const METHODS: [(&str, &str); 5] = [
    ("get(", "GET"),
    ("post(", "POST"),
    ("put(", "PUT"),
    ("patch(", "PATCH"),
    ("delete(", "DELETE"),
];

/// Every `/api/v1` route and method declared with `.route("…", get(…).post(…))` in the
/// server's route modules.
pub fn management_routes() -> Vec<Route> {
    let mut routes = routes_under("src/routes");
    routes.retain(|r| r.path.starts_with("/api/v1/"));
    routes
}

/// Every route and method of the web dashboard, declared in `src/web/` and its folders.
pub fn dashboard_routes() -> Vec<Route> {
    routes_under("src/web")
}

/// The routes declared in the `.rs` files under `dir` (relative to the crate), sorted.
fn routes_under(dir: &str) -> Vec<Route> {
    let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    let mut files = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut routes = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        routes.extend(parse_routes(&text));
    }
    routes.sort();
    routes.dedup();
    routes
}

fn parse_routes(text: &str) -> Vec<Route> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let Some(q1) = rest.find('"') else { break };
        let Some(q2) = rest[q1 + 1..].find('"') else {
            break;
        };
        let path = &rest[q1 + 1..q1 + 1 + q2];
        // The handlers run to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let mut end = rest.len();
        for (j, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &rest[q1 + 1 + q2 + 1..end];
        for (needle, method) in METHODS {
            let mut from = 0;
            while let Some(k) = args[from..].find(needle) {
                let at = from + k;
                let before = args[..at].chars().last().unwrap_or(' ');
                if !(before.is_alphanumeric() || before == '_') {
                    out.push(Route {
                        method: method.to_owned(),
                        path: path.to_owned(),
                    });
                }
                from = at + needle.len();
            }
        }
        rest = &rest[end..];
    }
    out
}

/// A row of the endpoint table in docs/permissions.md: who may call a route.
#[derive(Debug, Clone)]
pub struct EndpointRule {
    pub route: Route,
    /// `allow` or `deny` per role, in the order owner, admin, member, viewer.
    pub allowed: [bool; 4],
}

/// The `## Endpoints` table of docs/permissions.md.
pub fn endpoint_table() -> Vec<EndpointRule> {
    let doc = include_str!("../../../../docs/permissions.md");
    let section = doc
        .split("## Endpoints")
        .nth(1)
        .expect("docs/permissions.md has an `## Endpoints` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rules = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, method, path, owner, admin, member, viewer, ..] = cells.as_slice() else {
            continue;
        };
        if !matches!(*method, "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
            continue;
        }
        let cell = |c: &str| match c {
            "allow" => true,
            "deny" => false,
            other => panic!("cell {other:?} in `{line}` must be allow or deny"),
        };
        rules.push(EndpointRule {
            route: Route {
                method: (*method).to_owned(),
                path: path.trim_matches('`').to_owned(),
            },
            allowed: [cell(owner), cell(admin), cell(member), cell(viewer)],
        });
    }
    rules
}

/// Columns that change on reads (session touches, key use) and are left out of the digest.
const VOLATILE: &[(&str, &str)] = &[("sessions", "last_seen_at"), ("api_keys", "last_used_at")];

/// A digest of every row of every table (but sqlx's own and the volatile columns above): equal
/// digests mean nothing was written in between.
pub async fn digest(store: &Store) -> String {
    let mut h = Sha256::new();
    match store.reader() {
        PoolRef::Sqlite(p) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name",
            )
            .fetch_all(p)
            .await
            .unwrap();
            for t in tables {
                let cols: Vec<String> = sqlx::query_scalar(&format!(
                    "SELECT name FROM pragma_table_info('{t}') ORDER BY cid"
                ))
                .fetch_all(p)
                .await
                .unwrap();
                let row = cols
                    .iter()
                    .filter(|c| !VOLATILE.contains(&(t.as_str(), c.as_str())))
                    .map(|c| format!("quote(\"{c}\")"))
                    .collect::<Vec<_>>()
                    .join(" || ',' || ");
                let text: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT group_concat(r, '|') FROM \
                     (SELECT {row} AS r FROM \"{t}\" ORDER BY r)"
                ))
                .fetch_one(p)
                .await
                .unwrap();
                h.update(t.as_bytes());
                h.update(text.unwrap_or_default().as_bytes());
            }
        }
        PoolRef::Postgres(p) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' \
                 ORDER BY table_name",
            )
            .fetch_all(p)
            .await
            .unwrap();
            for t in tables {
                let cols: Vec<String> = sqlx::query_scalar(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(&t)
                .fetch_all(p)
                .await
                .unwrap();
                let row = cols
                    .iter()
                    .filter(|c| !VOLATILE.contains(&(t.as_str(), c.as_str())))
                    .map(|c| format!("COALESCE(\"{c}\"::text, 'NULL')"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let text: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT string_agg(r, '|' ORDER BY r) FROM \
                     (SELECT concat_ws(',', {row}) AS r FROM \"{t}\") s"
                ))
                .fetch_one(p)
                .await
                .unwrap();
                h.update(t.as_bytes());
                h.update(text.unwrap_or_default().as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

#[test]
fn the_parser_finds_every_method_of_a_route() {
    let text = r#"
        Router::new()
            .route("/api/v1/orgs/{org_id}/budgets", get(list).post(create))
            .route(
                "/api/v1/orgs/{org_id}/budgets/{budget_id}",
                get(get_one).patch(update).delete(remove),
            )
            .route("/api/v1/x", put(budget_put))
    "#;
    let found: Vec<String> = parse_routes(text).iter().map(Route::key).collect();
    assert_eq!(
        found,
        vec![
            "GET /api/v1/orgs/{org_id}/budgets",
            "POST /api/v1/orgs/{org_id}/budgets",
            "GET /api/v1/orgs/{org_id}/budgets/{budget_id}",
            "PATCH /api/v1/orgs/{org_id}/budgets/{budget_id}",
            "DELETE /api/v1/orgs/{org_id}/budgets/{budget_id}",
            "PUT /api/v1/x",
        ]
    );
    let r = Route {
        method: "GET".into(),
        path: "/a/{org_id}/b/{key_id}".into(),
    };
    assert_eq!(r.placeholders(), vec!["org_id", "key_id"]);
}
