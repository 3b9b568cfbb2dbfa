# nix develop: the Rust toolchain of the build, plus MariaDB/Redis/etcd for the tests
# and the tools of scripts/nix-check and images/.
{
  alejandra,
  clippy,
  deadnix,
  dsf,
  etcd,
  jq,
  mariadb,
  mkShell,
  redis,
  rust-analyzer,
  rustfmt,
  shellcheck,
  skopeo,
}:
mkShell {
  inputsFrom = [dsf];
  packages = [alejandra clippy deadnix etcd jq mariadb redis rust-analyzer rustfmt shellcheck skopeo];
}
