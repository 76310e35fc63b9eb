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
