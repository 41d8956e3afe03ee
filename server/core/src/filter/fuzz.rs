//! Property tests: no input makes the grammar or the SQL builder panic, and
//! no input puts a value into the SQL text.

use super::sql::{to_sql, Caller, Column, Columns, Param};
use super::{parse_condition, parse_param, FilterError};
use proptest::prelude::*;

struct AnyColumn;

impl Columns for AnyColumn {
    fn resolve(&self, name: &str, _params: &mut Vec<Param>) -> Result<Column, FilterError> {
        Ok(Column {
            sql: format!("\"{}\"", name.replace('"', "\"\"")),
            type_name: "text".into(),
        })
    }
}

fn grammar_pieces() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("eq.".to_owned()),
        Just("not.".to_owned()),
        Just("in.(".to_owned()),
        Just("or=(".to_owned()),
        Just("and(".to_owned()),
        Just("(any)".to_owned()),
        Just("{auth.uid}".to_owned()),
        Just("is.null".to_owned()),
        Just("\"".to_owned()),
        Just(",".to_owned()),
        Just(")".to_owned()),
        Just(".".to_owned()),
        Just("&".to_owned()),
        Just("=".to_owned()),
        "[a-z]{1,4}",
        "\\PC{0,6}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn parsing_and_building_never_panic(key in grammar_pieces(), value in grammar_pieces()) {
        let caller = Caller { uid: Some("u"), role: "authenticated", claims: &serde_json::Value::Null };
        for expr in [parse_param(&key, &value), parse_condition(&format!("{key}={value}"))].into_iter().flatten() {
            let mut params = Vec::new();
            let _ = to_sql(&expr, &AnyColumn, &caller, &mut params);
        }
    }

    #[test]
    fn values_never_reach_the_sql_text(value in "[^\"]{1,30}") {
        let expr = parse_param("title", &format!("eq.{value}")).unwrap();
        let caller = Caller { uid: None, role: "anon", claims: &serde_json::Value::Null };
        let mut params = Vec::new();
        let sql = to_sql(&expr, &AnyColumn, &caller, &mut params).unwrap();
        prop_assert_eq!(sql, "\"title\" = $1::text::text".to_owned());
        prop_assert_eq!(params, vec![Param::Text(Some(value))]);
    }
}
