//! The request stage of the data API: the headers that shape a request
//! (`Prefer`, `Accept`, `Range`) parsed into types, so handlers match on
//! enums instead of strings. Pure and table-tested.

use super::error::{ProfileError, QueryError, RangeError};

/// `Prefer: count=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exact,
    Planned,
    Estimated,
}

/// `Prefer: return=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    HeadersOnly,
    Representation,
}

/// `Prefer: resolution=…` (an upsert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

impl Count {
    pub fn as_str(self) -> &'static str {
        match self {
            Count::Exact => "exact",
            Count::Planned => "planned",
            Count::Estimated => "estimated",
        }
    }
}

impl Return {
    pub fn as_str(self) -> &'static str {
        match self {
            Return::Minimal => "minimal",
            Return::HeadersOnly => "headers-only",
            Return::Representation => "representation",
        }
    }
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::MergeDuplicates => "merge-duplicates",
            Resolution::IgnoreDuplicates => "ignore-duplicates",
        }
    }
}

/// `Prefer` as RFC 7240 and PostgREST define it; preferences Basalt does not
/// know are ignored (and not listed in `Preference-Applied`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Prefer {
    pub return_: Option<Return>,
    pub count: Option<Count>,
    pub resolution: Option<Resolution>,
    pub missing_default: bool,
    pub max_affected: Option<i64>,
    /// `tx=rollback`: run the request, answer it, and roll it back (honoured
    /// only where the server allows it).
    pub rollback: bool,
}

impl Prefer {
    /// The values of every `Prefer` header of a request.
    pub fn parse<'a>(headers: impl IntoIterator<Item = &'a str>) -> Result<Prefer, QueryError> {
        let mut prefer = Prefer::default();
        let items = headers
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(str::trim);
        for item in items {
            let (name, value) = item.split_once('=').unwrap_or((item, ""));
            let value = value.trim();
            match (name.trim(), value) {
                ("return", "minimal") => prefer.return_ = Some(Return::Minimal),
                ("return", "headers-only") => prefer.return_ = Some(Return::HeadersOnly),
                ("return", "representation") => prefer.return_ = Some(Return::Representation),
                ("count", "exact") => prefer.count = Some(Count::Exact),
                ("count", "planned") => prefer.count = Some(Count::Planned),
                ("count", "estimated") => prefer.count = Some(Count::Estimated),
                ("resolution", "merge-duplicates") => {
                    prefer.resolution = Some(Resolution::MergeDuplicates)
                }
                ("resolution", "ignore-duplicates") => {
                    prefer.resolution = Some(Resolution::IgnoreDuplicates)
                }
                ("missing", "default") => prefer.missing_default = true,
                ("tx", "rollback") => prefer.rollback = true,
                ("tx", "commit") => prefer.rollback = false,
                ("max-affected", value) => {
                    prefer.max_affected =
                        Some(value.parse().map_err(|_| QueryError::MaxAffected {
                            value: value.into(),
                        })?)
                }
                _ => {}
            }
        }
        Ok(prefer)
    }

    /// The `Preference-Applied` header's value.
    pub fn applied(&self) -> String {
        let mut applied = Vec::new();
        if let Some(value) = self.return_ {
            applied.push(format!("return={}", value.as_str()));
        }
        if let Some(value) = self.count {
            applied.push(format!("count={}", value.as_str()));
        }
        if let Some(value) = self.resolution {
            applied.push(format!("resolution={}", value.as_str()));
        }
        if self.missing_default {
            applied.push("missing=default".into());
        }
        if let Some(value) = self.max_affected {
            applied.push(format!("max-affected={value}"));
        }
        if self.rollback {
            applied.push("tx=rollback".into());
        }
        applied.join(", ")
    }
}

/// The output formats a read can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Object,
    Csv,
    /// `application/geo+json`: a GeoJSON FeatureCollection (with PostGIS).
    GeoJson,
}

/// The GeoJSON media type.
pub const GEOJSON: &str = "application/geo+json";

/// The media type of a single object (`.single()` in supabase-js).
pub const OBJECT: &str = "application/vnd.pgrst.object+json";

/// The first media type in `Accept` that Basalt produces (q-values are not
/// weighed); `None` when it names none of them (406).
pub fn format(accept: Option<&str>) -> Option<Format> {
    let Some(accept) = accept else {
        return Some(Format::Json);
    };
    accept.split(',').find_map(
        |media| match media.split(';').next().unwrap_or_default().trim() {
            "" | "*/*" | "application/*" | "application/json" | ARRAY => Some(Format::Json),
            OBJECT => Some(Format::Object),
            "text/csv" | "text/*" => Some(Format::Csv),
            GEOJSON => Some(Format::GeoJson),
            _ => None,
        },
    )
}

/// A read's query plan as JSON (PostgREST's `EXPLAIN` media type).
pub const PLAN: &str = "application/vnd.pgrst.plan+json";

/// The same plan as PostgreSQL's text.
pub const PLAN_TEXT: &str = "application/vnd.pgrst.plan+text";

/// A query plan asked for in `Accept` (supabase-js's `explain()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRequest {
    /// `FORMAT TEXT` rather than JSON.
    pub text: bool,
    /// `EXPLAIN` options from `options=analyze|verbose|settings|buffers|wal`
    /// (others are ignored, as PostgREST does).
    pub options: Vec<&'static str>,
}

impl PlanRequest {
    /// The `EXPLAIN (…)` prefix.
    pub fn explain(&self) -> String {
        let mut options: Vec<String> = vec![format!(
            "FORMAT {}",
            if self.text { "TEXT" } else { "JSON" }
        )];
        options.extend(self.options.iter().map(|o| o.to_ascii_uppercase()));
        format!("EXPLAIN ({})", options.join(", "))
    }

    /// The media type the plan is answered as.
    pub fn media_type(&self) -> String {
        let essence = if self.text { PLAN_TEXT } else { PLAN };
        format!("{essence}; for=\"application/json\"; charset=utf-8")
    }
}

/// The plan `Accept` asks for, when its first media type is a plan's.
pub fn plan_request(accept: Option<&str>) -> Option<PlanRequest> {
    let first = accept?.split(',').next()?;
    let mut parts = first.split(';');
    let text = match parts.next()?.trim() {
        PLAN => false,
        PLAN_TEXT => true,
        _ => return None,
    };
    let mut options = Vec::new();
    for part in parts {
        if let Some(("options", value)) = part.trim().split_once('=') {
            for option in value.trim_matches('"').split('|') {
                let known = ["analyze", "verbose", "settings", "buffers", "wal"];
                if let Some(option) = known.into_iter().find(|k| *k == option.trim()) {
                    options.push(option);
                }
            }
        }
    }
    // WAL usage is reported only by an analyzed plan.
    if !options.contains(&"analyze") {
        options.retain(|option| *option != "wal");
    }
    Some(PlanRequest { text, options })
}

/// PostgREST's name for the default array of rows.
pub const ARRAY: &str = "application/vnd.pgrst.array+json";

/// Whether the media type `format` chose carries `nulls=stripped`
/// (supabase-js's `stripNulls()`): keys whose value is null are left out.
pub fn strips_nulls(accept: Option<&str>) -> bool {
    accept
        .and_then(|accept| {
            accept.split(',').find(|media| {
                let essence = media.split(';').next().unwrap_or_default().trim();
                essence == ARRAY || essence == OBJECT
            })
        })
        .is_some_and(|media| {
            media
                .split(';')
                .skip(1)
                .any(|parameter| parameter.trim() == "nulls=stripped")
        })
}

/// Leaves out the keys whose value is null, in every object at any depth
/// (as PostgreSQL's `json_strip_nulls`).
pub fn strip_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, value| !value.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// `Range: [items=]<first>-[<last>]` as `(offset, limit)`; `None` without
/// the header.
pub fn range(header: Option<&str>) -> Result<Option<(u64, Option<u64>)>, RangeError> {
    let Some(value) = header else {
        return Ok(None);
    };
    let malformed = || RangeError::Malformed {
        header: value.to_owned(),
    };
    let value = value.trim().trim_start_matches("items=");
    let (first, last) = value.split_once('-').ok_or_else(malformed)?;
    let first: u64 = first.trim().parse().map_err(|_| malformed())?;
    let last = match last.trim() {
        "" => None,
        last => Some(last.parse::<u64>().map_err(|_| malformed())?),
    };
    match last {
        Some(last) if last < first => Err(RangeError::Backwards { first, last }),
        _ => Ok(Some((
            first,
            last.map(|last| (last - first).saturating_add(1)),
        ))),
    }
}

/// The query parameters that shape a write or a page rather than filter
/// rows: `columns=a,b` (the keys an insert reads, sorted and unquoted),
/// `on_conflict=a,b` (an upsert's unique columns) and `cursor=` (empty for
/// the first page of keyset pagination).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shaping {
    pub columns: Option<Vec<String>>,
    pub on_conflict: Option<Vec<String>>,
    pub cursor: Option<String>,
}

impl Shaping {
    pub fn parse(pairs: &[(String, String)]) -> Shaping {
        let value = |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        Shaping {
            columns: value("columns").map(|list| {
                let mut columns: Vec<String> = list
                    .split(',')
                    .map(|c| c.trim().trim_matches('"').to_owned())
                    .filter(|c| !c.is_empty())
                    .collect();
                columns.sort();
                columns.dedup();
                columns
            }),
            on_conflict: value("on_conflict")
                .map(|list| list.split(',').map(|c| c.trim().to_owned()).collect()),
            cursor: value("cursor").map(str::to_owned),
        }
    }
}

/// The exposed schema a request addresses: `Accept-Profile` for reads,
/// `Content-Profile` for writes, else the first exposed schema.
pub fn profile<'a>(asked: Option<&str>, exposed: &'a [String]) -> Result<&'a str, ProfileError> {
    match asked {
        None => Ok(&exposed[0]),
        Some(asked) => exposed
            .iter()
            .find(|name| *name == asked)
            .map(String::as_str)
            .ok_or_else(|| ProfileError {
                asked: asked.to_owned(),
                exposed: exposed.to_vec(),
            }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nulls_stripped_on_request() {
        assert_eq!(format(Some(ARRAY)), Some(Format::Json));
        assert!(strips_nulls(Some(
            "application/vnd.pgrst.array+json;nulls=stripped"
        )));
        assert!(strips_nulls(Some(
            "application/vnd.pgrst.object+json; nulls=stripped"
        )));
        assert!(!strips_nulls(Some("application/json")));
        assert!(!strips_nulls(None));
        let mut value = serde_json::json!([{"a": null, "b": 1, "c": {"d": null, "e": [null]}}]);
        strip_nulls(&mut value);
        assert_eq!(value, serde_json::json!([{"b": 1, "c": {"e": [null]}}]));
    }

    #[test]
    fn shaping_parameters_and_profiles() {
        let pairs = |query: &str| -> Vec<(String, String)> {
            query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        assert_eq!(Shaping::parse(&pairs("id=eq.1")), Shaping::default());
        let shaping = Shaping::parse(&pairs("columns=b,\"a\",b,&on_conflict=email, org&cursor="));
        assert_eq!(shaping.columns, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(
            shaping.on_conflict,
            Some(vec!["email".to_owned(), "org".to_owned()])
        );
        assert_eq!(shaping.cursor.as_deref(), Some(""));

        let exposed = vec!["public".to_owned(), "api".to_owned()];
        assert_eq!(profile(None, &exposed), Ok("public"));
        assert_eq!(profile(Some("api"), &exposed), Ok("api"));
        let error = profile(Some("auth"), &exposed).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`auth` is not one of the exposed schemas: public, api"
        );
    }

    use super::*;

    #[test]
    fn prefer_headers() {
        let cases: &[(&[&str], Prefer, &str)] = &[
            (&[], Prefer::default(), ""),
            (
                &["return=representation, count=exact"],
                Prefer {
                    return_: Some(Return::Representation),
                    count: Some(Count::Exact),
                    ..Prefer::default()
                },
                "return=representation, count=exact",
            ),
            (
                &[
                    "resolution=ignore-duplicates",
                    "missing=default,max-affected=3",
                ],
                Prefer {
                    resolution: Some(Resolution::IgnoreDuplicates),
                    missing_default: true,
                    max_affected: Some(3),
                    ..Prefer::default()
                },
                "resolution=ignore-duplicates, missing=default, max-affected=3",
            ),
            // Unknown preferences and values are ignored.
            (
                &["count=sometimes, wait=10, handling=lenient"],
                Prefer::default(),
                "",
            ),
            (
                &["return=headers-only", "count=planned", "count=estimated"],
                Prefer {
                    return_: Some(Return::HeadersOnly),
                    count: Some(Count::Estimated),
                    ..Prefer::default()
                },
                "return=headers-only, count=estimated",
            ),
        ];
        for (headers, expected, applied) in cases {
            let prefer = Prefer::parse(headers.iter().copied()).unwrap();
            assert_eq!(&prefer, expected, "{headers:?}");
            assert_eq!(prefer.applied(), *applied, "{headers:?}");
        }
        assert!(Prefer::parse(["max-affected=many"]).is_err());
    }

    #[test]
    fn accept_headers() {
        for (accept, expected) in [
            (None, Some(Format::Json)),
            (Some("*/*"), Some(Format::Json)),
            (Some("application/json; charset=utf-8"), Some(Format::Json)),
            (Some(OBJECT), Some(Format::Object)),
            (Some("image/png, text/csv;q=0.5"), Some(Format::Csv)),
            (Some("text/*"), Some(Format::Csv)),
            (Some(GEOJSON), Some(Format::GeoJson)),
            (Some("image/png"), None),
        ] {
            assert_eq!(format(accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn range_headers() {
        for (header, expected) in [
            (None, Ok(None)),
            (Some("0-9"), Ok(Some((0, Some(10))))),
            (Some("items=5-"), Ok(Some((5, None)))),
            (Some(" 3 - 3 "), Ok(Some((3, Some(1))))),
            (
                Some("9-0"),
                Err(RangeError::Backwards { first: 9, last: 0 }),
            ),
            (
                Some("a-b"),
                Err(RangeError::Malformed {
                    header: "a-b".into(),
                }),
            ),
            (Some("7"), Err(RangeError::Malformed { header: "7".into() })),
        ] {
            assert_eq!(range(header), expected, "{header:?}");
        }
    }

    #[test]
    fn plans_in_accept() {
        assert_eq!(plan_request(Some("application/json")), None);
        let json = plan_request(Some(PLAN)).unwrap();
        assert_eq!(json.explain(), "EXPLAIN (FORMAT JSON)");
        let text = plan_request(Some(
            "application/vnd.pgrst.plan+text; for=\"application/json\"; options=analyze|verbose|drop;",
        ))
        .unwrap();
        assert_eq!(text.explain(), "EXPLAIN (FORMAT TEXT, ANALYZE, VERBOSE)");
        assert!(text.media_type().starts_with(PLAN_TEXT));
        let wal = plan_request(Some("application/vnd.pgrst.plan+json; options=wal")).unwrap();
        assert!(wal.options.is_empty(), "wal needs analyze");
    }
}
