//! Unit tests of the configuration pipeline.

use super::*;
use std::io::Write;
use std::path::Path;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn example_config_is_valid_and_equals_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dsf.example.toml");
    let cfg = Loader::new(Some(&path)).load_from_env([]).unwrap();
    assert_eq!(cfg, Config::default());
}

#[test]
fn precedence_file_env_flags() {
    let f =
        file("[limits]\nmax_frame = 1000\nmax_connections = 7\n[node]\nlisten = \"127.0.0.1:1\"\n");
    let env = [
        ("DSF__LIMITS__MAX_FRAME".to_string(), "2000".to_string()),
        ("DSF__NODE__OPS".to_string(), "user.,blacklist.".to_string()),
    ];
    let cfg = Loader::new(Some(f.path()))
        .set("node.listen", "127.0.0.1:2")
        .load_from_env(env)
        .unwrap();
    assert_eq!(cfg.limits.max_frame, 2000, "env beats file");
    assert_eq!(cfg.limits.max_connections, 7, "file beats default");
    assert_eq!(cfg.node.listen, "127.0.0.1:2", "flag beats file");
    assert_eq!(cfg.node.ops, ["user.", "blacklist."]);
    let env = [("DSF__NODE__LISTEN".to_string(), "127.0.0.1:3".to_string())];
    let cfg = Loader::new(None)
        .set("node.listen", "127.0.0.1:4")
        .load_from_env(env)
        .unwrap();
    assert_eq!(cfg.node.listen, "127.0.0.1:4", "flag beats env");
}

#[test]
fn unknown_key_is_named() {
    let f = file("[limits]\nmax_frames = 10\n");
    let err = Loader::new(Some(f.path()))
        .load_from_env([])
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_frames"), "{err}");
}

#[test]
fn wrong_type_is_explained() {
    let f = file("[limits]\nidle_timeout = \"soon\"\n");
    let err = Loader::new(Some(f.path()))
        .load_from_env([])
        .unwrap_err()
        .to_string();
    assert!(err.contains("idle_timeout"), "{err}");
}

#[test]
fn invalid_value_names_key() {
    let f = file("[balancer]\nlease_ttl = \"1s\"\nheartbeat = \"2s\"\n");
    let err = Loader::new(Some(f.path()))
        .load_from_env([])
        .unwrap_err()
        .to_string();
    assert!(err.contains("balancer.lease_ttl"), "{err}");
}

#[test]
fn secret_from_file() {
    let secret = file("s3cret\n");
    let conf = file(&format!(
        "[cluster]\nsecret = \"inline\"\nsecret_file = {:?}\n",
        secret.path()
    ));
    let cfg = Loader::new(Some(conf.path())).load_from_env([]).unwrap();
    assert_eq!(cfg.cluster.secret(), Some("s3cret"));
    assert_eq!(ClusterConfig::default().secret(), None);
}

#[test]
fn validation_does_not_read_secret_files() {
    let f = file("[cluster]\nsecret_file = \"/nonexistent/dsf-secret\"\n");
    assert!(Loader::new(Some(f.path())).check_with_env([]).is_ok());
    let err = Loader::new(Some(f.path()))
        .load_from_env([])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cluster.secret_file") && err.contains("/nonexistent/dsf-secret"),
        "the process reading it fails, naming key and file: {err}"
    );
}

#[test]
fn tls_section_env_and_defaults() {
    let env = [
        ("DSF__TLS__CERT".to_string(), "/c.pem".to_string()),
        ("DSF__TLS__KEY".to_string(), "/k.pem".to_string()),
        ("DSF__TLS__CLIENT_CA".to_string(), "/ca.pem".to_string()),
    ];
    let cfg = Loader::new(None).load_from_env(env.clone()).unwrap();
    assert!(cfg.tls.serves());
    assert_eq!(cfg.tls.client_auth(), [Listener::Registration], "default");
    let mut env = env.to_vec();
    env.push((
        "DSF__TLS__CLIENT_AUTH".to_string(),
        "registration,proxy".to_string(),
    ));
    let cfg = Loader::new(None).load_from_env(env).unwrap();
    assert_eq!(
        cfg.tls.client_auth(),
        [Listener::Registration, Listener::Proxy]
    );
    assert!(!cfg.tls.requires_client_cert(Listener::Directory));
}

#[test]
fn tls_keys_that_need_each_other_are_named() {
    let err = |toml: &str| {
        Loader::new(Some(file(toml).path()))
            .load_from_env([])
            .unwrap_err()
            .to_string()
    };
    assert!(err("[tls]\ncert = \"/c.pem\"\n").contains("tls.key"));
    assert!(
        err("[tls]\ncert = \"/c\"\nkey = \"/k\"\nclient_auth = [\"proxy\"]\n")
            .contains("tls.client_auth")
    );
    assert!(err("[tls]\nclient_ca = \"/ca\"\n").contains("tls.client_ca"));
    assert!(err("[admin]\ntls = true\n").contains("admin.tls"));
    assert!(
        err("[tls]\ncert = \"/c\"\nkey = \"/k\"\nclient_auth = [\"nodes\"]\n").contains("nodes")
    );
}

#[test]
fn reload_sorts_changed_keys_into_live_and_restart() {
    use super::reload::changes;
    let old = Config::default();
    let mut new = old.clone();
    new.balancer.algorithm = "round_robin".into();
    new.balancer.services.insert(
        "kv".into(),
        ServiceConfig {
            algorithm: "p2c".into(),
            ..Default::default()
        },
    );
    new.node.weight = 5;
    new.limits.max_connections = 9;
    new.limits.request_timeout = std::time::Duration::from_secs(1);
    new.balancer.proxy = "127.0.0.1:1".into();
    new.cluster.secret = "s".into();
    let c = changes(&old, &new);
    assert_eq!(
        c.live,
        [
            "balancer.algorithm",
            "balancer.services.kv",
            "limits.max_connections",
            "node.weight"
        ]
    );
    assert_eq!(
        c.restart,
        ["balancer.proxy", "cluster.secret", "limits.request_timeout"]
    );
    assert!(changes(&old, &old).is_empty());
}

#[test]
fn etcd_and_redis_together_are_refused_naming_both() {
    let f = file(
        "[balancer]\netcd = [\"http://127.0.0.1:2379\"]\nredis = \"redis://127.0.0.1:6379\"\n",
    );
    let e = Loader::new(Some(f.path())).load_from_env([]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("balancer.etcd") && text.contains("balancer.redis"),
        "{text}"
    );
    let env = [(
        "DSF__BALANCER__ETCD".to_string(),
        "http://127.0.0.1:1,http://127.0.0.1:2".to_string(),
    )];
    let cfg = Loader::new(None).load_from_env(env).unwrap();
    assert_eq!(
        cfg.balancer.etcd,
        ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    );
    assert_eq!(cfg.balancer.etcd_prefix, DEFAULT_ETCD_PREFIX);
    let f = file("[balancer]\netcd = [\"ftp://127.0.0.1:2379\"]\n");
    let e = Loader::new(Some(f.path())).load_from_env([]).unwrap_err();
    assert_eq!(e.key().as_deref(), Some("balancer.etcd"), "{e}");
    let f = file("[balancer]\netcd = [\"https://127.0.0.1:2379\"]\netcd_tls_ca = \"/ca.pem\"\n");
    let cfg = Loader::new(Some(f.path())).load_from_env([]).unwrap();
    assert_eq!(cfg.balancer.etcd_tls_ca, std::path::Path::new("/ca.pem"));
    // A client certificate without its key (or the reverse) names both keys.
    let f = file("[balancer]\netcd = [\"https://127.0.0.1:2379\"]\netcd_tls_cert = \"/c.pem\"\n");
    let e = Loader::new(Some(f.path())).load_from_env([]).unwrap_err();
    assert_eq!(e.key().as_deref(), Some("balancer.etcd_tls_cert"), "{e}");
    assert!(e.to_string().contains("balancer.etcd_tls_key"), "{e}");
    // TLS files with only http:// endpoints would be silently unused.
    let f = file("[balancer]\netcd = [\"http://127.0.0.1:2379\"]\netcd_tls_ca = \"/ca.pem\"\n");
    let e = Loader::new(Some(f.path())).load_from_env([]).unwrap_err();
    assert_eq!(e.key().as_deref(), Some("balancer.etcd_tls_ca"), "{e}");
    let mut new = Config::default();
    new.balancer.etcd = vec!["http://127.0.0.1:2379".into()];
    let c = super::reload::changes(&Config::default(), &new);
    assert_eq!(
        c.restart,
        ["balancer.etcd"],
        "etcd endpoints need a restart"
    );
}

#[test]
fn reload_keeps_running_values_of_restart_keys() {
    let old = Config::default();
    let mut new = old.clone();
    new.node.weight = 5;
    new.balancer.proxy = "127.0.0.1:1".into();
    new.limits.request_timeout = std::time::Duration::from_secs(1);
    let c = super::reload::changes(&old, &new);
    let taken = new.keep_running(&old, &c.restart);
    assert_eq!(taken.node.weight, 5, "live key taken");
    assert_eq!(taken.balancer.proxy, old.balancer.proxy, "restart key kept");
    assert_eq!(taken.limits.request_timeout, old.limits.request_timeout);
    assert!(super::reload::changes(&old, &taken).restart.is_empty());
}

#[test]
fn a_refused_value_names_its_key() {
    let f = file("[node]\nweight = 0\n");
    let e = Loader::new(Some(f.path())).load_from_env([]).unwrap_err();
    assert_eq!(e.key().as_deref(), Some("node.weight"));
    let f = file("[node]\nweight = \"heavy\"\n");
    let e = Loader::new(Some(f.path())).load_from_env([]).unwrap_err();
    assert_eq!(e.key().as_deref(), Some("node.weight"), "{e}");
}

/// Per-service outlier keys replace only themselves; nonsense is refused naming the
/// service and the key.
#[test]
fn outlier_settings_per_service_and_checked() {
    let f = file(
        "[balancer.outlier]\nconsecutive_failures = 4\n\
         [balancer.services.reports.outlier]\nresponse_timeout = \"30s\"\n",
    );
    let cfg = Loader::new(Some(f.path())).load_from_env([]).unwrap();
    cfg.validate().unwrap();
    let reports = cfg
        .balancer
        .outlier
        .with(&cfg.balancer.services["reports"].outlier);
    assert_eq!(reports.consecutive_failures, 4);
    assert_eq!(reports.response_timeout, std::time::Duration::from_secs(30));
    assert_eq!(reports.base_ejection, DEFAULT_BASE_EJECTION);

    let f = file("[balancer.services.reports.outlier]\nmax_ejection_percent = 150\n");
    let err = Loader::new(Some(f.path()))
        .load_from_env([])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("reports.outlier.max_ejection_percent"),
        "{err}"
    );

    let f = file("[balancer.outlier]\nbase_ejection = \"10s\"\nmax_ejection = \"5s\"\n");
    let err = Loader::new(Some(f.path()))
        .load_from_env([])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("balancer.outlier") && err.contains("max_ejection"),
        "{err}"
    );
}

#[test]
fn a_redis_cluster_needs_seeds_and_is_accepted_with_them() {
    let f = file("[cache]\ncluster = true\n");
    let err = Loader::new(Some(f.path()))
        .load_from_env([])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cache.cluster") && err.contains("seed"),
        "{err}"
    );
    let f =
        file("[cache]\ncluster = true\nredis = [\"redis://127.0.0.1:7000\"]\nwait_replicas = 2\n");
    let cfg = Loader::new(Some(f.path())).load_from_env([]).unwrap();
    assert!(cfg.cache.cluster);
    assert_eq!(cfg.cache.wait_replicas, 2);
}
