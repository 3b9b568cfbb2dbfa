# The NixOS module with this flake's dsf as its default package.
self: {
  lib,
  pkgs,
  ...
}: {
  imports = [../nixos-module];
  services.dsf.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
}
