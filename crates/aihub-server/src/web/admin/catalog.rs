//! `/admin/providers`, `/admin/models`, `/admin/prices`: the gateway's catalog, through the
//! catalog service. A provider's credential is named (an environment variable or a file), never
//! typed in or shown back: the pages only say whether one is set. Prices are decimal amounts
//! per million tokens, parsed to integer micro-units by the service; a price is changed by
//! adding a new one that takes effect at a given time.

use super::super::pages::Form;
use aihub_core::config::ProviderKind;
use aihub_core::money::format_decimal_micros;
use aihub_service::ServiceError;
use aihub_service::catalog::{
    ModelInput, ModelRoute, Price, PriceInput, ProviderInput, ProviderSpec, Source,
};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{
    AdminSession, After, DoneQuery, FormError, admin_ctx, after_form, given, number, show_again,
};
use crate::state::AppState;
use crate::web::audit::parse_time;
use crate::web::pages::{Ctx, Session, render};

/// The provider kinds a form offers.
const KINDS: [ProviderKind; 4] = [
    ProviderKind::Openai,
    ProviderKind::Azure,
    ProviderKind::Anthropic,
    ProviderKind::Mock,
];

// ---- Providers. ----

#[derive(Debug, Default, Deserialize)]
pub struct ProviderForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    api_key_env: String,
    #[serde(default)]
    api_key_file: String,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    connect_timeout_ms: String,
    #[serde(default)]
    first_byte_timeout_ms: String,
    #[serde(default)]
    total_timeout_ms: String,
}

impl ProviderForm {
    fn of(p: &ProviderSpec) -> Self {
        Self {
            name: p.name.clone(),
            kind: p.kind.as_str().to_owned(),
            base_url: p.base_url.clone().unwrap_or_default(),
            api_key_env: p.api_key_env.clone().unwrap_or_default(),
            api_key_file: p.api_key_file.clone().unwrap_or_default(),
            api_version: p.api_version.clone().unwrap_or_default(),
            connect_timeout_ms: p.connect_timeout.as_millis().to_string(),
            first_byte_timeout_ms: p.first_byte_timeout.as_millis().to_string(),
            total_timeout_ms: p.total_timeout.as_millis().to_string(),
        }
    }

    fn input(&self, name: &str) -> Result<ProviderInput, ServiceError> {
        let kind = self.kind.trim().parse::<ProviderKind>().map_err(|_| {
            ServiceError::invalid(
                "invalid_kind",
                "kind must be openai, azure, anthropic or mock",
            )
        })?;
        Ok(ProviderInput {
            name: name.trim().to_owned(),
            kind,
            base_url: given(&self.base_url),
            api_key_env: given(&self.api_key_env),
            api_key_file: given(&self.api_key_file),
            api_version: given(&self.api_version),
            connect_timeout_ms: number("connect_timeout_ms", &self.connect_timeout_ms)?,
            first_byte_timeout_ms: number("first_byte_timeout_ms", &self.first_byte_timeout_ms)?,
            total_timeout_ms: number("total_timeout_ms", &self.total_timeout_ms)?,
            mock_latency_ms: None,
            mock_chunk_interval_ms: None,
        })
    }
}

pub struct ProviderRow {
    pub name: String,
    pub kind: &'static str,
    pub base_url: String,
    /// Where the credential comes from (`env: NAME`, `file: name`), if named.
    pub credential: String,
    pub has_key: bool,
    pub editable: bool,
}

fn provider_row(p: &ProviderSpec) -> ProviderRow {
    let credential = match (&p.api_key_env, &p.api_key_file) {
        (Some(env), _) => format!("env: {env}"),
        (None, Some(file)) => format!("file: {file}"),
        (None, None) => String::new(),
    };
    ProviderRow {
        name: p.name.clone(),
        kind: p.kind.as_str(),
        base_url: p.base_url.clone().unwrap_or_default(),
        credential,
        has_key: p.api_key.is_some(),
        editable: p.source == Source::Admin,
    }
}

#[derive(Template)]
#[template(path = "admin_providers.html")]
struct ProvidersPage {
    ctx: Ctx,
    tab: &'static str,
    kinds: Vec<&'static str>,
    rows: Vec<ProviderRow>,
    form: ProviderForm,
    error: Option<FormError>,
    notice: Option<&'static str>,
}

fn kinds() -> Vec<&'static str> {
    KINDS.iter().map(ProviderKind::as_str).collect()
}

fn providers_page(
    state: &AppState,
    session: &Session,
    form: ProviderForm,
    error: Option<FormError>,
    notice: Option<&'static str>,
) -> Result<ProvidersPage, ServiceError> {
    let list = state.services.catalog.list_providers(&session.actor)?;
    Ok(ProvidersPage {
        ctx: admin_ctx(session, "/admin/providers"),
        tab: "providers",
        kinds: kinds(),
        rows: list.iter().map(|p| provider_row(p)).collect(),
        form,
        error,
        notice,
    })
}

pub async fn providers(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Query(q): Query<DoneQuery>,
) -> Response {
    let notice = q.notice(session.lang.strings());
    session.page(providers_page(
        &state,
        &session,
        ProviderForm::default(),
        None,
        notice,
    ))
}

pub async fn create_provider(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Form(form): Form<ProviderForm>,
) -> Response {
    let result = match form.input(&form.name) {
        Ok(input) => {
            state
                .services
                .catalog
                .put_provider(&session.actor, input, false)
                .await
        }
        Err(e) => Err(e),
    };
    let e = match after_form(&session, result, "/admin/providers?done=1") {
        After::Again(e) => e,
        After::Done(answer) => return answer,
    };
    show_again(
        &session,
        providers_page(&state, &session, form, Some(e), None),
    )
}

#[derive(Template)]
#[template(path = "admin_provider_edit.html")]
struct ProviderEditPage {
    ctx: Ctx,
    kinds: Vec<&'static str>,
    has_key: bool,
    form: ProviderForm,
    error: Option<FormError>,
}

pub async fn edit_provider(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Path(name): Path<String>,
) -> Response {
    let found = state
        .services
        .catalog
        .list_providers(&session.actor)
        .and_then(|list| {
            list.into_iter()
                .find(|p| p.name == name)
                .ok_or(ServiceError::NotFound)
        });
    match found {
        Ok(p) => {
            let page = ProviderEditPage {
                ctx: admin_ctx(&session, "/admin/providers"),
                kinds: kinds(),
                has_key: p.api_key.is_some(),
                form: ProviderForm::of(&p),
                error: None,
            };
            render(StatusCode::OK, &page)
        }
        Err(e) => session.error(e),
    }
}

pub async fn update_provider(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Path(name): Path<String>,
    Form(mut form): Form<ProviderForm>,
) -> Response {
    let result = match form.input(&name) {
        Ok(input) => {
            state
                .services
                .catalog
                .put_provider(&session.actor, input, true)
                .await
        }
        Err(e) => Err(e),
    };
    let e = match after_form(&session, result, "/admin/providers?done=1") {
        After::Again(e) => e,
        After::Done(answer) => return answer,
    };
    let has_key = state
        .services
        .catalog
        .list_providers(&session.actor)
        .map(|list| list.iter().any(|p| p.name == name && p.api_key.is_some()));
    form.name = name;
    show_again(
        &session,
        has_key.map(|has_key| ProviderEditPage {
            ctx: admin_ctx(&session, "/admin/providers"),
            kinds: kinds(),
            has_key,
            form,
            error: Some(e),
        }),
    )
}

// ---- Models. ----

#[derive(Debug, Default, Deserialize)]
pub struct ModelForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    upstream_model: String,
}

impl ModelForm {
    fn input(&self, name: &str) -> ModelInput {
        ModelInput {
            name: name.trim().to_owned(),
            provider: self.provider.trim().to_owned(),
            upstream_model: given(&self.upstream_model),
        }
    }
}

pub struct ModelRow {
    pub name: String,
    pub provider: String,
    pub upstream_model: String,
    pub editable: bool,
}

fn model_row(m: &ModelRoute) -> ModelRow {
    ModelRow {
        name: m.name.clone(),
        provider: m.provider.clone(),
        upstream_model: m.upstream_model.clone(),
        editable: m.source == Source::Admin,
    }
}

#[derive(Template)]
#[template(path = "admin_models.html")]
struct ModelsPage {
    ctx: Ctx,
    tab: &'static str,
    providers: Vec<String>,
    rows: Vec<ModelRow>,
    form: ModelForm,
    /// The model being edited; `None`: the create form.
    editing: Option<String>,
    error: Option<FormError>,
    notice: Option<&'static str>,
}

fn models_page(
    state: &AppState,
    session: &Session,
    form: ModelForm,
    editing: Option<String>,
    error: Option<FormError>,
    notice: Option<&'static str>,
) -> Result<ModelsPage, ServiceError> {
    let catalog = &state.services.catalog;
    let providers = catalog.list_providers(&session.actor)?;
    let models = catalog.list_models(&session.actor)?;
    Ok(ModelsPage {
        ctx: admin_ctx(session, "/admin/models"),
        tab: "models",
        providers: providers.iter().map(|p| p.name.clone()).collect(),
        rows: models.iter().map(model_row).collect(),
        form,
        editing,
        error,
        notice,
    })
}

pub async fn models(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Query(q): Query<DoneQuery>,
) -> Response {
    let notice = q.notice(session.lang.strings());
    session.page(models_page(
        &state,
        &session,
        ModelForm::default(),
        None,
        None,
        notice,
    ))
}

/// The models page with the form filled in with one model, to change it.
pub async fn edit_model(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Path(name): Path<String>,
) -> Response {
    let found = state
        .services
        .catalog
        .list_models(&session.actor)
        .and_then(|list| {
            list.into_iter()
                .find(|m| m.name == name)
                .ok_or(ServiceError::NotFound)
        });
    let page = found.and_then(|m| {
        let form = ModelForm {
            name: m.name.clone(),
            provider: m.provider,
            upstream_model: m.upstream_model,
        };
        models_page(&state, &session, form, Some(m.name), None, None)
    });
    session.page(page)
}

pub async fn create_model(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Form(form): Form<ModelForm>,
) -> Response {
    let result = state
        .services
        .catalog
        .put_model(&session.actor, form.input(&form.name), false)
        .await;
    let e = match after_form(&session, result, "/admin/models?done=1") {
        After::Again(e) => e,
        After::Done(answer) => return answer,
    };
    show_again(
        &session,
        models_page(&state, &session, form, None, Some(e), None),
    )
}

pub async fn update_model(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Path(name): Path<String>,
    Form(mut form): Form<ModelForm>,
) -> Response {
    let result = state
        .services
        .catalog
        .put_model(&session.actor, form.input(&name), true)
        .await;
    form.name.clone_from(&name);
    let e = match after_form(&session, result, "/admin/models?done=1") {
        After::Again(e) => e,
        After::Done(answer) => return answer,
    };
    show_again(
        &session,
        models_page(&state, &session, form, Some(name), Some(e), None),
    )
}

// ---- Prices. ----

#[derive(Debug, Default, Deserialize)]
pub struct PriceForm {
    #[serde(default)]
    model: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    input: String,
    #[serde(default)]
    cached_input: String,
    #[serde(default)]
    output: String,
    #[serde(default)]
    effective_from: String,
}

impl PriceForm {
    fn input(&self) -> Result<PriceInput, ServiceError> {
        let effective_from = parse_time(&self.effective_from).map_err(|()| {
            ServiceError::invalid(
                "invalid_effective_from",
                "effective from is not a date and time",
            )
        })?;
        Ok(PriceInput {
            model: self.model.trim().to_owned(),
            currency: self.currency.trim().to_owned(),
            input: self.input.trim().to_owned(),
            cached_input: given(&self.cached_input),
            output: self.output.trim().to_owned(),
            effective_from,
        })
    }
}

pub struct PriceRow {
    pub id: String,
    pub model: String,
    pub currency: String,
    pub input: String,
    pub cached_input: String,
    pub output: String,
    pub effective_from: String,
    pub source: String,
}

fn price_row(p: &Price) -> PriceRow {
    PriceRow {
        id: p.id.to_string(),
        model: p.model.clone(),
        currency: p.currency.to_string(),
        input: format_decimal_micros(p.input_micros),
        cached_input: p
            .cached_input_micros
            .map(format_decimal_micros)
            .unwrap_or_default(),
        output: format_decimal_micros(p.output_micros),
        effective_from: p.effective_from.format("%Y-%m-%d %H:%M UTC").to_string(),
        source: p.source.clone(),
    }
}

#[derive(Template)]
#[template(path = "admin_prices.html")]
struct PricesPage {
    ctx: Ctx,
    tab: &'static str,
    models: Vec<String>,
    rows: Vec<PriceRow>,
    form: PriceForm,
    error: Option<FormError>,
    notice: Option<&'static str>,
}

fn prices_page(
    state: &AppState,
    session: &Session,
    form: PriceForm,
    error: Option<FormError>,
    notice: Option<&'static str>,
) -> Result<PricesPage, ServiceError> {
    let catalog = &state.services.catalog;
    let models = catalog.list_models(&session.actor)?;
    let prices = catalog.list_prices(&session.actor)?;
    Ok(PricesPage {
        ctx: admin_ctx(session, "/admin/prices"),
        tab: "prices",
        models: models.into_iter().map(|m| m.name).collect(),
        rows: prices.iter().map(price_row).collect(),
        form,
        error,
        notice,
    })
}

/// `?from=<price id>` fills the form with that price, to enter its successor.
#[derive(Debug, Default, Deserialize)]
pub struct PricesQuery {
    from: Option<String>,
    #[serde(flatten)]
    done: DoneQuery,
}

pub async fn prices(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Query(q): Query<PricesQuery>,
) -> Response {
    let notice = q.done.notice(session.lang.strings());
    let page = prices_page(&state, &session, PriceForm::default(), None, notice).map(|mut page| {
        let from = q.from.as_deref().unwrap_or_default();
        page.form = page.rows.iter().find(|r| r.id == from).map_or_else(
            || PriceForm {
                currency: "USD".into(),
                ..PriceForm::default()
            },
            |r| PriceForm {
                model: r.model.clone(),
                currency: r.currency.clone(),
                input: r.input.clone(),
                cached_input: r.cached_input.clone(),
                output: r.output.clone(),
                effective_from: String::new(),
            },
        );
        page
    });
    session.page(page)
}

pub async fn add_price(
    State(state): State<AppState>,
    AdminSession(session): AdminSession,
    Form(form): Form<PriceForm>,
) -> Response {
    let result = match form.input() {
        Ok(input) => {
            state
                .services
                .catalog
                .add_price(&session.actor, input)
                .await
        }
        Err(e) => Err(e),
    };
    let e = match after_form(&session, result, "/admin/prices?done=1") {
        After::Again(e) => e,
        After::Done(answer) => return answer,
    };
    show_again(&session, prices_page(&state, &session, form, Some(e), None))
}
