//! `sevroute deliveries list|retry`: dead letters and other deliveries of
//! a running server, through its API (`--url`, by default the embedded
//! listen address). Replays keep each delivery's webhook-id, so receivers
//! dedupe a replay of something they did get.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::{Format, write_stdout};

/// What to do.
#[derive(Clone, Debug)]
pub enum Action {
    /// List deliveries.
    List {
        /// Only this status (`dead`, `failed_over`, `pending`, ...).
        status: Option<String>,
        /// Only those finished since this RFC 3339 time.
        since: Option<String>,
        /// At most this many.
        limit: usize,
    },
    /// Replay one delivery, or every one dead since a time.
    Retry {
        /// The delivery's id.
        id: Option<i64>,
        /// Every dead or failed-over delivery finished since this RFC 3339 time.
        since: Option<String>,
    },
}

/// Options shared by both actions.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server's base URL; `None` is the embedded listen address.
    pub url: Option<String>,
    /// The admin token; `None` reads `SEVROUTE__AUTH__ADMIN_TOKEN`.
    pub token: Option<String>,
    /// Output format.
    pub format: Format,
    /// What to do.
    pub action: Action,
}

/// The embedded default listen address, as a URL.
fn default_url() -> String {
    let listen = crate::config::Settings::from_sources(None, &[])
        .map(|s| s.server.listen)
        .unwrap_or_else(|_| "127.0.0.1:9797".into());
    format!("http://{listen}")
}

/// Runs the command; exit 1 when the server refuses.
pub fn run(options: &Options) -> anyhow::Result<ExitCode> {
    let base = options.url.clone().unwrap_or_else(default_url);
    let base = base.trim_end_matches('/').to_string();
    let token = options
        .token
        .clone()
        .or_else(|| std::env::var("SEVROUTE__AUTH__ADMIN_TOKEN").ok());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(call(&base, token.as_deref(), options))
}

async fn call(base: &str, token: Option<&str>, options: &Options) -> anyhow::Result<ExitCode> {
    crate::deliver::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let request = match &options.action {
        Action::List {
            status,
            since,
            limit,
        } => {
            let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            query.extend(status.clone().map(|s| ("status", s)));
            query.extend(since.clone().map(|s| ("since", s)));
            client.get(with_query(&format!("{base}/api/v1/deliveries"), &query)?)
        }
        Action::Retry {
            id: Some(id),
            since: None,
        } => client.post(format!("{base}/api/v1/deliveries/{id}/retry")),
        Action::Retry {
            id: None,
            since: Some(since),
        } => client.post(with_query(
            &format!("{base}/api/v1/deliveries/retry"),
            &[("since", since.clone())],
        )?),
        Action::Retry { .. } => bail!("give either a delivery id or --since, not both or neither"),
    };
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request
        .send()
        .await
        .map_err(|e| e.without_url())
        .with_context(|| format!("cannot reach the sevroute server at {base}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| e.without_url())
        .context("the server's answer is not JSON")?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        let code = body["error"]["code"].as_str().unwrap_or("error");
        eprintln!("sevroute: the server refused ({status}): {code}: {message}");
        return Ok(crate::cli::failed());
    }
    let text = match (options.format, &options.action) {
        (Format::Json, _) => format!("{}\n", serde_json::to_string_pretty(&body)?),
        (Format::Text, Action::List { .. }) => list_text(&body),
        (Format::Text, Action::Retry { .. }) => {
            let ids: Vec<String> = body["requeued"]
                .as_array()
                .map(|a| a.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            format!(
                "requeued {} deliveries{}{}\n",
                ids.len(),
                if ids.is_empty() { "" } else { ": " },
                ids.join(", ")
            )
        }
    };
    write_stdout(&text);
    Ok(crate::cli::OK)
}

/// `url` with its query parameters encoded.
fn with_query(url: &str, pairs: &[(&str, String)]) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(url).with_context(|| format!("--url: not a URL: {url}"))?;
    url.query_pairs_mut().extend_pairs(pairs);
    Ok(url)
}

/// One line per delivery: id, status, attempts, destination, action,
/// webhook-id, last error.
fn list_text(body: &Value) -> String {
    let Some(list) = body["deliveries"].as_array() else {
        return "no deliveries\n".into();
    };
    if list.is_empty() {
        return "no deliveries\n".into();
    }
    let mut out =
        String::from("ID\tSTATUS\tATTEMPTS\tDESTINATION\tACTION\tWEBHOOK-ID\tLAST ERROR\n");
    for d in list {
        let text = |key: &str| d[key].as_str().unwrap_or("").to_string();
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            d["id"],
            text("status"),
            d["attempts"],
            text("destination"),
            text("action"),
            text("webhook_id"),
            text("last_error").replace(['\n', '\t'], " "),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_is_the_embedded_listen_address() {
        assert_eq!(default_url(), "http://127.0.0.1:9797");
    }

    #[test]
    fn a_list_prints_one_line_per_delivery() {
        let body = serde_json::json!({"deliveries": [
            {"id": 7, "status": "dead", "attempts": 3, "destination": "pd", "action": "page",
             "webhook_id": "msg_x", "last_error": "http_400:\nbad"},
        ]});
        assert_eq!(
            list_text(&body),
            "ID\tSTATUS\tATTEMPTS\tDESTINATION\tACTION\tWEBHOOK-ID\tLAST ERROR\n\
             7\tdead\t3\tpd\tpage\tmsg_x\thttp_400: bad\n"
        );
        assert_eq!(
            list_text(&serde_json::json!({"deliveries": []})),
            "no deliveries\n"
        );
    }
}
