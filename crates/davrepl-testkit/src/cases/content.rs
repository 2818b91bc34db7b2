//! Content: bodies that fail or are too large, large content, ranges of it, the secret.

use super::*;

fn failing_body() -> ByteStream {
    Box::pin(futures_util::stream::iter([
        Ok(Bytes::from_static(b"partial")),
        Err(StoreError::new(ErrorKind::BodyAborted, "client went away")),
    ]))
}

/// A body that fails half-way writes nothing, neither content nor log.
pub async fn aborted_body_writes_nothing<S: ReplStore>(store: &S) {
    put(store, "/keep", "old").await;
    let (_, mark) = all_changes(store, "/", 0).await;
    let r = store
        .put(&path("/keep"), failing_body(), PutOptions::default())
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::BodyAborted);
    let r = store
        .put(&path("/new"), failing_body(), PutOptions::default())
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::BodyAborted);
    assert_eq!(read_string(store, "/keep").await, "old");
    assert_eq!(
        kind_of(store.head(&path("/new")).await),
        ErrorKind::NotFound
    );
    assert_eq!(all_changes(store, "/", mark).await.0, vec![]);
}

/// Content over `max_len` is refused whole.
pub async fn too_large_writes_nothing<S: ReplStore>(store: &S) {
    let mut opts = PutOptions::default();
    opts.max_len = Some(4);
    let r = store.put(&path("/big"), body("12345"), opts.clone()).await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::TooLarge);
    assert_eq!(
        kind_of(store.head(&path("/big")).await),
        ErrorKind::NotFound
    );
    store.put(&path("/big"), body("1234"), opts).await.unwrap();
}

/// The collblob secret is the same on every call.
pub async fn secret_is_stable<S: ReplStore>(store: &S) {
    let a = store.secret().await.unwrap();
    let b = store.secret().await.unwrap();
    assert_eq!(a, b);
    assert_ne!(a, [0u8; 32]);
}

/// Content of several megabytes, arriving in odd-sized pieces, reads back whole and by range.
pub async fn large_content_round_trip<S: ReplStore>(store: &S) {
    let data: Vec<u8> = (0..9_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let pieces: Vec<Result<Bytes, StoreError>> = data
        .chunks(70_001)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let body: ByteStream = Box::pin(futures_util::stream::iter(pieces));
    let out = store
        .put(&path("/big.bin"), body, PutOptions::default())
        .await
        .unwrap();
    assert_eq!(out.meta.len, data.len() as u64);
    let read_all = |range: Option<ByteRange>| async move {
        let (_, mut s) = store
            .read(&path("/big.bin"), GetOptions::range(range))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(c) = futures_util::StreamExt::next(&mut s).await {
            got.extend_from_slice(&c.unwrap());
        }
        got
    };
    assert!(read_all(None).await == data, "whole content differs");
    let r = ByteRange {
        start: 262_000,
        end: 790_000,
    };
    assert!(
        read_all(Some(r)).await == data[262_000..=790_000],
        "range differs"
    );
    let copy = store
        .copy(
            &path("/big.bin"),
            &path("/copy.bin"),
            TransferOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(copy.meta.len, data.len() as u64);
    store
        .put(&path("/big.bin"), body_of(b"small"), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(read_string(store, "/big.bin").await, "small");
    let (_, mut s) = store
        .read(
            &path("/copy.bin"),
            GetOptions::range(Some(ByteRange { start: 0, end: 9 })),
        )
        .await
        .unwrap();
    let first = futures_util::StreamExt::next(&mut s)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], &data[..10]);
}

fn body_of(b: &'static [u8]) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(b))]))
}

/// A read's condition is evaluated against the state whose bytes it returns: the current
/// resourcetag reads, a stale one is refused, and a condition naming another resource sees
/// that resource's state.
pub async fn read_condition<S: ReplStore>(store: &S) {
    let old = put(store, "/doc", "one").await;
    let new = put(store, "/doc", "two").await;
    let read = |cond: Condition| async move {
        let (meta, s) = store.read(&path("/doc"), cond.into()).await?;
        let bytes = futures_util::StreamExt::collect::<Vec<_>>(s).await;
        let bytes: Vec<u8> = bytes
            .into_iter()
            .flat_map(|b| b.unwrap().to_vec())
            .collect();
        Ok::<_, StoreError>((meta, bytes))
    };
    let (meta, bytes) = read(if_token(&new.resource_tag())).await.unwrap();
    assert_eq!((meta.version, &bytes[..]), (new.version, &b"two"[..]));
    let stale = read(if_token(&old.resource_tag())).await;
    assert_eq!(kind_of(stale), ErrorKind::PreconditionFailed);
    let other = put(store, "/other", "x").await;
    let tagged = if_lists_on("/other", &other.resource_tag());
    assert_eq!(read(tagged).await.unwrap().1, b"two");
    let gone = if_lists_on("/nothing-here", &other.resource_tag());
    assert_eq!(kind_of(read(gone).await), ErrorKind::PreconditionFailed);
}
