//! Unit tests of the embedded store on real SQLite files.

use super::*;

fn open(dir: &Path) -> EmbeddedStore {
    smol::block_on(EmbeddedStore::open(dir, &StoreConfig::default())).unwrap()
}

/// Nodes of one machine start together on one folder (`dsf up`); switching a
/// new file to WAL mode answered "locked" to all but the first.
#[test]
fn nodes_opening_one_new_folder_at_once_all_start() {
    for _ in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let dir = dir.path().to_owned();
                std::thread::spawn(move || {
                    smol::block_on(EmbeddedStore::open(&dir, &StoreConfig::default())).map(|_| ())
                })
            })
            .collect();
        for open in opens {
            open.join().unwrap().unwrap();
        }
    }
}

#[test]
fn crud_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    smol::block_on(async {
        let id = s
            .blacklist_insert("x'; DROP TABLE blacklist; --", "Bob")
            .await
            .unwrap();
        assert!(id > 0);
        assert_eq!(
            s.blacklist_insert("x'; DROP TABLE blacklist; --", "B")
                .await,
            Err(StoreError::Conflict("id_card"))
        );
        assert_eq!(
            s.blacklist_get("x'; DROP TABLE blacklist; --")
                .await
                .unwrap()
                .as_deref(),
            Some("Bob")
        );
        assert_eq!(
            s.blacklist_update("nope", "x").await,
            Err(StoreError::NotFound("blacklist entry"))
        );
        assert_eq!(
            s.blacklist_delete("nope").await,
            Err(StoreError::NotFound("blacklist entry"))
        );
        s.blacklist_insert("b2", "100%_x").await.unwrap();
        s.blacklist_insert("b3", "100abc").await.unwrap();
        let f = SearchFilter {
            name_prefix: Some("100%".into()),
            id_card: None,
            limit: 10,
        };
        let found = s.blacklist_search(&f).await.unwrap();
        assert_eq!(
            found,
            vec![Entry {
                id_card: "b2".into(),
                name: "100%_x".into()
            }]
        );
        let w = Duration::from_secs(60);
        assert_eq!(s.login_failure_record("al", w).await.unwrap(), 1);
        assert_eq!(s.login_failure_record("al", w).await.unwrap(), 2);
        assert_eq!(s.login_failures("al", w).await.unwrap(), 2);
        s.login_failures_clear("al").await.unwrap();
        assert_eq!(s.login_failures("al", w).await.unwrap(), 0);
    });
}

#[test]
fn reopening_applies_migrations_once() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let s = open(dir.path());
    let uid = smol::block_on(s.create_user("alice", "h")).unwrap();
    assert_eq!(
        smol::block_on(s.create_user("alice", "h")),
        Err(StoreError::Conflict("user name"))
    );
    smol::block_on(s.session_create("t", uid, now_ms() + 60_000)).unwrap();
    let got = smol::block_on(s.session_get("t")).unwrap().unwrap();
    assert_eq!((got.user_id, got.name.as_str()), (uid, "alice"));
    smol::block_on(s.session_delete("t")).unwrap();
    assert_eq!(smol::block_on(s.session_get("t")).unwrap(), None);
}
