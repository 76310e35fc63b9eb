//! Dashboard languages: English and Simplified Chinese. Every string a page shows comes from one
//! [`Strings`] table per language (`en.rs`, `zh_cn.rs`); a table missing a key, or with a key the
//! other lacks, does not compile. The language is the `lang` cookie if set, else the best match
//! of `Accept-Language`, else English.

mod en;
mod zh_cn;

use axum::http::HeaderMap;
use axum::http::header::{ACCEPT_LANGUAGE, COOKIE};

/// Name of the cookie that remembers a chosen language.
pub const LANG_COOKIE: &str = "lang";

/// A language of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    ZhCn,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// The BCP 47 tag: `<html lang>`, the cookie value, the switcher's links.
    #[must_use]
    pub const fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language's name in itself, for the switcher (the same in every language).
    #[must_use]
    pub const fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "简体中文",
        }
    }

    #[must_use]
    pub const fn strings(self) -> &'static Strings {
        match self {
            Lang::En => &en::EN,
            Lang::ZhCn => &zh_cn::ZH_CN,
        }
    }

    /// Parses a tag as the cookie or a switcher link carries it; any Chinese tag means
    /// Simplified Chinese, the only Chinese we have.
    #[must_use]
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else if primary.eq_ignore_ascii_case("zh") {
            Some(Lang::ZhCn)
        } else {
            None
        }
    }

    /// The `lang` cookie if it names a language we have, else the `Accept-Language` entry with
    /// the highest weight that we have (the first of equals), else English.
    #[must_use]
    pub fn negotiate(headers: &HeaderMap) -> Lang {
        if let Some(lang) = cookie(headers, LANG_COOKIE).and_then(|v| Lang::from_tag(&v)) {
            return lang;
        }
        let mut best: Option<(Lang, u16)> = None;
        for header in headers.get_all(ACCEPT_LANGUAGE) {
            let Ok(value) = header.to_str() else { continue };
            for entry in value.split(',') {
                let mut parts = entry.split(';');
                let tag = parts.next().unwrap_or_default().trim();
                let weight = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1000), parse_weight);
                let (Some(lang), Some(weight)) = (Lang::from_tag(tag), weight) else {
                    continue;
                };
                if weight > 0 && best.is_none_or(|(_, w)| weight > w) {
                    best = Some((lang, weight));
                }
            }
        }
        best.map_or(Lang::En, |(lang, _)| lang)
    }
}

/// A `q` value (`0`, `0.5`, `1.000`) in thousandths; `None` if malformed.
fn parse_weight(q: &str) -> Option<u16> {
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        let scale = [100, 10, 1].get(i).copied().unwrap_or(0);
        thousandths += u16::from(b - b'0') * scale;
    }
    (whole + thousandths <= 1000).then_some(whole + thousandths)
}

/// The value of the first cookie called `name`.
#[must_use]
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, v)| *n == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

/// Declares [`Strings`] with one `&'static str` field per key, and the list of its entries.
macro_rules! strings {
    ($($key:ident),* $(,)?) => {
        /// Every text of the dashboard in one language. Adding a field makes every language
        /// file fail to compile until it has a value there.
        #[derive(Debug)]
        pub struct Strings {
            $(pub $key: &'static str,)*
        }

        impl Strings {
            /// `(key, text)` for every key, in declaration order.
            #[must_use]
            pub fn entries(&self) -> Vec<(&'static str, &'static str)> {
                vec![$((stringify!($key), self.$key)),*]
            }
        }
    };
}

strings! {
    app_name,
    nav_overview,
    nav_keys,
    language,
    signed_in_as,
    sign_in,
    sign_in_title,
    sign_up,
    sign_up_title,
    sign_out,
    email,
    password,
    password_hint,
    display_name,
    optional,
    no_account,
    have_account,
    account_created,
    organization,
    switch_org,
    personal_org,
    role,
    overview_title,
    today,
    this_month,
    requests,
    errors,
    tokens,
    tokens_detail,
    spend,
    days_in_utc,
    keys_title,
    keys_intro,
    create_key,
    key_name,
    key_models,
    key_models_hint,
    key_expires,
    key_expires_hint,
    key_prefix,
    key_created_at,
    key_last_used,
    key_status,
    actions,
    status_active,
    status_revoked,
    status_expired,
    never,
    all_models,
    no_keys,
    older_keys,
    cannot_create_keys,
    revoke,
    revoke_title,
    revoke_warning,
    cancel,
    key_revoked,
    secret_title,
    secret_warning,
    copy,
    copied,
    back_to_keys,
    error_title,
    error_code,
    back_to_overview,
    err_invalid_credentials,
    err_too_many_attempts,
    err_account_disabled,
    err_registration_disabled,
    err_email_taken,
    err_invalid_email,
    err_invalid_password,
    err_invalid_input,
    err_unauthorized,
    err_forbidden,
    err_not_found,
    err_conflict,
    err_csrf,
    err_internal,
    err_bad_request,
    invitation_title,
    invitation_text,
    accept_invitation,
    decline_invitation,
    err_invitation_gone,
    // organization pages
    nav_org,
    org_settings,
    org_members,
    org_teams,
    org_invitations,
    org_done_renamed,
    org_done_created,
    org_done_transferred,
    org_done_member,
    org_done_removed,
    org_done_team,
    org_done_team_deleted,
    org_done_invited,
    org_done_invited_unsent,
    org_done_revoked,
    org_role_owner,
    org_role_admin,
    org_role_member,
    org_role_viewer,
    org_role_platform,
    org_personal_hint,
    org_name,
    org_save,
    org_create,
    org_transfer,
    org_transfer_hint,
    org_no_heirs,
    org_transfer_confirm,
    org_new_owner,
    org_leave,
    org_leave_hint,
    org_leave_confirm,
    org_delete,
    org_delete_warning,
    org_delete_type_name,
    org_joined,
    org_you,
    org_remove,
    org_remove_warning,
    org_more,
    org_team_create,
    org_team_name,
    org_no_teams,
    org_team,
    org_team_add,
    org_team_empty,
    org_added,
    org_team_delete,
    org_team_delete_warning,
    org_invite,
    org_no_invitations,
    org_invited_by,
    org_expires,
    org_resend,
    org_revoke_confirm,
    org_invite_pending,
    org_invite_expired,
    org_invite_accepted,
    org_invite_declined,
    org_invite_revoked,
    // audit log, platform admin, account
    audit_nav,
    audit_title,
    audit_platform_title,
    audit_intro,
    audit_filters,
    audit_actor,
    audit_actor_hint,
    audit_action,
    audit_action_hint,
    audit_target_type,
    audit_target_id,
    audit_from,
    audit_to,
    audit_times_utc,
    audit_apply,
    audit_reset,
    audit_export_csv,
    audit_export_json,
    audit_none,
    audit_time,
    audit_target,
    audit_ip,
    audit_request_id,
    audit_details,
    audit_user_agent,
    audit_before,
    audit_after,
    audit_older,
    audit_system,
    audit_invalid_filter,
    admin_nav,
    admin_users,
    admin_orgs,
    admin_plans,
    admin_providers,
    admin_models,
    admin_prices,
    admin_saved,
    admin_search_email,
    admin_search,
    admin_no_users,
    admin_created,
    admin_platform_admin,
    admin_disabled,
    admin_disable,
    admin_enable,
    admin_disable_title,
    admin_disable_warning,
    admin_older,
    admin_no_orgs,
    admin_plan,
    admin_no_plan,
    admin_assign_plan,
    admin_plan_name,
    admin_rpm,
    admin_tpm,
    admin_concurrency,
    admin_monthly_tokens,
    admin_monthly_spend,
    admin_currency,
    admin_amount_hint,
    admin_empty_unlimited,
    admin_unlimited,
    admin_edit,
    admin_save,
    admin_create,
    admin_new_plan,
    admin_edit_plan,
    admin_none,
    admin_name,
    admin_kind,
    admin_base_url,
    admin_credential,
    admin_key_set,
    admin_yes,
    admin_no,
    admin_from_config,
    admin_new_provider,
    admin_edit_provider,
    admin_key_env,
    admin_key_file,
    admin_key_hint,
    admin_api_version,
    admin_connect_timeout,
    admin_first_byte_timeout,
    admin_total_timeout,
    admin_provider,
    admin_upstream_model,
    admin_new_model,
    admin_edit_model,
    admin_prices_intro,
    admin_model,
    admin_input_price,
    admin_cached_price,
    admin_output_price,
    admin_effective_from,
    admin_effective_hint,
    admin_price_hint,
    admin_new_price,
    admin_new_version,
    account_title,
    account_profile,
    account_since,
    account_change_password,
    account_current_password,
    account_new_password,
    account_repeat_password,
    account_password_sessions,
    account_password_changed,
    account_wrong_password,
    account_password_too_short,
    account_password_too_long,
    account_password_mismatch,
    // API keys, budgets and alerts, rate limits
    keys_rpm,
    keys_tpm,
    keys_concurrent,
    keys_saved,
    keys_team,
    keys_no_team,
    keys_limits,
    keys_budget,
    keys_rotate,
    keys_rotate_title,
    keys_rotate_warning,
    keys_edit,
    keys_save,
    keys_limits_hint,
    keys_budget_remove,
    budget_nav,
    budget_title,
    budget_intro,
    budget_none,
    budget_name,
    budget_scope,
    budget_period,
    budget_spent_of,
    budget_resets,
    budget_edit,
    budget_view,
    budget_create,
    budget_scope_id,
    budget_scope_id_hint,
    budget_amount,
    budget_amount_hint,
    budget_currency,
    budget_cannot_manage,
    budget_back,
    budget_save,
    budget_delete,
    budget_delete_confirm,
    budget_created,
    budget_saved,
    budget_deleted,
    budget_never_resets,
    budget_scope_key,
    budget_scope_user,
    budget_scope_team,
    budget_scope_org,
    budget_period_daily,
    budget_period_weekly,
    budget_period_monthly,
    budget_period_total,
    budget_above_user,
    budget_bad_scope,
    budget_bad_currency,
    budget_amount_not_number,
    budget_amount_negative,
    budget_amount_decimals,
    budget_amount_zero,
    alert_title,
    alert_none,
    alert_time,
    alert_budget,
    alert_threshold,
    alert_webhook,
    alert_email,
    alert_thresholds,
    alert_thresholds_hint,
    alert_webhook_hint,
    alert_emails,
    alert_emails_hint,
    alert_rotate_secret,
    alert_rotate_confirm,
    alert_secret_title,
    alert_secret_warning,
    alert_pending,
    alert_delivered,
    alert_failed,
    alert_not_sent,
    alert_bad_thresholds,
    alert_bad_webhook,
    alert_bad_emails,
    limit_nav,
    limit_title,
    limit_intro,
    limit_none,
    limit_model,
    limit_rpm,
    limit_tpm,
    limit_concurrency,
    limit_save,
    limit_delete,
    limit_delete_confirm,
    limit_create,
    limit_model_hint,
    limit_empty_hint,
    limit_cannot_manage,
    limit_created,
    limit_saved,
    limit_deleted,
    limit_above_user,
    limit_exists,
    limit_bad_value,
    limit_bad_model,
    // usage and overview
    usage_nav,
    usage_title,
    usage_from,
    usage_to,
    usage_by,
    usage_by_model,
    usage_by_key,
    usage_by_user,
    usage_by_team,
    usage_show,
    usage_range_hint,
    usage_download_csv,
    usage_cost,
    usage_other,
    usage_no_model,
    usage_no_key,
    usage_no_user,
    usage_no_team,
    usage_deleted_key,
    usage_deleted_user,
    usage_deleted_team,
    usage_totals,
    usage_no_data,
    usage_recent,
    usage_no_requests,
    usage_time,
    usage_status,
    usage_latency,
    usage_older,
    usage_err_date,
    usage_err_reversed,
    usage_err_too_long,
    usage_err_by,
    overview_quota,
    overview_plan,
    overview_no_plan,
    overview_no_quota,
    overview_budgets,
    overview_no_budgets,
    overview_period_daily,
    overview_period_weekly,
    overview_period_monthly,
    overview_period_total,
    overview_recent_errors,
    overview_no_errors,
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn every_language_has_the_same_keys_and_no_empty_text() {
        let reference: Vec<&str> = Lang::En.strings().entries().iter().map(|e| e.0).collect();
        for lang in Lang::ALL {
            let entries = lang.strings().entries();
            let keys: Vec<&str> = entries.iter().map(|e| e.0).collect();
            assert_eq!(keys, reference, "{}", lang.tag());
            for (key, text) in entries {
                assert!(!text.trim().is_empty(), "{}: `{key}` is empty", lang.tag());
                assert_eq!(
                    text,
                    text.trim(),
                    "{}: `{key}` has outer spaces",
                    lang.tag()
                );
            }
        }
        let unique: std::collections::BTreeSet<&str> = reference.iter().copied().collect();
        assert_eq!(unique.len(), reference.len(), "duplicate keys");
    }

    #[test]
    fn chinese_is_really_translated() {
        let en = Lang::En.strings().entries();
        let zh = Lang::ZhCn.strings().entries();
        // Brand names may stay; everything else must differ from the English text.
        let same: Vec<&str> = en
            .iter()
            .zip(&zh)
            .filter(|(e, z)| e.1 == z.1 && e.0 != "app_name")
            .map(|(e, _)| e.0)
            .collect();
        assert!(same.is_empty(), "untranslated: {same:?}");
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn language_from_cookie_then_accept_language() {
        assert_eq!(Lang::negotiate(&headers(&[])), Lang::En);
        assert_eq!(
            Lang::negotiate(&headers(&[("accept-language", "zh-CN,zh;q=0.9,en;q=0.8")])),
            Lang::ZhCn
        );
        assert_eq!(
            Lang::negotiate(&headers(&[("accept-language", "fr, en;q=0.5, zh;q=0.7")])),
            Lang::ZhCn
        );
        assert_eq!(
            Lang::negotiate(&headers(&[("accept-language", "zh;q=0, en-GB;q=0.1")])),
            Lang::En
        );
        assert_eq!(
            Lang::negotiate(&headers(&[("accept-language", "de, fr")])),
            Lang::En
        );
        assert_eq!(
            Lang::negotiate(&headers(&[("accept-language", "zh;q=2, en;q=0.3")])),
            Lang::En,
            "a malformed weight is ignored"
        );
        assert_eq!(
            Lang::negotiate(&headers(&[
                ("accept-language", "zh-CN"),
                ("cookie", "a=b; lang=en")
            ])),
            Lang::En
        );
        assert_eq!(
            Lang::negotiate(&headers(&[("cookie", "lang=zh-CN")])),
            Lang::ZhCn
        );
        assert_eq!(
            Lang::negotiate(&headers(&[
                ("accept-language", "zh-CN"),
                ("cookie", "lang=klingon")
            ])),
            Lang::ZhCn
        );
    }

    #[test]
    fn weights() {
        assert_eq!(parse_weight("1"), Some(1000));
        assert_eq!(parse_weight("0.5"), Some(500));
        assert_eq!(parse_weight("0.125"), Some(125));
        assert_eq!(parse_weight("1.000"), Some(1000));
        assert_eq!(parse_weight("1.5"), None);
        assert_eq!(parse_weight("0.1234"), None);
        assert_eq!(parse_weight("x"), None);
    }
}
