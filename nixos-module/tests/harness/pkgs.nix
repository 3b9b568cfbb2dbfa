# Fake packages: derivation-shaped attribute sets with store-like paths, and a
# stdenv whose build and host platforms a test can set apart (a cross build).
{
  lib,
  buildSystem ? "x86_64-linux",
  hostSystem ? "x86_64-linux",
}: let
  drv = name: {
    type = "derivation";
    inherit name;
    pname = name;
    version = "0";
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = name;
  };
  file = name: "/nix/store/00000000000000000000000000000000-${name}";
  platform = system: {
    inherit system;
    canExecute = other: other.system == system;
  };
in {
  inherit lib;
  system = hostSystem;
  stdenv = {
    buildPlatform = platform buildSystem;
    hostPlatform = platform hostSystem;
  };
  dsf = drv "dsf";
  coreutils = drv "coreutils";
  mariadb = drv "mariadb";
  redis = drv "redis";
  formats.toml = _: {
    type = lib.types.attrsOf lib.types.anything;
    # The rendered settings ride along in the path's name, so that checks read them.
    generate = name: value: "${file name}#${builtins.toJSON value}";
  };
  # Scripts carry their text the same way.
  writeShellScript = name: text: "${file name}#${text}";
  runCommand = name: _env: _script: file name;
}
