# The Nix files are formatted (alejandra) and have no dead bindings (deadnix).
{
  alejandra,
  deadnix,
  runCommand,
  src,
}:
runCommand "dsf-nix-format" {nativeBuildInputs = [alejandra deadnix];} ''
  cd ${src}
  alejandra --check --quiet .
  deadnix --fail .
  touch $out
''
