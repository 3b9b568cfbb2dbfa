{
  description = "DSF: a distributed service framework — nodes, stores, cache and a consistent-hash balancer";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = {
    self,
    nixpkgs,
  }: let
    inherit (nixpkgs) lib;
    systems = ["x86_64-linux" "aarch64-linux"];
    forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    revision = self.rev or self.dirtyRev or "unknown";
  in {
    # nix build            → result/bin/dsf
    # nix build .#image    → result (docker-archive): podman load < result
    packages = forAllSystems (pkgs: let
      dsf = pkgs.callPackage ./nix/package.nix {};
    in {
      inherit dsf;
      default = dsf;
      image = pkgs.callPackage ./nix/image.nix {inherit dsf revision;};
    });

    overlays.default = final: _prev: {
      dsf = final.callPackage ./nix/package.nix {};
    };

    # imports = [ dsf.nixosModules.default ]; services.dsf.enable = true;
    nixosModules.default = import ./nix/module.nix self;

    # nix flake check: build, clippy, the test suite, formatting, and a NixOS VM
    # booting the module with three nodes and local MariaDB/Redis.
    checks = forAllSystems (pkgs: let
      inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) dsf;
    in {
      build = dsf;
      clippy = pkgs.callPackage ./nix/clippy.nix {inherit dsf;};
      tests = pkgs.callPackage ./nix/tests.nix {inherit dsf;};
      format = pkgs.callPackage ./nix/format.nix {src = self;};
      vm = pkgs.callPackage ./nix/vm-test.nix {module = self.nixosModules.default;};
    });

    devShells = forAllSystems (pkgs: {
      default = pkgs.callPackage ./nix/shell.nix {
        inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) dsf;
      };
    });

    formatter = forAllSystems (pkgs: pkgs.alejandra);
  };
}
