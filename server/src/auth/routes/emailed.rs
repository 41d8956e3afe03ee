//! The emailed flows: recovery, magic links and OTPs (`/recover`, `/otp`), and their verification (`/verify`, by POST or by following the link).

use super::*;

#[derive(Deserialize)]
pub(super) struct EmailBody {
    email: String,
    /// A PKCE client's (supabase-js `flowType: 'pkce'`).
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    code_challenge_method: Option<String>,
    #[serde(default)]
    create_user: Option<bool>,
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
}

pub(super) fn require_email(state: &AppState) -> Result<(), HttpError> {
    if state.email_enabled {
        Ok(())
    } else {
        Err(ErrorCode::EmailNotConfigured.into())
    }
}

/// Sends a password reset link. Known and unknown addresses get the same
/// answer after the same work (one queued job; the worker looks the address up).
pub(super) async fn recover(
    _: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<RedirectQuery>,
    body: Json<EmailBody>,
) -> Result<HttpResponse, HttpError> {
    queue_email(
        &state,
        &request,
        "recovery",
        &body,
        query.redirect_to.clone(),
    )
    .await
}

pub(super) async fn queue_email(
    state: &AppState,
    request: &HttpRequest,
    kind: &str,
    body: &EmailBody,
    redirect_to: Option<String>,
) -> Result<HttpResponse, HttpError> {
    require_email(state)?;
    let email = users::validate_email(&body.email)?;
    email::check_redirect(state, redirect_to.as_deref())?;
    let data = body.data.clone().map(Value::Object);
    if let Some(data) = &data {
        users::validate_metadata("data", data)?;
    }
    let action = if kind == "recovery" {
        "recovery"
    } else {
        "magiclink"
    };
    state
        .rate_limiter()
        .check_email(action, &email, Instant::now())?;
    let client = state.pool.get().await?;
    let email_request = email::EmailRequest {
        kind: kind.into(),
        email,
        user_id: None,
        new_email: None,
        redirect_to,
        create_user: body.create_user.unwrap_or(true),
        data,
        ip: Some(request_ip(request, &state.trusted_proxies)),
        code_challenge: email::Challenge::of(
            body.code_challenge.as_deref(),
            body.code_challenge_method.as_deref(),
        )?,
    };
    email::enqueue(state, &client, &email_request).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

#[derive(Deserialize)]
pub(super) struct ResendBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    email: Option<String>,
}

/// `POST /auth/v1/resend` (supabase-js `auth.resend`): the sign-up
/// confirmation again (`type: "signup"`, sent only while the address is
/// unconfirmed; the answer never tells), or the signed-in user's pending
/// email change (`type: "email_change"`). Phone types are not supported.
pub(super) async fn resend(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<RedirectQuery>,
    body: Json<ResendBody>,
) -> Result<HttpResponse, HttpError> {
    require_email(&state)?;
    email::check_redirect(&state, query.redirect_to.as_deref())?;
    let ip = Some(request_ip(&request, &state.trusted_proxies));
    let client = state.pool.get().await?;
    // What to send again, and to whom.
    let (kind, address, user_id) = match body.kind.as_str() {
        "signup" => {
            let email = users::validate_email(body.email.as_deref().unwrap_or(""))?;
            state
                .rate_limiter()
                .check_email("signup", &email, Instant::now())?;
            ("signup", email, None)
        }
        "email_change" => {
            let Some((user, _)) = caller.user else {
                return Err(ErrorCode::NoAuthorization.into());
            };
            let pending: Option<String> = client
                .query_one("SELECT new_email FROM auth.users WHERE id = $1", &[&user])
                .await?
                .get(0);
            let Some(new_email) = pending else {
                return Err(ApiError::new(ErrorCode::ValidationFailed)
                    .with_details("type: no email change is pending")
                    .into());
            };
            state
                .rate_limiter()
                .check_email("email_change", &new_email, Instant::now())?;
            ("email_change", new_email, Some(user))
        }
        other => {
            return Err(ApiError::new(ErrorCode::ValidationFailed)
                .with_details(format!(
                    "type: `{other}` is not signup or email_change (phone types are not supported)"
                ))
                .into())
        }
    };
    let email_request = email::EmailRequest {
        kind: kind.into(),
        email: address,
        user_id,
        new_email: None,
        redirect_to: query.redirect_to.clone(),
        create_user: false,
        data: None,
        ip,
        code_challenge: None,
    };
    email::enqueue(&state, &client, &email_request).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

/// Sends a magic sign-in link, creating the user first unless
/// `create_user: false`. The answer never tells whether the address is known.
pub(super) async fn otp(
    _: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<RedirectQuery>,
    body: Json<EmailBody>,
) -> Result<HttpResponse, HttpError> {
    queue_email(
        &state,
        &request,
        "magiclink",
        &body,
        query.redirect_to.clone(),
    )
    .await
}
/// `token` or `token_hash` (supabase-js `verifyOtp({token_hash, type})`).
#[derive(Deserialize)]
pub(super) struct VerifyBody {
    #[serde(rename = "type")]
    kind: String,
    /// A link's token (`token_hash`), or with `email` the emailed code.
    #[serde(alias = "token_hash")]
    token: String,
    #[serde(default)]
    email: Option<String>,
}

/// `email` (GoTrue's name for a link sent to the address) covers sign-up
/// confirmations and magic links.
pub(super) fn kinds_of(text: &str) -> Result<Vec<email::Kind>, HttpError> {
    if text == "email" {
        return Ok(vec![email::Kind::Signup, email::Kind::MagicLink]);
    }
    kind_of(text).map(|kind| vec![kind])
}

pub(super) async fn verify_any(
    state: &AppState,
    kinds: &[email::Kind],
    locator: email::Locator<'_>,
    request: &HttpRequest,
    flow: email::Flow,
) -> Result<email::Verified, HttpError> {
    let ip = request_ip(request, &state.trusted_proxies);
    let mut outcome = Err(HttpError::new(ErrorCode::OtpExpired));
    for kind in kinds {
        outcome = email::verify(state, *kind, locator, ip, user_agent(request), flow).await;
        if !matches!(&outcome, Err(error) if error.error.kind == ErrorCode::OtpExpired) {
            break;
        }
    }
    outcome
}

pub(super) fn kind_of(text: &str) -> Result<email::Kind, HttpError> {
    email::Kind::parse(text).ok_or_else(|| {
        ApiError::new(ErrorCode::ValidationFailed)
            .with_details("type: use signup, recovery, magiclink, email_change or email")
            .into()
    })
}

/// Spends an emailed token and answers with a session.
pub(super) async fn verify_post(
    _: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<VerifyBody>,
) -> Result<HttpResponse, HttpError> {
    let kinds = kinds_of(&body.kind)?;
    let locator = match body.email.as_deref() {
        Some(address) => email::Locator::Code {
            email: address.trim(),
            code: &body.token,
        },
        None => email::Locator::Token(&body.token),
    };
    let verified = verify_any(&state, &kinds, locator, &request, email::Flow::Call).await?;
    Ok(HttpResponse::Ok().json(verified.session))
}

#[derive(Deserialize)]
pub(super) struct VerifyQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(alias = "token_hash")]
    token: Option<String>,
    redirect_to: Option<String>,
}

/// The link in the email: spends the token and redirects (303) to the app with
/// the session in the URL fragment, or with `error` and `error_code` on failure.
/// Needs no API key: a mail client opens it.
pub(super) async fn verify_get(
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<VerifyQuery>,
) -> HttpResponse {
    let requested = query
        .redirect_to
        .clone()
        .filter(|url| email::check_redirect(&state, Some(url)).is_ok());
    let kind = query.kind.clone().unwrap_or_default();
    let outcome = match (kinds_of(&kind), &query.token) {
        (Ok(kinds), Some(token)) => {
            let locator = email::Locator::Token(token);
            verify_any(&state, &kinds, locator, &request, email::Flow::Link).await
        }
        (Err(error), _) => Err(error),
        (_, None) => Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details("token: required")
            .into()),
    };
    let (base, fragment) = match outcome {
        // A PKCE flow: the code goes to the app in the query, to be exchanged.
        Ok(email::Verified {
            auth_code: Some(code),
            redirect_to,
            ..
        }) => {
            let stored = redirect_to.filter(|url| email::check_redirect(&state, Some(url)).is_ok());
            let base = requested
                .or(stored)
                .unwrap_or_else(|| state.config.site_url.clone());
            let mut url = match url::Url::parse(base.split('#').next().unwrap_or_default()) {
                Ok(url) => url,
                Err(_) => {
                    return HttpResponse::SeeOther()
                        .insert_header(("location", base))
                        .finish()
                }
            };
            url.query_pairs_mut().append_pair("code", &code);
            return HttpResponse::SeeOther()
                .insert_header(("location", url.to_string()))
                .insert_header(("cache-control", "no-store"))
                .finish();
        }
        Ok(verified) => {
            let session = verified.session.unwrap_or_default();
            let session = &session;
            let mut fragment = url::form_urlencoded::Serializer::new(String::new());
            for key in [
                "access_token",
                "refresh_token",
                "expires_in",
                "expires_at",
                "token_type",
            ] {
                let value = match &session[key] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                fragment.append_pair(key, &value);
            }
            fragment.append_pair("type", &kind);
            let stored = verified
                .redirect_to
                .filter(|url| email::check_redirect(&state, Some(url)).is_ok());
            (requested.or(stored), fragment.finish())
        }
        Err(error) => {
            let fragment = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("error", "access_denied")
                .append_pair("error_code", error.error.code)
                .append_pair("error_description", &error.error.message)
                .finish();
            (requested, fragment)
        }
    };
    let base = base.unwrap_or_else(|| state.config.site_url.clone());
    let base = base.split('#').next().unwrap_or_default().to_owned();
    HttpResponse::SeeOther()
        .insert_header(("location", format!("{base}#{fragment}")))
        .insert_header(("cache-control", "no-store"))
        .finish()
}
