use super::*;

#[test]
fn names_refuse_every_traversal_form() {
    for bad in [
        "../x",
        "a/../b",
        "a/./b",
        ".",
        "..",
        "/etc/passwd",
        "a\\b",
        "..\\x",
        "C:/x",
        "c:x",
        "//server/share",
        "a//b",
        "a/",
        "a\0b",
        "a\nb",
        "a\u{7f}b",
        "a%2e%2e/b",
        "a/%2E%2E/b",
        "%2fetc",
        "a%5cb",
        "a%00b",
        "%252e%252e",
    ] {
        assert!(check_name(bad).is_err(), "{bad:?} was allowed");
    }
    for bad in [
        "..%2fx",
        "%2e%2e/x",
        "a/%2e/b",
        "%2Fetc%2Fpasswd",
        "a%5C..%5Cb",
        "a%00",
        "%252e%252e%252f",
        "C%3A/x",
        "%5c%5cserver/x",
        "a/%0a/b",
    ] {
        assert!(name_from_url(bad).is_err(), "{bad:?} was allowed");
    }
    assert!(check_name(&"a".repeat(MAX_NAME_BYTES)).is_ok());
    assert!(check_name(&"a".repeat(MAX_NAME_BYTES + 1)).is_err());
    assert_eq!(
        name_from_url("folder/caf%C3%A9 1.png").unwrap(),
        "folder/café 1.png"
    );
    assert!(check_name("a..b/c.d/...x").is_ok());
}

#[test]
fn bucket_ids() {
    assert!(check_bucket_id("avatars").is_ok());
    assert!(check_bucket_id("my-bucket.2").is_ok());
    for bad in [
        "",
        "Avatars",
        "-x",
        "a/b",
        "a b",
        "list",
        "public",
        &"a".repeat(64),
    ] {
        assert!(check_bucket_id(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn ranges() {
    let part = |start, end| ByteRange::Part { start, end };
    assert_eq!(parse_range(None, 10), ByteRange::Full);
    assert_eq!(parse_range(Some("bytes=0-3"), 10), part(0, 3));
    assert_eq!(parse_range(Some("bytes=5-"), 10), part(5, 9));
    assert_eq!(parse_range(Some("bytes=-3"), 10), part(7, 9));
    assert_eq!(parse_range(Some("bytes=-30"), 10), part(0, 9));
    assert_eq!(parse_range(Some("bytes=8-100"), 10), part(8, 9));
    assert_eq!(parse_range(Some("bytes=10-"), 10), ByteRange::Unsatisfiable);
    assert_eq!(parse_range(Some("bytes=-0"), 10), ByteRange::Unsatisfiable);
    assert_eq!(parse_range(Some("bytes=3-1"), 10), ByteRange::Full);
    assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), ByteRange::Full);
    assert_eq!(parse_range(Some("items=0-1"), 10), ByteRange::Full);
    assert_eq!(parse_range(Some("bytes=x-1"), 10), ByteRange::Full);
    assert_eq!(parse_range(Some("bytes=0-0"), 0), ByteRange::Unsatisfiable);
}

#[test]
fn private_downloads_are_not_for_shared_caches() {
    assert_eq!(
        private_cache_control("max-age=3600"),
        "private, max-age=3600"
    );
    assert_eq!(
        private_cache_control("public, max-age=60, immutable"),
        "private, max-age=60, immutable"
    );
    assert_eq!(
        private_cache_control("private, max-age=5"),
        "private, max-age=5"
    );
    assert_eq!(private_cache_control("no-store"), "no-store");
}

#[test]
fn bidi_controls_never_reach_a_file_name() {
    let header = content_disposition(true, "invoice\u{202E}fdp.exe");
    assert!(!header.contains('\u{202E}'));
    assert!(!header.contains("%E2%80%AE"), "{header}");
    assert!(header.contains("invoice_fdp.exe"), "{header}");
}

#[test]
fn dispositions_are_rfc_6266() {
    assert_eq!(
        content_disposition(true, "a\"b\\c é.txt"),
        "attachment; filename=\"a_b_c _.txt\"; filename*=UTF-8''a%22b%5Cc%20%C3%A9.txt"
    );
    assert_eq!(
        content_disposition(false, "x\r\ny"),
        "inline; filename=\"x__y\"; filename*=UTF-8''x%0D%0Ay"
    );
}

#[test]
fn mime_patterns() {
    let allowed = vec!["image/*".to_owned(), "application/pdf".to_owned()];
    assert!(mime_allowed(&allowed, "image/png"));
    assert!(mime_allowed(&allowed, "Image/PNG; q=1"));
    assert!(mime_allowed(&allowed, "application/pdf"));
    assert!(!mime_allowed(&allowed, "text/html"));
    assert!(!mime_allowed(&allowed, "imagex/png"));
    assert!(mime_allowed(&[], "text/html"));
    assert!(valid_mime_pattern("image/*") && valid_mime_pattern("*/*"));
    assert!(!valid_mime_pattern("*/png") && !valid_mime_pattern("image"));
    assert!(!inline_safe("text/html; charset=utf-8") && !inline_safe("image/svg+xml"));
    assert!(!inline_safe("application/x-unknown") && !inline_safe("text/xml"));
    assert!(inline_safe("image/png") && inline_safe("text/plain; charset=utf-8"));
}

#[test]
fn content_types_are_one_type() {
    assert_eq!(
        content_type("Text/Plain ; Charset=utf-8").unwrap(),
        "text/plain; Charset=utf-8"
    );
    for bad in [
        "image/png, text/html",
        "text",
        "a/b/c;",
        "image/png; x",
        "image/pñg",
        "text/html\r\nx: y",
        "",
    ] {
        assert!(content_type(bad).is_err(), "{bad}");
    }
    assert_eq!(cache_control("60").unwrap(), "max-age=60");
    assert_eq!(cache_control("no-cache").unwrap(), "no-cache");
    assert!(cache_control("max-age=é").is_err());
}

#[test]
fn tokens_detect_tampering_and_expiry() {
    let token = SignedToken {
        kind: "download".into(),
        bucket: "b".into(),
        name: "a.txt".into(),
        exp: 1000,
        id: "x".into(),
        owner: None,
        upsert: false,
        service: false,
    };
    let text = sign_token(b"key", &token);
    assert_eq!(verify_token(b"key", &text, 999), Ok(token.clone()));
    assert_eq!(verify_token(b"key", &text, 1000), Err(TokenError::Expired));
    assert_eq!(verify_token(b"other", &text, 0), Err(TokenError::Invalid));
    let (payload, signature) = text.split_once('.').unwrap();
    let forged = SignedToken {
        name: "b.txt".into(),
        ..token
    };
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    assert_eq!(
        verify_token(b"key", &format!("{forged_payload}.{signature}"), 0),
        Err(TokenError::Invalid)
    );
    assert_eq!(
        verify_token(b"key", &format!("{payload}x.{signature}"), 0),
        Err(TokenError::Invalid)
    );
}

#[test]
fn tus_metadata_pairs() {
    let pairs = tus_metadata("bucketName YXZhdGFycw==,objectName YS9iLnBuZw==, flag").unwrap();
    assert_eq!(
        pairs,
        vec![
            ("bucketName".into(), "avatars".into()),
            ("objectName".into(), "a/b.png".into()),
            ("flag".into(), String::new())
        ]
    );
    assert!(tus_metadata("x !!!").is_err());
}
