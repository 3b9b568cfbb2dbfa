# `cargo test` with MariaDB and Redis on PATH: the whole-system tests start private
# instances on free loopback ports, which the build sandbox allows.
{
  dsf,
  mariadb,
  redis,
}:
dsf.overrideAttrs (old: {
  pname = "dsf-tests";
  doCheck = true;
  nativeCheckInputs = (old.nativeCheckInputs or []) ++ [mariadb redis];
  preCheck = ''
    export HOME=$TMPDIR
  '';
  installPhase = "touch $out";
})
