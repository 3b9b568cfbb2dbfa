//! Unit tests of the proxy's field reader against serde_json's reading.

use super::*;

fn head(s: &str) -> Option<RequestHead<'_>> {
    request_head(s.as_bytes())
}

#[test]
fn common_request() {
    let s = r#"{"id":42,"type":"sys.echo","key":"k","body":{"id":1,"x":[1.5e3,-0,true,null]}}"#;
    let h = head(s).unwrap();
    assert_eq!((h.id, &s[h.id_span.clone()]), (42, "42"));
    assert_eq!((h.op, h.key), ("sys.echo", Some("k")));
    assert_eq!(
        head(r#"{"id":18446744073709551615,"type":"a"}"#)
            .unwrap()
            .id,
        u64::MAX
    );
}

#[test]
fn id_anywhere_and_spaced() {
    let s = " { \"body\" : {\"id\": 5, \"s\": \"}\\\"]\\u00e9\"}, \"type\":\"a.b\", \"id\" : 17 , \"key\": null }\n";
    let h = head(s).unwrap();
    assert_eq!((h.id, &s[h.id_span.clone()]), (17, "17"));
    assert_eq!(h.key, None);
}

#[test]
fn unusual_shapes_go_to_the_full_decoder() {
    for s in [
        "not json",
        r#"[1,"sys.ping"]"#,
        r#"{"id":1,"type":"sys.ping""#,
        r#"{"id":1,"type":"sys.ping"} x"#,
        r#"{"id":1,"type":"sys.ping",}"#,
        r#"{"id":1,"type":9}"#,
        r#"{"id":-1,"type":"x"}"#,
        r#"{"id":1.5,"type":"x"}"#,
        r#"{"id":01,"type":"x"}"#,
        r#"{"id":18446744073709551616,"type":"x"}"#,
        r#"{"type":"x"}"#,
        r#"{"id":1}"#,
        r#"{"id":1,"type":"x","key":5}"#,
        r#"{"id":1,"id":2,"type":"x"}"#,
        r#"{"i\u0064":1,"type":"x"}"#,
        r#"{"id":1,"type":"sys.\u0065cho"}"#,
        r#"{"id":1,"type":"x","body":{"a":tru}}"#,
        r#"{"id":1,"type":"x","body":"\x"}"#,
        r#"{"id":1,"type":"x","body":[1,]}"#,
        r#"{"id":1,"type":"x","body":01}"#,
        r#"{"id":1,"type":"x","body":1.}"#,
        "{\"id\":1,\"type\":\"a\tb\"}",
    ] {
        assert_eq!(head(s), None, "{s}");
    }
    assert_eq!(request_head(b"{\"id\":1,\"type\":\"\xff\"}"), None);
    let deep = format!(
        r#"{{"id":1,"type":"x","b":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert_eq!(head(&deep), None);
}

/// Whatever the scanner accepts, the server's decoder accepts too, with the same
/// fields: mutations of valid requests, byte by byte.
#[test]
fn never_accepts_what_the_decoder_rejects() {
    let seeds: [&[u8]; 3] = [
        br#"{"id":7,"type":"sys.echo","key":"k1","body":{"a":[1,-2.5e-3,"x\n"],"b":null}}"#,
        br#" {"body":{"t":true,"f":false},"type":"a.b","id":123 } "#,
        br#"{"type":"x","id":0,"token":"t","key":null}"#,
    ];
    let bytes = b" \t\"\\{}[]:,.-+eE0123456789truefalsenull\x00\x1f\x7f\xc3\xa9u";
    let mut checked = 0;
    for seed in seeds {
        for at in 0..seed.len() {
            for &b in bytes {
                for insert in [false, true] {
                    let mut m = seed.to_vec();
                    if insert {
                        m.insert(at, b);
                    } else {
                        m[at] = b;
                    }
                    if let Some(h) = request_head(&m) {
                        checked += 1;
                        let r = crate::protocol::Request::parse(&m).unwrap_or_else(|e| {
                            panic!(
                                "{:?} accepted, decoder says {e:?}",
                                String::from_utf8_lossy(&m)
                            )
                        });
                        assert_eq!((r.id, r.op.as_str(), r.key.as_deref()), (h.id, h.op, h.key));
                    }
                }
            }
        }
    }
    assert!(checked > 100, "{checked}");
}

#[test]
fn response_ids_and_splicing() {
    let r = br#"{"id":42,"ok":true,"body":{}}"#;
    let (id, span) = response_id(r).unwrap();
    assert_eq!(id, 42);
    let mut out = Vec::new();
    encode_with_id(&mut out, r, &span, 18_446_744_073_709_551_615);
    assert_eq!(
        &out[4..],
        br#"{"id":18446744073709551615,"ok":true,"body":{}}"#
    );
    assert_eq!(out[..4], ((out.len() - 4) as u32).to_be_bytes());
    assert_eq!(response_id(br#"{"ok":true,"id":7}"#).unwrap().0, 7);
    assert_eq!(response_id(br#"{"id": 9 ,"ok":true}"#).unwrap().0, 9);
    assert_eq!(response_id(br#"{"id":null,"ok":false}"#), None);
    assert_eq!(response_id(b"garbage"), None);
    let mut out = Vec::new();
    encode_with_id(&mut out, br#"{"id":7}"#, &(6..7), 0);
    assert_eq!(&out[4..], br#"{"id":0}"#);
}
