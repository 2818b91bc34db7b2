//! Property tests: SQL canonical form round trip, If header round trip, XML writer round trip.

use davrepl_proto::headers::parse_if;
use davrepl_proto::sql::{self, CmpOp, Column, Expr, Operand, Query, Scope, SqlLimits, Traversal};
use davrepl_proto::xml::{PatchInstruction, XmlLimits, XmlWriter, parse_proppatch};
use davrepl_store::{IfCondition, IfTerm};
use proptest::prelude::*;

/// Parses keeping every whitespace character, as a WebDAV client must.
fn parse_exact(bytes: &[u8]) -> xmltree::Element {
    let config = xmltree::ParserConfig::new()
        .trim_whitespace(false)
        .whitespace_to_characters(true);
    xmltree::Element::parse_with_config(bytes, config).unwrap()
}

fn prop_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("DAV:displayname".to_owned()),
        Just("urn:schemas:httpmail:read".to_owned()),
        Just("http://schemas.microsoft.com/repl/resourcetag".to_owned()),
        "[a-z]{1,6}:[a-z]{1,8}",
    ]
}

fn literal() -> impl Strategy<Value = Operand> {
    prop_oneof![
        "[ -~]{0,12}".prop_map(Operand::Str),
        (-1000i32..1000).prop_map(|n| Operand::Num(f64::from(n))),
        any::<bool>().prop_map(Operand::Bool),
        prop_name().prop_map(Operand::Prop),
    ]
}

fn predicate() -> impl Strategy<Value = Expr> {
    let op = prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge)
    ];
    prop_oneof![
        (prop_name(), op, literal()).prop_map(|(p, o, l)| Expr::Cmp(Operand::Prop(p), o, l)),
        (prop_name(), any::<bool>()).prop_map(|(p, n)| Expr::IsNull(Operand::Prop(p), n)),
        (prop_name(), "[a-z%_]{0,6}", any::<bool>()).prop_map(|(p, pat, n)| Expr::Like(
            Operand::Prop(p),
            pat,
            n
        )),
        (prop_name(), "[a-z]{1,5}").prop_map(|(p, t)| Expr::Cmp(
            Operand::Cast(Box::new(Operand::Prop(p)), t),
            CmpOp::Eq,
            Operand::Num(1.0)
        )),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    predicate().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

fn query() -> impl Strategy<Value = Query> {
    let cols = prop::option::of(prop::collection::vec(
        (prop_name(), prop::option::of("[a-zA-Z]{1,8}"))
            .prop_map(|(prop, alias)| Column { prop, alias }),
        1..4,
    ));
    let trav = prop_oneof![
        Just(Traversal::Shallow),
        Just(Traversal::Deep),
        Just(Traversal::Hierarchical)
    ];
    let order = prop::collection::vec((prop_name(), any::<bool>()), 0..3);
    (
        cols,
        trav,
        "(/[a-z]{1,5}){0,3}/?",
        prop::option::of(expr()),
        order,
    )
        .prop_map(|(columns, traversal, url, filter, order_by)| Query {
            columns,
            scope: Scope { traversal, url },
            filter,
            order_by,
        })
}

proptest! {
    #[test]
    fn sql_canonical_text_parses_back(q in query()) {
        let text = q.to_sql();
        let back = sql::parse(&text, &SqlLimits::default()).unwrap();
        prop_assert_eq!(&back, &q);
        prop_assert_eq!(back.to_sql(), text);
    }

    #[test]
    fn sql_parser_never_panics(s in "\\PC{0,200}") {
        let _ = sql::parse(&s, &SqlLimits::default());
    }

    #[test]
    fn if_header_round_trips(lists in prop::collection::vec(
        (prop::option::of("/[a-z]{1,6}"), prop::collection::vec((any::<bool>(), any::<bool>(), "[a-z:0-9]{1,10}"), 1..4)),
        1..4,
    ), tagged in any::<bool>()) {
        let mut text = String::new();
        let mut expect = Vec::new();
        for (tag, conds) in &lists {
            let tag = if tagged { Some(tag.clone().unwrap_or_else(|| "/r".into())) } else { None };
            if let Some(t) = &tag {
                text.push_str(&format!("<{t}> "));
            }
            text.push('(');
            let mut cs = Vec::new();
            for (neg, etag, tok) in conds {
                if *neg { text.push_str("Not "); }
                let term = if *etag {
                    text.push_str(&format!("[\"{tok}\"] "));
                    IfTerm::ETag(format!("\"{tok}\""))
                } else {
                    text.push_str(&format!("<{tok}> "));
                    IfTerm::Token(tok.clone())
                };
                cs.push(IfCondition { negated: *neg, term });
            }
            text.push_str(") ");
            expect.push((tag, cs));
        }
        let parsed = parse_if(&text, 100).unwrap();
        prop_assert_eq!(parsed.len(), expect.len());
        for (p, (tag, cs)) in parsed.iter().zip(&expect) {
            prop_assert_eq!(&p.resource, tag);
            prop_assert_eq!(&p.conditions, cs);
        }
    }

    #[test]
    fn if_parser_never_panics(s in "\\PC{0,200}") {
        let _ = parse_if(&s, 64);
    }

    #[test]
    fn written_text_parses_back(text in "[\\u{20}-\\u{D7FF}\\u{E000}-\\u{FFFD}\\t\\n]{0,80}") {
        let mut w = XmlWriter::new();
        w.start("D:multistatus", &[("xmlns:D", "DAV:"), ("a", &text)]).text_element("D:href", &text).end("D:multistatus");
        let bytes = w.finish();
        let root = parse_exact(&bytes[..]);
        prop_assert_eq!(root.attributes.get("a").map(String::as_str), Some(text.as_str()));
        let href = root.get_child("href").unwrap().get_text().map(|t| t.into_owned()).unwrap_or_default();
        prop_assert_eq!(href, text);
    }

    #[test]
    fn dead_property_values_survive_a_multistatus(text in "[a-zA-Z0-9 <>&\"']{0,40}", ns in "urn:[a-z]{1,6}") {
        // A PROPPATCH value is stored as a fragment, embedded in a response and read back.
        let mut esc = String::new();
        davrepl_proto::xml::escape_into(&mut esc, &text, false);
        let body = format!(r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="{ns}"><D:set><D:prop><Z:p><Z:inner x="1">{esc}</Z:inner>{esc}</Z:p></D:prop></D:set></D:propertyupdate>"#);
        let ops = parse_proppatch(body.as_bytes(), &XmlLimits::default()).unwrap();
        let PatchInstruction::Set { name, value } = &ops[0] else { panic!("set expected") };
        let mut w = XmlWriter::new();
        w.start("D:multistatus", &[("xmlns:D", "DAV:")]).start("D:prop", &[]).start_prop(name, false).fragment(value).end_prop(name).end("D:prop").end("D:multistatus");
        let out = w.finish();
        let root = parse_exact(&out[..]);
        let p = root.get_child("prop").unwrap().get_child("p").unwrap();
        prop_assert_eq!(p.namespace.as_deref(), Some(ns.as_str()));
        let inner = p.get_child("inner").unwrap();
        prop_assert_eq!(inner.namespace.as_deref(), Some(ns.as_str()));
        prop_assert_eq!(inner.get_text().map(|t| t.into_owned()).unwrap_or_default(), text.clone());
    }
}
