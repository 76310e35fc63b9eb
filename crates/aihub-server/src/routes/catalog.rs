//! The catalog, managed by platform admins: providers (credentials only by reference, never
//! returned), the models routed to them, and prices per million tokens. Entries declared in the
//! configuration file are listed but read-only here.

use aihub_core::config::ProviderKind;
use aihub_core::money::format_decimal_micros;
use aihub_service::catalog::{
    ModelInput, ModelRoute, Price, PriceInput, ProviderInput, ProviderSpec,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, CurrentUser};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/admin/providers",
            get(list_providers).post(create_provider),
        )
        .route(
            "/api/v1/admin/providers/{name}",
            put(replace_provider).delete(delete_provider),
        )
        .route("/api/v1/admin/models", get(list_models).post(create_model))
        .route(
            "/api/v1/admin/models/{name}",
            put(replace_model).delete(delete_model),
        )
        .route("/api/v1/admin/prices", get(list_prices).post(add_price))
}

/// A provider as the API shows it: where its credential comes from, never the credential.
#[derive(Serialize)]
struct ProviderView {
    name: String,
    kind: &'static str,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<String>,
    has_api_key: bool,
    api_version: Option<String>,
    connect_timeout_ms: u128,
    first_byte_timeout_ms: u128,
    total_timeout_ms: u128,
    mock_latency_ms: u128,
    mock_chunk_interval_ms: u128,
    /// `config` (read-only here) or `admin`.
    source: &'static str,
}

impl From<&ProviderSpec> for ProviderView {
    fn from(p: &ProviderSpec) -> Self {
        Self {
            name: p.name.clone(),
            kind: p.kind.as_str(),
            base_url: p.base_url.clone(),
            api_key_env: p.api_key_env.clone(),
            api_key_file: p.api_key_file.clone(),
            has_api_key: p.api_key.is_some(),
            api_version: p.api_version.clone(),
            connect_timeout_ms: p.connect_timeout.as_millis(),
            first_byte_timeout_ms: p.first_byte_timeout.as_millis(),
            total_timeout_ms: p.total_timeout.as_millis(),
            mock_latency_ms: p.mock_latency.as_millis(),
            mock_chunk_interval_ms: p.mock_chunk_interval.as_millis(),
            source: p.source.as_str(),
        }
    }
}

#[derive(Serialize)]
struct ListView<T> {
    data: Vec<T>,
}

async fn list_providers(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
) -> Result<Json<ListView<ProviderView>>, ApiError> {
    let list = state.services.catalog.list_providers(&actor)?;
    Ok(Json(ListView {
        data: list
            .iter()
            .map(|p| ProviderView::from(p.as_ref()))
            .collect(),
    }))
}

/// Credentials are given as an environment variable name or a file name, never as a value.
/// `name` is required on create; on replace it comes from the path (and must match if given).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderBody {
    name: Option<String>,
    kind: ProviderKind,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<String>,
    api_version: Option<String>,
    connect_timeout_ms: Option<u64>,
    first_byte_timeout_ms: Option<u64>,
    total_timeout_ms: Option<u64>,
    mock_latency_ms: Option<u64>,
    mock_chunk_interval_ms: Option<u64>,
}

fn provider_input(name: String, b: ProviderBody) -> ProviderInput {
    ProviderInput {
        name,
        kind: b.kind,
        base_url: b.base_url,
        api_key_env: b.api_key_env,
        api_key_file: b.api_key_file,
        api_version: b.api_version,
        connect_timeout_ms: b.connect_timeout_ms,
        first_byte_timeout_ms: b.first_byte_timeout_ms,
        total_timeout_ms: b.total_timeout_ms,
        mock_latency_ms: b.mock_latency_ms,
        mock_chunk_interval_ms: b.mock_chunk_interval_ms,
    }
}

async fn create_provider(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiJson(mut body): ApiJson<ProviderBody>,
) -> Result<Response, ApiError> {
    let Some(name) = body.name.take() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "missing field `name`",
        ));
    };
    let p = state
        .services
        .catalog
        .put_provider(&actor, provider_input(name, body), false)
        .await?;
    Ok((StatusCode::CREATED, Json(ProviderView::from(p.as_ref()))).into_response())
}

async fn replace_provider(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ProviderBody>,
) -> Result<Json<ProviderView>, ApiError> {
    if body.name.as_ref().is_some_and(|n| *n != name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "`name` cannot be changed",
        ));
    }
    let p = state
        .services
        .catalog
        .put_provider(&actor, provider_input(name, body), true)
        .await?;
    Ok(Json(ProviderView::from(p.as_ref())))
}

async fn delete_provider(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .catalog
        .delete_provider(&actor, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct ModelView {
    name: String,
    provider: String,
    upstream_model: String,
    source: &'static str,
}

impl From<&ModelRoute> for ModelView {
    fn from(m: &ModelRoute) -> Self {
        Self {
            name: m.name.clone(),
            provider: m.provider.clone(),
            upstream_model: m.upstream_model.clone(),
            source: m.source.as_str(),
        }
    }
}

async fn list_models(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
) -> Result<Json<ListView<ModelView>>, ApiError> {
    let list = state.services.catalog.list_models(&actor)?;
    Ok(Json(ListView {
        data: list.iter().map(ModelView::from).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelBody {
    provider: String,
    upstream_model: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewModelBody {
    name: String,
    provider: String,
    upstream_model: Option<String>,
}

async fn create_model(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiJson(b): ApiJson<NewModelBody>,
) -> Result<Response, ApiError> {
    let input = ModelInput {
        name: b.name,
        provider: b.provider,
        upstream_model: b.upstream_model,
    };
    let m = state
        .services
        .catalog
        .put_model(&actor, input, false)
        .await?;
    Ok((StatusCode::CREATED, Json(ModelView::from(&m))).into_response())
}

async fn replace_model(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<ModelBody>,
) -> Result<Json<ModelView>, ApiError> {
    let input = ModelInput {
        name,
        provider: b.provider,
        upstream_model: b.upstream_model,
    };
    let m = state
        .services
        .catalog
        .put_model(&actor, input, true)
        .await?;
    Ok(Json(ModelView::from(&m)))
}

async fn delete_model(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.services.catalog.delete_model(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A price per million tokens: exact decimals (and the same in micro-units).
#[derive(Serialize)]
struct PriceView {
    id: String,
    model: String,
    currency: String,
    input: String,
    cached_input: Option<String>,
    output: String,
    input_micros: i64,
    cached_input_micros: Option<i64>,
    output_micros: i64,
    effective_from: DateTime<Utc>,
    source: String,
}

impl From<&Price> for PriceView {
    fn from(p: &Price) -> Self {
        Self {
            id: p.id.to_string(),
            model: p.model.clone(),
            currency: p.currency.to_string(),
            input: format_decimal_micros(p.input_micros),
            cached_input: p.cached_input_micros.map(format_decimal_micros),
            output: format_decimal_micros(p.output_micros),
            input_micros: p.input_micros,
            cached_input_micros: p.cached_input_micros,
            output_micros: p.output_micros,
            effective_from: p.effective_from,
            source: p.source.clone(),
        }
    }
}

async fn list_prices(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
) -> Result<Json<ListView<PriceView>>, ApiError> {
    let list = state.services.catalog.list_prices(&actor)?;
    Ok(Json(ListView {
        data: list.iter().map(PriceView::from).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceBody {
    model: String,
    currency: String,
    input: String,
    cached_input: Option<String>,
    output: String,
    effective_from: Option<DateTime<Utc>>,
}

async fn add_price(
    State(state): State<AppState>,
    CurrentUser(actor): CurrentUser,
    ApiJson(b): ApiJson<PriceBody>,
) -> Result<Response, ApiError> {
    let input = PriceInput {
        model: b.model,
        currency: b.currency,
        input: b.input,
        cached_input: b.cached_input,
        output: b.output,
        effective_from: b.effective_from,
    };
    let p = state.services.catalog.add_price(&actor, input).await?;
    Ok((StatusCode::CREATED, Json(PriceView::from(&p))).into_response())
}
