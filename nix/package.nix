# The dsf binary, built by rustPlatform from Cargo.lock (no network at build time).
{
  lib,
  rustPlatform,
}: let
  manifest = (lib.importTOML ../Cargo.toml).package;
in
  rustPlatform.buildRustPackage {
    pname = manifest.name;
    inherit (manifest) version;

    # Only what cargo reads: editing docs, compose files or scripts does not rebuild.
    src = lib.fileset.toSource {
      root = ../.;
      fileset =
        lib.fileset.unions ([../Cargo.toml ../Cargo.lock ../src]
          ++ map lib.fileset.maybeMissing [../benches ../examples ../tests ../build.rs ../dsf.example.toml]);
    };
    cargoLock.lockFile = ../Cargo.lock;

    # The test suite starts MariaDB and Redis of its own: it runs as checks.tests.
    doCheck = false;

    # No homepage until Cargo.toml names a public repository.
    meta =
      {
        inherit (manifest) description;
        license = with lib.licenses; [mit asl20];
        mainProgram = "dsf";
        platforms = lib.platforms.linux;
      }
      // lib.optionalAttrs (manifest ? repository) {homepage = manifest.repository;};
  }
