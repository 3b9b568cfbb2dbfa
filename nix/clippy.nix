# `cargo clippy --all-targets -- -D warnings` over the vendored dependencies.
{
  clippy,
  dsf,
}:
dsf.overrideAttrs (old: {
  pname = "dsf-clippy";
  nativeBuildInputs = old.nativeBuildInputs ++ [clippy];
  buildPhase = ''
    runHook preBuild
    cargo clippy --all-targets --offline -- -D warnings
    runHook postBuild
  '';
  installPhase = "touch $out";
})
