# Permissive stand-ins for the NixOS options the module touches, so that it can be
# evaluated with nixpkgs' lib alone (no nixpkgs tree, no builds). Same idea as the
# team's shared nix-eval stubs, kept here so that the module's own tests can extend
# them (services.prometheus, networking.firewall and users are read back by checks).
{lib, ...}: let
  any = lib.mkOption {
    type = lib.types.anything;
    default = {};
  };
  lst = lib.mkOption {
    type = lib.types.listOf lib.types.anything;
    default = [];
  };
  attrs = lib.mkOption {
    type = lib.types.attrsOf lib.types.anything;
    default = {};
  };
in {
  options = {
    assertions = lst;
    warnings = lst;
    services = {
      mysql = any;
      redis = any;
      nginx = any;
      postgresql = any;
      prometheus = any;
    };
    systemd = {
      services = attrs;
      sockets = attrs;
      targets = attrs;
      tmpfiles = any;
      slices = attrs;
    };
    users = {
      users = attrs;
      groups = attrs;
    };
    environment = {
      etc = attrs;
      systemPackages = lst;
    };
    networking.firewall = any;
    meta = any;
    system.stateVersion = any;
  };
}
